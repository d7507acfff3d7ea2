"""Sequence sets (RFC 3501 §9) and compact UID sets (RFC 4315)."""

import pytest

from imap.proto.errors import NotParseable
from imap.proto.limits import MAX_SEQUENCE_RANGES
from imap.proto.sequence import SequenceSet, format_uid_set, read_sequence_set


@pytest.mark.parametrize(
    ("text", "items"),
    [
        (b"1", ((1, 1),)),
        (b"*", ((None, None),)),
        (b"1:3,5,7:*", ((1, 3), (5, 5), (7, None))),
        (b"3:1", ((3, 1),)),
        (b"*:4", ((None, 4),)),
        (b"4294967295", ((4294967295, 4294967295),)),
    ],
)
def test_parse(text: bytes, items: tuple[tuple[int | None, int | None], ...]) -> None:
    """Ensure valid sets parse into the ranges the client wrote, '*' kept symbolic."""
    parsed = SequenceSet.parse(text)
    assert parsed.items == items
    assert parsed.to_bytes() == text


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"0",
        b"0:5",
        b"01",
        b"1:",
        b":1",
        b"1::2",
        b"1:2:3",
        b",1",
        b"1,",
        b"1,,2",
        b"4294967296",
        b"99999999999",
        b"abc",
        b"1-3",
        b"$",
        b"1 2",
        b"\xff",
    ],
)
def test_rejects_bad_sets(text: bytes) -> None:
    """Ensure zero, dangling ranges, overflow and garbage are not sequence sets."""
    with pytest.raises(NotParseable):
        SequenceSet.parse(text)


def test_range_count_limit() -> None:
    """Ensure a set with more than MAX_SEQUENCE_RANGES elements is refused as a limit."""
    ok = b",".join(b"%d" % (n * 2 + 1) for n in range(MAX_SEQUENCE_RANGES))
    assert len(SequenceSet.parse(ok).items) == MAX_SEQUENCE_RANGES
    with pytest.raises(NotParseable) as info:
        SequenceSet.parse(ok + b",1")
    assert info.value.code == "LIMIT"


def test_reader_stops_at_following_token() -> None:
    """Ensure the reader returns the position after the set, before the next token."""
    value, pos = read_sequence_set(b"1:4 FLAGS", 0)
    assert value.items == ((1, 4),)
    assert pos == 3


@pytest.mark.parametrize(
    ("text", "max_value", "ranges"),
    [
        (b"1:3,5,7:*", 10, [(1, 3), (5, 5), (7, 10)]),
        (b"3:1", 10, [(1, 3)]),
        (b"2,1,3", 10, [(1, 3)]),
        (b"1:5,3:8", 10, [(1, 8)]),
        (b"*", 7, [(7, 7)]),
        # RFC 3501 §6.4.8: "n:*" includes the highest UID even when n is larger.
        (b"5:*", 3, [(3, 5)]),
        (b"1:*", 0, []),
        (b"*", 0, []),
        (b"4,1:*", 0, [(4, 4)]),
        (b"100", 10, [(100, 100)]),
    ],
)
def test_ranges(text: bytes, max_value: int, ranges: list[tuple[int, int]]) -> None:
    """Ensure ranges resolve '*', normalise direction, sort and merge."""
    assert SequenceSet.parse(text).ranges(max_value) == ranges


def test_resolve_clamps_to_max() -> None:
    """Ensure resolve yields each existing number once, never above max_value."""
    assert list(SequenceSet.parse(b"3,1:2,9:*,2").resolve(10)) == [1, 2, 3, 9, 10]
    assert list(SequenceSet.parse(b"8:20").resolve(10)) == [8, 9, 10]
    assert list(SequenceSet.parse(b"1:*").resolve(0)) == []


@pytest.mark.parametrize(
    ("number", "expected"),
    [(0, False), (1, True), (3, True), (4, False), (5, True), (6, False), (7, True), (99, True)],
)
def test_contains_and_matcher(number: int, expected: bool) -> None:
    """Ensure membership follows the resolved ranges, '*' being max_value."""
    seq = SequenceSet.parse(b"1:3,5,7:*")
    assert seq.contains(number, 99) is expected
    assert seq.matcher(99)(number) is expected


def test_max_explicit_and_star() -> None:
    """Ensure the largest written number and the use of '*' are reported."""
    assert SequenceSet.parse(b"4,1:9").max_explicit() == 9
    assert SequenceSet.parse(b"*").max_explicit() == 0
    assert SequenceSet.parse(b"2:*").uses_star
    assert not SequenceSet.parse(b"2:3").uses_star


def test_of_and_str() -> None:
    """Ensure SequenceSet.of builds single numbers and str renders wire syntax."""
    assert str(SequenceSet.of(1, 5)) == "1,5"
    with pytest.raises(ValueError):
        SequenceSet(())


@pytest.mark.parametrize(
    ("uids", "wire"),
    [
        ([1, 2, 3, 5], b"1:3,5"),
        ([7], b"7"),
        ([1, 3, 5], b"1,3,5"),
        ([10, 11, 12, 13], b"10:13"),
        ([5, 1, 2], b"5,1:2"),  # order kept for COPYUID correspondence
        ([4294967295], b"4294967295"),
    ],
)
def test_format_uid_set(uids: list[int], wire: bytes) -> None:
    """Ensure consecutive runs collapse and the input order is kept."""
    assert format_uid_set(uids) == wire


@pytest.mark.parametrize("uids", [[], [0], [-1], [2**32], [True]])
def test_format_uid_set_rejects(uids: list[int]) -> None:
    """Ensure empty sets and numbers that are not UIDs are refused."""
    with pytest.raises(ValueError):
        format_uid_set(uids)
