"""Evaluate SEARCH criteria against one message (RFC 3501 §6.4.4, RFC 7162 §3.1.5).

The criteria are the parser's tree from :mod:`imap.proto.search` (``AllKey``,
``FlagKey``, ``DateKey``, ``SizeKey``, ``HeaderKey``, ``BodyKey``,
``TextKey``, ``SequenceKey``, ``ModSeqKey``, ``NotKey``, ``OrKey``,
``AndKey``); the parser has already expanded NEW, OLD, UNSEEN, FROM and the
like into those nodes, so this module needs no second key representation.

A message is described by :class:`MessageFacts`. Its content is loaded only
through ``facts.view``, on first use, so criteria about flags, sizes, dates
and numbers never read the message file; AND and OR evaluate such cheap
criteria before content criteria (:func:`needs_view`).

Semantics:

- flags and keywords compare case-insensitively; ``\\Recent`` is true when
  ``facts.recent`` is set or the flag set contains it;
- BEFORE/ON/SINCE compare the date of the internal date in its own zone;
  SENTBEFORE/SENTON/SENTSINCE the date of the Date header in the header's
  own zone, time and zone disregarded (RFC 3501 §6.4.4); a message without
  a valid Date header matches no SENT* key;
- HEADER, FROM, TO, CC, BCC, SUBJECT, BODY and TEXT are case-insensitive
  substring matches on decoded text (:mod:`imap.mime_text`); HEADER with an
  empty string matches every message that has the field;
- ``*`` in a sequence set is ``ctx.max_seq`` (EXISTS), in a UID set
  ``ctx.max_uid`` (the highest UID in use);
- MODSEQ compares the message's mod-sequence; a per-flag entry name is
  accepted and ignored, since mod-sequences are kept per message, which
  RFC 7162 §3.1.5 allows.
"""

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from email.utils import parsedate_tz
from functools import lru_cache

from imap.mime import MessageView, header_values, headers_for_search, text_for_search
from imap.proto.search import (
    AllKey,
    AndKey,
    BodyKey,
    DateField,
    DateKey,
    DateRelation,
    FlagKey,
    HeaderKey,
    ModSeqKey,
    NotKey,
    OrKey,
    SearchKey,
    SequenceKey,
    SizeKey,
    TextKey,
)

RECENT = "\\recent"


@dataclass(eq=False, slots=True)
class MessageFacts:
    """What SEARCH may ask about one message; ``load`` reads the content lazily."""

    seq: int
    uid: int
    flags: frozenset[str]
    internal_date: datetime
    size: int  # RFC822.SIZE: octets in CRLF form
    modseq: int
    load: Callable[[], MessageView]
    recent: bool = False
    _view: MessageView | None = field(default=None, init=False, repr=False)
    _flags: frozenset[str] | None = field(default=None, init=False, repr=False)

    @property
    def view(self) -> MessageView:
        if self._view is None:
            self._view = self.load()
        return self._view

    @property
    def loaded(self) -> bool:
        """Whether the content has been read (tests use it to check laziness)."""
        return self._view is not None

    def has_flag(self, flag: str) -> bool:
        if self._flags is None:
            self._flags = frozenset(f.lower() for f in self.flags)
        name = flag.lower()
        return name in self._flags or (name == RECENT and self.recent)


@dataclass(slots=True)
class SearchContext:
    """Per-command values: the numbers ``*`` stands for, and resolved sets."""

    max_seq: int
    max_uid: int
    _ranges: dict[SequenceKey, tuple[list[int], list[int]]] = field(
        default_factory=dict, repr=False
    )

    def in_set(self, key: SequenceKey, number: int) -> bool:
        resolved = self._ranges.get(key)
        if resolved is None:
            ranges = key.sequence_set.ranges(self.max_uid if key.uid else self.max_seq)
            resolved = ([lo for lo, _ in ranges], [hi for _, hi in ranges])
            self._ranges[key] = resolved
        starts, ends = resolved
        index = bisect.bisect_right(starts, number) - 1
        return index >= 0 and number <= ends[index]


@lru_cache(maxsize=4096)
def needs_view(key: SearchKey) -> bool:
    """Whether evaluating ``key`` may read the message content."""
    match key:
        case HeaderKey() | BodyKey() | TextKey():
            return True
        case DateKey(field=field_):
            return field_ is DateField.SENT
        case NotKey(inner):
            return needs_view(inner)
        case OrKey(left, right):
            return needs_view(left) or needs_view(right)
        case AndKey(keys):
            return any(needs_view(inner) for inner in keys)
    return False


def _contains(haystack: str, needle: str) -> bool:
    return needle.casefold() in haystack.casefold()


def _folded_body(view: MessageView) -> str:
    return view.memo("search_body_folded", lambda: text_for_search(view).casefold())


def _folded_headers(view: MessageView) -> str:
    return view.memo("search_headers_folded", lambda: headers_for_search(view).casefold())


def _compare(day: date, relation: DateRelation, value: date) -> bool:
    if relation is DateRelation.BEFORE:
        return day < value
    if relation is DateRelation.ON:
        return day == value
    return day >= value


def sent_date(view: MessageView) -> date | None:
    """The date of the Date header in its own zone, or None if absent or invalid."""

    def compute() -> date | None:
        value = view.root.header("Date")
        parsed = parsedate_tz(value) if value else None
        if parsed is None:
            return None
        try:
            return date(parsed[0], parsed[1], parsed[2])
        except ValueError:
            return None

    return view.memo("sent_date", compute)


def _header_matches(facts: MessageFacts, key: HeaderKey) -> bool:
    values = header_values(facts.view, key.name)
    if not key.value:
        return bool(values)
    return any(_contains(value, key.value) for value in values)


def matches(key: SearchKey, facts: MessageFacts, ctx: SearchContext) -> bool:
    """Whether the message satisfies the criteria."""
    match key:
        case AllKey():
            return True
        case FlagKey(flag, present):
            return facts.has_flag(flag) == present
        case SizeKey(larger, size):
            return facts.size > size if larger else facts.size < size
        case SequenceKey(_, uid):
            return ctx.in_set(key, facts.uid if uid else facts.seq)
        case ModSeqKey(modseq):
            return facts.modseq >= modseq
        case DateKey(DateField.INTERNAL, relation, value):
            return _compare(facts.internal_date.date(), relation, value)
        case DateKey(DateField.SENT, relation, value):
            sent = sent_date(facts.view)
            return sent is not None and _compare(sent, relation, value)
        case HeaderKey():
            return _header_matches(facts, key)
        case BodyKey(value):
            return value.casefold() in _folded_body(facts.view)
        case TextKey(value):
            needle = value.casefold()
            return needle in _folded_headers(facts.view) or needle in _folded_body(facts.view)
        case NotKey(inner):
            return not matches(inner, facts, ctx)
        case OrKey(left, right):
            if needs_view(left) and not needs_view(right):
                left, right = right, left
            return matches(left, facts, ctx) or matches(right, facts, ctx)
        case AndKey(keys):
            # Cheap criteria first: a flag mismatch spares reading the file.
            ordered = sorted(keys, key=needs_view)
            return all(matches(inner, facts, ctx) for inner in ordered)
    raise TypeError(f"unknown search key {key!r}")
