"""SEARCH criteria (RFC 3501 §6.4.4, §9 ``search-key``; RFC 7162 §3.1.5 MODSEQ).

The criteria become a tree of frozen dataclasses. Shorthands are expanded
so that the evaluator sees fewer node kinds:

- ANSWERED, DELETED, DRAFT, FLAGGED, RECENT, SEEN, KEYWORD and their UN-
  forms become :class:`FlagKey` (with ``present=False`` for UN-);
- NEW is ``RECENT UNSEEN`` and OLD is ``NOT RECENT`` (RFC 3501 §6.4.4);
- BCC, CC, FROM, SUBJECT and TO become :class:`HeaderKey`;
- several keys side by side (top level or in parentheses) are an
  :class:`AndKey`.

Strings are decoded with the SEARCH charset; only US-ASCII and UTF-8 are
supported (US-ASCII is decoded as UTF-8, which it is a subset of, since
clients often send UTF-8 without naming it). Nesting of NOT, OR and
parentheses is limited to :data:`MAX_NESTING_DEPTH`.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from imap.proto.errors import NotParseable, UnsupportedCharset
from imap.proto.limits import MAX_NESTING_DEPTH, MAX_NUMBER64
from imap.proto.sequence import SequenceSet, read_sequence_set
from imap.proto.tokens import (
    decode_utf8,
    expect,
    fail,
    peek,
    read_astring,
    read_date,
    read_flag_keyword,
    read_keyword,
    read_number,
    read_quoted,
    read_sp,
)

# Charsets we decode; announced in [BADCHARSET (...)] (RFC 3501 §7.1).
SEARCH_CHARSETS: tuple[str, ...] = ("US-ASCII", "UTF-8")

# RFC 5322 §3.6.8 field-name: printable US-ASCII except ":".
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")


class DateField(StrEnum):
    INTERNAL = "INTERNALDATE"  # BEFORE, ON, SINCE
    SENT = "SENT"  # SENTBEFORE, SENTON, SENTSINCE: the Date: header


class DateRelation(StrEnum):
    BEFORE = "BEFORE"
    ON = "ON"
    SINCE = "SINCE"


@dataclass(frozen=True, slots=True)
class AllKey:
    pass


@dataclass(frozen=True, slots=True)
class FlagKey:
    """A system flag (canonical spelling, e.g. ``\\Seen``) or keyword is set or not."""

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class DateKey:
    """Dates compare without time or timezone (RFC 3501 §6.4.4)."""

    field: DateField
    relation: DateRelation
    value: date


@dataclass(frozen=True, slots=True)
class SizeKey:
    """LARGER n (``larger=True``) or SMALLER n: RFC 822 size in octets."""

    larger: bool
    size: int


@dataclass(frozen=True, slots=True)
class HeaderKey:
    """The header field contains ``value`` (any such field if ``value`` is empty)."""

    name: str
    value: str


@dataclass(frozen=True, slots=True)
class BodyKey:
    """BODY: the body (not the header) contains the string."""

    value: str


@dataclass(frozen=True, slots=True)
class TextKey:
    """TEXT: the header or the body contains the string."""

    value: str


@dataclass(frozen=True, slots=True)
class SequenceKey:
    """A bare sequence set (``uid=False``) or ``UID set``."""

    sequence_set: SequenceSet
    uid: bool = False


@dataclass(frozen=True, slots=True)
class ModSeqKey:
    """MODSEQ (RFC 7162 §3.1.5): mod-sequence at least ``modseq``.

    The optional entry (``"/flags/\\Seen"`` with ``priv``/``shared``/``all``)
    narrows the comparison to one flag's mod-sequence.
    """

    modseq: int
    entry: str | None = None
    entry_type: str | None = None


@dataclass(frozen=True, slots=True)
class NotKey:
    key: "SearchKey"


@dataclass(frozen=True, slots=True)
class OrKey:
    left: "SearchKey"
    right: "SearchKey"


@dataclass(frozen=True, slots=True)
class AndKey:
    keys: tuple["SearchKey", ...]


SearchKey = (
    AllKey
    | FlagKey
    | DateKey
    | SizeKey
    | HeaderKey
    | BodyKey
    | TextKey
    | SequenceKey
    | ModSeqKey
    | NotKey
    | OrKey
    | AndKey
)

_FLAG_KEYS: dict[str, FlagKey] = {
    "ANSWERED": FlagKey(r"\Answered"),
    "DELETED": FlagKey(r"\Deleted"),
    "DRAFT": FlagKey(r"\Draft"),
    "FLAGGED": FlagKey(r"\Flagged"),
    "RECENT": FlagKey(r"\Recent"),
    "SEEN": FlagKey(r"\Seen"),
    "UNANSWERED": FlagKey(r"\Answered", present=False),
    "UNDELETED": FlagKey(r"\Deleted", present=False),
    "UNDRAFT": FlagKey(r"\Draft", present=False),
    "UNFLAGGED": FlagKey(r"\Flagged", present=False),
    "UNSEEN": FlagKey(r"\Seen", present=False),
    "OLD": FlagKey(r"\Recent", present=False),
}
_NEW = AndKey((FlagKey(r"\Recent"), FlagKey(r"\Seen", present=False)))
_HEADER_KEYS = {"BCC": "Bcc", "CC": "Cc", "FROM": "From", "SUBJECT": "Subject", "TO": "To"}
_DATE_KEYS = {
    "BEFORE": (DateField.INTERNAL, DateRelation.BEFORE),
    "ON": (DateField.INTERNAL, DateRelation.ON),
    "SINCE": (DateField.INTERNAL, DateRelation.SINCE),
    "SENTBEFORE": (DateField.SENT, DateRelation.BEFORE),
    "SENTON": (DateField.SENT, DateRelation.ON),
    "SENTSINCE": (DateField.SENT, DateRelation.SINCE),
}
_WITH_ARGUMENT = frozenset(
    {"KEYWORD", "UNKEYWORD", "HEADER", "BODY", "TEXT", "LARGER", "SMALLER", "UID", "NOT", "OR"}
    | {"MODSEQ"}
    | _HEADER_KEYS.keys()
    | _DATE_KEYS.keys()
)
_MODSEQ_ENTRY_TYPES = ("priv", "shared", "all")


def check_charset(charset: str) -> str:
    """The canonical name of a supported SEARCH charset, else UnsupportedCharset."""
    name = charset.upper()
    if name not in SEARCH_CHARSETS:
        raise UnsupportedCharset(charset, SEARCH_CHARSETS)
    return name


def _read_text(buf: bytes, pos: int) -> tuple[str, int]:
    raw, pos = read_astring(buf, pos)
    return decode_utf8(raw, "search string"), pos


def _read_field_name(buf: bytes, pos: int) -> tuple[str, int]:
    raw, pos = read_astring(buf, pos)
    if _FIELD_NAME.fullmatch(raw) is None:
        raise NotParseable("invalid header field name")
    return raw.decode("ascii"), pos


def _read_modseq(buf: bytes, pos: int) -> tuple[ModSeqKey, int]:
    entry = entry_type = None
    if peek(buf, pos) == b'"':
        raw, pos = read_quoted(buf, pos)
        if not raw.startswith(b"/flags/"):
            raise NotParseable("invalid MODSEQ entry name")
        entry = decode_utf8(raw, "MODSEQ entry name")
        pos = read_sp(buf, pos)
        kind, pos = read_keyword(buf, pos)
        if kind.lower() not in _MODSEQ_ENTRY_TYPES:
            raise NotParseable("invalid MODSEQ entry type")
        entry_type = kind.lower()
        pos = read_sp(buf, pos)
    # mod-sequence-valzer = "0" / mod-sequence-value (RFC 7162 §7)
    value, pos = read_number(buf, pos, maximum=MAX_NUMBER64)
    return ModSeqKey(value, entry, entry_type), pos


def read_search_key(buf: bytes, pos: int, depth: int = 0) -> tuple[SearchKey, int]:
    """One ``search-key`` at ``pos``; ``depth`` counts enclosing NOT/OR/()."""
    if depth > MAX_NESTING_DEPTH:
        raise NotParseable("search criteria nested too deeply", code="LIMIT")
    first = peek(buf, pos)
    if first == b"(":
        keys, pos = _read_keys(buf, pos + 1, depth + 1, closing=True)
        return (keys[0] if len(keys) == 1 else AndKey(keys)), pos
    if first == b"*" or first.isdigit():
        sequence_set, pos = read_sequence_set(buf, pos)
        return SequenceKey(sequence_set), pos
    name, pos = read_keyword(buf, pos)
    if name in _FLAG_KEYS:
        return _FLAG_KEYS[name], pos
    if name == "NEW":
        return _NEW, pos
    if name == "ALL":
        return AllKey(), pos
    if name not in _WITH_ARGUMENT:
        raise NotParseable("unknown search key")
    pos = expect(buf, pos, b" ", f"argument to {name}")
    match name:
        case "KEYWORD" | "UNKEYWORD":
            keyword, pos = read_flag_keyword(buf, pos)
            return FlagKey(keyword, present=name == "KEYWORD"), pos
        case "HEADER":
            field, pos = _read_field_name(buf, pos)
            pos = read_sp(buf, pos)
            value, pos = _read_text(buf, pos)
            return HeaderKey(field, value), pos
        case "BODY":
            value, pos = _read_text(buf, pos)
            return BodyKey(value), pos
        case "TEXT":
            value, pos = _read_text(buf, pos)
            return TextKey(value), pos
        case "LARGER" | "SMALLER":
            size, pos = read_number(buf, pos)
            return SizeKey(name == "LARGER", size), pos
        case "UID":
            sequence_set, pos = read_sequence_set(buf, pos)
            return SequenceKey(sequence_set, uid=True), pos
        case "NOT":
            key, pos = read_search_key(buf, pos, depth + 1)
            return NotKey(key), pos
        case "OR":
            left, pos = read_search_key(buf, pos, depth + 1)
            pos = read_sp(buf, pos)
            right, pos = read_search_key(buf, pos, depth + 1)
            return OrKey(left, right), pos
        case "MODSEQ":
            return _read_modseq(buf, pos)
    if name in _HEADER_KEYS:
        value, pos = _read_text(buf, pos)
        return HeaderKey(_HEADER_KEYS[name], value), pos
    if name in _DATE_KEYS:
        field, relation = _DATE_KEYS[name]
        value, pos = read_date(buf, pos)
        return DateKey(field, relation, value), pos
    raise AssertionError(name)  # every name of _WITH_ARGUMENT is handled above


def _read_keys(
    buf: bytes, pos: int, depth: int, *, closing: bool
) -> tuple[tuple[SearchKey, ...], int]:
    keys: list[SearchKey] = []
    while True:
        key, pos = read_search_key(buf, pos, depth)
        keys.append(key)
        if closing and peek(buf, pos) == b")":
            return tuple(keys), pos + 1
        if not buf.startswith(b" ", pos):
            if closing:
                raise fail(buf, pos, "')'")
            return tuple(keys), pos
        pos += 1


def read_search_criteria(buf: bytes, pos: int) -> tuple[SearchKey, int]:
    """``1*(SP search-key)`` as it follows SEARCH [CHARSET x]; at ``pos`` the first SP."""
    pos = read_sp(buf, pos)
    keys, pos = _read_keys(buf, pos, 0, closing=False)
    return (keys[0] if len(keys) == 1 else AndKey(keys)), pos


def walk(key: SearchKey) -> Iterator[SearchKey]:
    """Every node of the tree, depth first (e.g. to find MODSEQ keys)."""
    yield key
    match key:
        case NotKey(inner):
            yield from walk(inner)
        case OrKey(left, right):
            yield from walk(left)
            yield from walk(right)
        case AndKey(keys):
            for inner in keys:
                yield from walk(inner)


def uses_modseq(key: SearchKey) -> bool:
    """Whether the response must carry ``(MODSEQ n)`` (RFC 7162 §3.1.5)."""
    return any(isinstance(node, ModSeqKey) for node in walk(key))
