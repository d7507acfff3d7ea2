"""Sequence sets (RFC 3501 §9 ``sequence-set``) and compact UID sets.

A :class:`SequenceSet` keeps the ranges exactly as the client wrote them,
with ``*`` left symbolic (``None``), because ``*`` only has a value once the
mailbox is known: the highest sequence number, or the highest UID in use.
RFC 3501 §6.4.8 makes ``n:*`` include the highest UID even when n is larger
("3:*" with highest UID 2 is "2:3"), which :meth:`SequenceSet.ranges` follows.

Sequence numbers and UIDs are nz-numbers: 1 to 2**32-1, without leading zeros.

``format_uid_set`` lives in :mod:`imap.proto.formatting` (responses need it
without the parser) and is re-exported here.
"""

import re
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from imap.proto.errors import NotParseable
from imap.proto.formatting import format_uid_set
from imap.proto.limits import MAX_NUMBER, MAX_SEQUENCE_RANGES

__all__ = ["SequenceSet", "format_uid_set", "read_sequence_set"]

# seq-number = nz-number / "*"; nz-number = digit-nz *DIGIT (RFC 3501 §9).
_SEQ_NUMBER = rb"(?:[1-9][0-9]{0,9}|\*)"
_ELEMENT = re.compile(rb"(%s)(?::(%s))?" % (_SEQ_NUMBER, _SEQ_NUMBER))


def _number(token: bytes) -> int | None:
    if token == b"*":
        return None
    value = int(token)
    if value > MAX_NUMBER:
        raise NotParseable("sequence number out of range")
    return value


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """A parsed sequence set; each range is ``(first, last)``, ``None`` for ``*``.

    A single number ``n`` is the range ``(n, n)``. Ranges keep the client's
    order and direction (``3:1`` is the same set as ``1:3``).
    """

    items: tuple[tuple[int | None, int | None], ...]

    def __post_init__(self) -> None:
        if not self.items:
            raise ValueError("a sequence set has at least one element")

    @classmethod
    def parse(cls, data: bytes) -> "SequenceSet":
        value, end = read_sequence_set(data, 0)
        if end != len(data):
            raise NotParseable("invalid sequence set")
        return value

    @classmethod
    def of(cls, *numbers: int) -> "SequenceSet":
        return cls(tuple((number, number) for number in numbers))

    @property
    def uses_star(self) -> bool:
        return any(first is None or last is None for first, last in self.items)

    def max_explicit(self) -> int:
        """The largest number written out (0 if only ``*`` was used).

        A server checks this against EXISTS to reject sequence numbers that
        do not exist (RFC 9051 §6.4.5 lets it answer BAD).
        """
        return max((n for pair in self.items for n in pair if n is not None), default=0)

    def ranges(self, max_value: int) -> list[tuple[int, int]]:
        """Sorted, merged, inclusive ranges with ``*`` replaced by ``max_value``.

        ``max_value`` is the highest number in use (EXISTS, or the highest
        UID); 0 for an empty mailbox, in which case elements using ``*``
        match nothing. Numbers above ``max_value`` are kept: for UIDs they
        are legal and simply match no message.
        """
        resolved: list[tuple[int, int]] = []
        for first, last in self.items:
            if max_value < 1 and (first is None or last is None):
                continue
            lo = max_value if first is None else first
            hi = max_value if last is None else last
            if lo > hi:
                lo, hi = hi, lo
            lo = max(lo, 1)
            if lo <= hi:
                resolved.append((lo, hi))
        resolved.sort()
        merged: list[tuple[int, int]] = []
        for lo, hi in resolved:
            if merged and lo <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
            else:
                merged.append((lo, hi))
        return merged

    def contains(self, number: int, max_value: int) -> bool:
        return self.matcher(max_value)(number)

    def matcher(self, max_value: int) -> Callable[[int], bool]:
        """A membership test resolved once, for filtering many UIDs."""
        ranges = self.ranges(max_value)
        starts = [lo for lo, _ in ranges]

        def matches(number: int) -> bool:
            index = bisect_right(starts, number) - 1
            return index >= 0 and number <= ranges[index][1]

        return matches

    def resolve(self, max_value: int) -> Iterator[int]:
        """Every number of the set from 1 to ``max_value``, ascending, once.

        For sequence numbers this is the selection. For UIDs, intersect
        with the UIDs in use through :meth:`contains` or :meth:`ranges`
        rather than iterating, since UIDs can be sparse and large.
        """
        for lo, hi in self.ranges(max_value):
            yield from range(lo, min(hi, max_value) + 1)

    def to_bytes(self) -> bytes:
        def one(number: int | None) -> bytes:
            return b"*" if number is None else b"%d" % number

        return b",".join(
            one(first) if first == last else one(first) + b":" + one(last)
            for first, last in self.items
        )

    def __str__(self) -> str:
        return self.to_bytes().decode("ascii")


def read_sequence_set(buf: bytes, pos: int) -> tuple[SequenceSet, int]:
    """Read ``sequence-set`` at ``pos``; at most ``MAX_SEQUENCE_RANGES`` elements."""
    items: list[tuple[int | None, int | None]] = []
    while True:
        match = _ELEMENT.match(buf, pos)
        if match is None:
            raise NotParseable("invalid sequence set")
        first = _number(match.group(1))
        last = first if match.group(2) is None else _number(match.group(2))
        items.append((first, last))
        if len(items) > MAX_SEQUENCE_RANGES:
            raise NotParseable("too many ranges in sequence set", code="LIMIT")
        pos = match.end()
        following = buf[pos : pos + 1]
        if following == b":" or following.isdigit():  # "1:2:3", an 11-digit number
            raise NotParseable("invalid sequence set")
        if buf[pos : pos + 1] != b",":
            return SequenceSet(tuple(items)), pos
        pos += 1
