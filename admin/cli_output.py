"""What the CLI prints, and the values it parses from the command line.

Handlers return a ``Listing`` (list commands) or a ``Detail`` (create, show,
change); ``emit`` prints either as one JSON document (``--json``) or as aligned
text. Rendering is by value type, so handlers never format: datetimes are
shortened, booleans become yes/no, ``*_bytes`` integers are shown in binary
units, ``None`` is a dash. Tables show scalar columns only; nested documents
such as an audit entry's before/after appear in the JSON output.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, TextIO

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_AGO = re.compile(r"^(\d+)\s*([mhd])$")
_AGO_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
# Nested documents that only the JSON output carries; tables leave them out.
DOCUMENTS = frozenset({"before", "after", "trace"})


class CLIError(ValueError):
    """A command-line value or state the CLI refuses before calling a service."""


@dataclass(slots=True)
class Listing:
    rows: list[dict[str, Any]]
    columns: tuple[str, ...] = ()  # the columns of the text table; all scalar keys if empty
    empty: str = "nothing to show"


@dataclass(slots=True)
class Detail:
    data: dict[str, Any]
    message: str = ""  # for text output: a summary line replacing the key/value listing
    lines: list[str] = field(default_factory=list)  # extra text lines after the summary
    exit_code: int = 0


def parse_size(text: str) -> int:
    """``1048576``, ``10K``, ``500M``, ``2G`` (binary units; ``MiB``/``MB`` also accepted)."""
    match = _SIZE.match(text.strip())
    if match is None:
        raise CLIError(f"not a size: {text!r} (examples: 1048576, 10K, 500M, 2G)")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.lower()])


def parse_quota(text: str) -> int | None:
    return None if text.strip().lower() in ("none", "unlimited") else parse_size(text)


def format_size(size: int) -> str:
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor:
            value = size / factor
            return f"{value:.0f} {unit}" if size % factor == 0 else f"{value:.1f} {unit}"
    return f"{size} B"


def parse_time(text: str, now: datetime) -> datetime:
    """An ISO date (midnight UTC) or datetime (UTC when naive), or an age such as ``2h``/``7d``."""
    text = text.strip()
    ago = _AGO.match(text)
    if ago is not None:
        return now - timedelta(**{_AGO_UNITS[ago.group(2)]: int(ago.group(1))})
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise CLIError(f"not a date or time: {text!r} (use YYYY-MM-DD or ISO 8601)") from exc
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def expiry(expires: str | None, days: int | None, now: datetime) -> datetime | None:
    if days is not None:
        if days < 1:
            raise CLIError("--days must be at least 1")
        return now + timedelta(days=days)
    return None if expires is None else parse_time(expires, now)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialize {type(value).__name__}")


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    if isinstance(value, int) and key.endswith("_bytes"):
        return format_size(value)
    if isinstance(value, list):
        return ", ".join(_cell(key, v) for v in value) or "-"
    return str(value)


def _scalar(value: Any) -> bool:
    return not isinstance(value, dict) and not (
        isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value)
    )


def _header(key: str) -> str:
    return key.removesuffix("_bytes").replace("_", " ").upper()


def table(rows: list[dict[str, Any]], columns: tuple[str, ...] = (), indent: str = "") -> list[str]:
    if not columns and rows:
        columns = tuple(
            k for k in rows[0] if k not in DOCUMENTS and all(_scalar(r.get(k)) for r in rows)
        )
    cells = [[_header(c) for c in columns]]
    cells += [[_cell(c, row.get(c)) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return [
        indent
        + "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    ]


def _label(key: str) -> str:
    return key.removesuffix("_bytes").replace("_", " ")


def describe(data: dict[str, Any], indent: str = "") -> list[str]:
    """Key/value lines, with nested records indented and lists of records as tables."""
    lines: list[str] = []
    width = max((len(_label(k)) for k, v in data.items() if _scalar(v)), default=0)
    for key, value in data.items():
        if _scalar(value):
            text = "none" if value == [] else _cell(key, value)
            lines.append(f"{indent}{_label(key).ljust(width)}  {text}")
        elif isinstance(value, dict):
            lines.append(f"{indent}{_label(key)}:")
            lines += describe(value, indent + "  ")
        elif key not in DOCUMENTS:
            lines.append(f"{indent}{_label(key)}:")
            lines += table(value, indent=indent + "  ")
    return lines


def emit(result: Listing | Detail, *, as_json: bool, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    document: Any = result.rows if isinstance(result, Listing) else result.data
    if as_json:
        print(json.dumps(document, indent=2, default=_json_default), file=out)
    elif isinstance(result, Listing):
        lines = table(result.rows, result.columns) if result.rows else [result.empty]
        print("\n".join(lines), file=out)
    else:
        lines = [result.message] if result.message else describe(result.data)
        print("\n".join(lines + result.lines), file=out)
    return result.exit_code if isinstance(result, Detail) else 0
