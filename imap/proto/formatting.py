"""Serialise Python values into IMAP data syntax (RFC 3501 §4, §9).

The server builds ENVELOPE, BODYSTRUCTURE and other response data as plain
nested values; :func:`format_value` renders them:

=====================  ==============================================
Python                 IMAP
=====================  ==============================================
``None``               ``NIL``
``int``                number
``str`` / ``bytes``    quoted string, or a literal when quoting is unsafe
``datetime``           date-time (INTERNALDATE)
list / tuple           parenthesised list
:class:`Atom`          the atom itself (flags, keywords, capabilities)
:class:`Literal`       always a ``{n}`` literal (message bodies)
:class:`Raw`           pre-rendered IMAP syntax, copied verbatim
=====================  ==============================================

A string is quoted only when every octet is a TEXT-CHAR (RFC 3501 §9: 7-bit,
no CR, LF or NUL); anything else becomes a literal, which can carry any octet
but NUL. Strings are never sent as atoms except through :class:`Atom` or
:func:`format_astring`, because the atom ``NIL`` and a string ``"NIL"`` differ.
"""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

from imap.proto.limits import MAX_NUMBER

CRLF = b"\r\n"

# RFC 3501 §9 ATOM-CHAR: CHAR except atom-specials "(" ")" "{" SP CTL
# list-wildcards ("%" "*") quoted-specials ('"' "\") and resp-specials ("]").
_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\\]]+')
# Flags and similar tokens: atom characters plus a leading backslash, and the
# "\*" of PERMANENTFLAGS (RFC 3501 §7.1).
_FLAG = re.compile(rb'\\?[^\x00-\x20\x7f-\xff(){%*"\\\]]+|\\\*')
_QUOTABLE = re.compile(rb"[\x01-\x09\x0b\x0c\x0e-\x7f]*")

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True, slots=True)
class Atom:
    """A token sent without quotes, such as ``\\Seen`` or ``IMAP4rev1``."""

    value: str

    def __post_init__(self) -> None:
        if not self.value.isascii() or _FLAG.fullmatch(self.value.encode("ascii")) is None:
            raise ValueError(f"not an atom: {self.value!r}")


@dataclass(frozen=True, slots=True)
class Literal:
    """Octets always sent as a ``{n}`` literal."""

    value: bytes


@dataclass(frozen=True, slots=True)
class Raw:
    """Already formatted IMAP syntax, inserted unchanged."""

    value: bytes


Value: TypeAlias = int | str | bytes | datetime | Atom | Literal | Raw | Sequence["Value"] | None


def _as_bytes(data: str | bytes) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else data


def is_atom(data: bytes) -> bool:
    return _ATOM.fullmatch(data) is not None


def format_literal(data: bytes) -> bytes:
    """``{n}`` CRLF followed by the octets (RFC 3501 §4.3)."""
    return b"{%d}\r\n" % len(data) + data


def format_string(data: str | bytes) -> bytes:
    """A quoted string when safe, otherwise a literal (RFC 3501 §4.3)."""
    raw = _as_bytes(data)
    if _QUOTABLE.fullmatch(raw) is None:
        return format_literal(raw)
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def format_astring(data: str | bytes) -> bytes:
    """An atom when the value is one (and not ``NIL``), else a string."""
    raw = _as_bytes(data)
    if is_atom(raw) and raw.upper() != b"NIL":
        return raw
    return format_string(raw)


def format_nstring(data: str | bytes | None) -> bytes:
    return b"NIL" if data is None else format_string(data)


def format_flags(flags: Iterable[str]) -> bytes:
    """A parenthesised flag list: ``(\\Seen $Forwarded)``."""
    return b"(" + b" ".join(format_value(Atom(flag)) for flag in flags) + b")"


def format_datetime(moment: datetime) -> bytes:
    """Quoted ``date-time`` (RFC 3501 §9), e.g. ``" 7-Feb-1994 21:52:25 -0800"``.

    Month names are always English, whatever the process locale.
    """
    offset = moment.utcoffset()
    if offset is None:
        raise ValueError("date-time needs a timezone-aware datetime")
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    text = (
        f'"{moment.day:2d}-{_MONTHS[moment.month - 1]}-{moment.year:04d} '
        f'{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} {sign}{hours:02d}{mins:02d}"'
    )
    return text.encode("ascii")


def format_value(value: Value) -> bytes:
    """Render a nested value into IMAP syntax (see the module table)."""
    match value:
        case None:
            return b"NIL"
        case bool():
            raise TypeError("booleans have no IMAP representation")
        case int():
            if value < 0:
                raise ValueError("IMAP numbers are unsigned")
            return b"%d" % value
        case str() | bytes():
            return format_string(value)
        case datetime():
            return format_datetime(value)
        case Atom(text):
            return text.encode("ascii")
        case Literal(data):
            return format_literal(data)
        case Raw(data):
            return data
        case list() | tuple():
            return b"(" + b" ".join(format_value(item) for item in value) + b")"
    raise TypeError(f"cannot format {type(value).__name__} as IMAP data")


def format_uid_set(uids: Iterable[int]) -> bytes:
    """Compact ``uid-set`` for UIDPLUS codes: ``[1, 2, 3, 5]`` gives ``b"1:3,5"``.

    Runs of consecutive ascending numbers collapse into ranges; the order of
    the input is kept, since COPYUID pairs its two sets element by element.
    """
    parts: list[bytes] = []
    start = prev = None
    for uid in uids:
        if isinstance(uid, bool) or not 1 <= uid <= MAX_NUMBER:
            raise ValueError(f"not a valid UID: {uid!r}")
        if prev is not None and uid == prev + 1:
            prev = uid
            continue
        if start is not None and prev is not None:
            parts.append(b"%d" % start if start == prev else b"%d:%d" % (start, prev))
        start = prev = uid
    if start is None or prev is None:
        raise ValueError("a uid-set has at least one UID")
    parts.append(b"%d" % start if start == prev else b"%d:%d" % (start, prev))
    return b",".join(parts)
