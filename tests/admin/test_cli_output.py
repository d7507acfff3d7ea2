"""The CLI's pure helpers: sizes, times, and text rendering."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from admin.cli_output import (
    CLIError,
    Detail,
    Listing,
    emit,
    expiry,
    format_size,
    parse_quota,
    parse_size,
    parse_time,
    table,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1048576", 1048576),
        ("10K", 10 * 1024),
        ("500M", 500 * 1024**2),
        ("2G", 2 * 1024**3),
        ("2g", 2 * 1024**3),
        ("1GiB", 1024**3),
        ("1.5G", 3 * 1024**3 // 2),
        ("0", 0),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    """Ensure sizes accept plain bytes and binary K/M/G/T suffixes."""
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "-1M", "5X", "1..5G"])
def test_parse_size_refuses_nonsense(text: str) -> None:
    """Ensure a malformed size raises CLIError with an example."""
    with pytest.raises(CLIError, match="examples"):
        parse_size(text)


def test_parse_quota_none_clears() -> None:
    """Ensure 'none' means no quota at this level."""
    assert parse_quota("none") is None
    assert parse_quota("1M") == 1024**2


def test_format_size() -> None:
    """Ensure sizes print in binary units, exact multiples without decimals."""
    assert format_size(0) == "0 B"
    assert format_size(1024**3) == "1 GiB"
    assert format_size(1536 * 1024) == "1.5 MiB"


def test_parse_time_forms() -> None:
    """Ensure dates are midnight UTC, naive times are UTC, and 2h/7d are ages."""
    assert parse_time("2026-12-31", NOW) == datetime(2026, 12, 31, tzinfo=UTC)
    assert parse_time("2026-12-31T10:30", NOW) == datetime(2026, 12, 31, 10, 30, tzinfo=UTC)
    assert parse_time("2026-12-31T10:30+02:00", NOW) == datetime(2026, 12, 31, 8, 30, tzinfo=UTC)
    assert parse_time("2h", NOW) == NOW - timedelta(hours=2)
    assert parse_time("7d", NOW) == NOW - timedelta(days=7)
    with pytest.raises(CLIError):
        parse_time("next tuesday", NOW)


def test_expiry_from_days_or_date() -> None:
    """Ensure --days counts from now, --expires parses a date, and neither means none."""
    assert expiry(None, 10, NOW) == NOW + timedelta(days=10)
    assert expiry("2026-12-01", None, NOW) == datetime(2026, 12, 1, tzinfo=UTC)
    assert expiry(None, None, NOW) is None
    with pytest.raises(CLIError):
        expiry(None, 0, NOW)


def test_table_aligns_columns_and_formats_values() -> None:
    """Ensure tables pad columns and render bools, None, sizes and times readably."""
    rows = [
        {"name": "a", "quota_bytes": 1024**2, "on": True, "at": NOW, "before": {"x": 1}},
        {"name": "longer", "quota_bytes": None, "on": False, "at": NOW, "before": None},
    ]
    lines = table(rows)
    assert lines[0].split() == ["NAME", "QUOTA", "ON", "AT"]  # documents are left out
    assert lines[1].split() == ["a", "1", "MiB", "yes", "2026-11-28", "12:00"]
    assert lines[2].split()[:3] == ["longer", "-", "no"]
    assert lines[1].index("1 MiB") == lines[0].index("QUOTA")


def test_emit_json_and_exit_code() -> None:
    """Ensure --json prints one parseable document and a Detail carries its exit code."""
    out = io.StringIO()
    assert emit(Listing([{"at": NOW}]), as_json=True, out=out) == 0
    assert json.loads(out.getvalue()) == [{"at": NOW.isoformat()}]
    out = io.StringIO()
    assert emit(Detail({"ok": False}, message="broken", exit_code=1), as_json=False, out=out) == 1
    assert out.getvalue() == "broken\n"
