"""Evaluate SEARCH criteria against one message (RFC 3501 §6.4.4, RFC 7162 §3.1.5).

The criteria are the parser's tree from :mod:`imap.proto.search` (``AllKey``,
``FlagKey``, ``DateKey``, ``SizeKey``, ``HeaderKey``, ``BodyKey``,
``TextKey``, ``SequenceKey``, ``ModSeqKey``, ``NotKey``, ``OrKey``,
``AndKey``); the parser has already expanded NEW, OLD, UNSEEN, FROM and the
like into those nodes, so this module needs no second key representation.

A message is described by :class:`MessageFacts`. Its content is loaded only
through ``facts.view``, on first use, so criteria about flags, sizes, dates
and numbers never read the message file; AND and OR evaluate such cheap
criteria before content criteria (:func:`needs_view`). Criteria about the
header alone (HEADER, FROM, SUBJECT..., SENT*) go through
``facts.header_source``, which a caller may back with a cache of header
blocks (:mod:`imap.message_cache`); without one they use the whole view.

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
from typing import Protocol

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


class HeaderSource(Protocol):
    """The header of a message without its body (a cached summary)."""

    def header_values(self, name: str) -> list[str]:
        """Every field ``name``, unfolded and RFC 2047 decoded."""
        ...

    def header_view(self) -> MessageView:
        """A view of the header block alone."""
        ...

    def folded_header(self, name: str) -> str:
        """The decoded values of field ``name``, case-folded, joined by NUL."""
        ...


@dataclass(eq=False, slots=True)
class MessageFacts:
    """What SEARCH may ask about one message; ``load`` reads the content lazily.

    ``load_header``, when given, answers header-only criteria without
    ``load``.
    """

    seq: int
    uid: int
    flags: frozenset[str]
    internal_date: datetime
    size: int  # RFC822.SIZE: octets in CRLF form
    modseq: int
    load: Callable[[], MessageView]
    recent: bool = False
    load_header: Callable[[], HeaderSource] | None = None
    _view: MessageView | None = field(default=None, init=False, repr=False)
    _header: HeaderSource | None = field(default=None, init=False, repr=False)

    @property
    def view(self) -> MessageView:
        if self._view is None:
            self._view = self.load()
        return self._view

    def header_values(self, name: str) -> list[str]:
        if self.load_header is None or self._view is not None:
            return header_values(self.view, name)
        if self._header is None:
            self._header = self.load_header()
        return self._header.header_values(name)

    def folded_header(self, name: str) -> str:
        if self.load_header is None or self._view is not None:
            return "\0".join(header_values(self.view, name)).casefold()
        if self._header is None:
            self._header = self.load_header()
        return self._header.folded_header(name)

    def header_view(self) -> MessageView:
        if self.load_header is None or self._view is not None:
            return self.view
        if self._header is None:
            self._header = self.load_header()
        return self._header.header_view()

    def reset(
        self, seq: int, uid: int, flags: frozenset[str], internal_date: datetime, size: int,
        modseq: int, recent: bool,
    ) -> None:  # fmt: skip
        """Describe another message (``load``/``load_header`` must follow ``uid``)."""
        self.seq, self.uid, self.flags, self.recent = seq, uid, flags, recent
        self.internal_date, self.size, self.modseq = internal_date, size, modseq
        self._view = self._header = None

    @property
    def loaded(self) -> bool:
        """Whether the content has been read (tests use it to check laziness)."""
        return self._view is not None

    def has_flag(self, flag: str) -> bool:
        name = flag.lower()
        return name in _lowered(self.flags) or (name == RECENT and self.recent)


@lru_cache(maxsize=1024)
def _lowered(flags: frozenset[str]) -> frozenset[str]:
    """Flags in lower case (messages share few distinct flag sets)."""
    return frozenset(f.lower() for f in flags)


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


@lru_cache(maxsize=4096)
def needs_body(key: SearchKey) -> bool:
    """Whether evaluating ``key`` may read more of the message than its header."""
    match key:
        case BodyKey() | TextKey():
            return True
        case NotKey(inner):
            return needs_body(inner)
        case OrKey(left, right):
            return needs_body(left) or needs_body(right)
        case AndKey(keys):
            return any(needs_body(inner) for inner in keys)
    return False


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


Predicate = Callable[[MessageFacts], bool]


def matches(key: SearchKey, facts: MessageFacts, ctx: SearchContext) -> bool:
    """Whether the message satisfies the criteria."""
    return compile_key(key, ctx)(facts)


def compile_key(key: SearchKey, ctx: SearchContext) -> Predicate:
    """The criteria as one predicate, to test every message of a folder with.

    The tree is walked once per SEARCH instead of once per message; AND and
    OR put the criteria that need no content first.
    """
    match key:
        case AllKey():
            return lambda facts: True
        case FlagKey(flag, present):
            name = flag.lower()
            if name == RECENT:
                return lambda facts: facts.has_flag(name) == present
            return lambda facts: (name in _lowered(facts.flags)) == present
        case SizeKey(larger, size):
            if larger:
                return lambda facts: facts.size > size
            return lambda facts: facts.size < size
        case SequenceKey(_, uid):
            if uid:
                return lambda facts: ctx.in_set(key, facts.uid)
            return lambda facts: ctx.in_set(key, facts.seq)
        case ModSeqKey(modseq):
            return lambda facts: facts.modseq >= modseq
        case DateKey(DateField.INTERNAL, relation, value):
            return lambda facts: _compare(facts.internal_date.date(), relation, value)
        case DateKey(DateField.SENT, relation, value):

            def sent(facts: MessageFacts) -> bool:
                day = sent_date(facts.header_view())
                return day is not None and _compare(day, relation, value)

            return sent
        case HeaderKey(name, value):
            if not value:  # RFC 3501 §6.4.4: HEADER with "" matches when the field exists
                return lambda facts: bool(facts.header_values(name))
            # Search strings cannot hold NUL, so the joined values match as any one would.
            needle = value.casefold()
            return lambda facts: needle in facts.folded_header(name)
        case BodyKey(value):
            body = value.casefold()
            return lambda facts: body in _folded_body(facts.view)
        case TextKey(value):
            needle = value.casefold()
            return lambda facts: (
                needle in _folded_headers(facts.view) or needle in _folded_body(facts.view)
            )
        case NotKey(inner):
            test = compile_key(inner, ctx)
            return lambda facts: not test(facts)
        case OrKey(left, right):
            if needs_view(left) and not needs_view(right):
                left, right = right, left
            first, second = compile_key(left, ctx), compile_key(right, ctx)
            return lambda facts: first(facts) or second(facts)
        case AndKey(keys):
            # Cheap criteria first: a flag mismatch spares reading the file.
            tests = [compile_key(inner, ctx) for inner in sorted(keys, key=needs_view)]

            def every(facts: MessageFacts) -> bool:
                return all(test(facts) for test in tests)

            return every
    raise TypeError(f"unknown search key {key!r}")
