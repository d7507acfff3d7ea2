"""Summaries: answers identical to parsing the message, persisted exactly, bounded in memory."""

from __future__ import annotations

import pytest

from imap.message_cache import (
    ENTRY_OVERHEAD,
    SUMMARY_FORMAT,
    Summary,
    SummaryCache,
    encoded_summary,
    summarize,
)
from imap.mime import (
    MessageView,
    SectionSpec,
    body_structure,
    envelope,
    header_values,
    render,
    section,
)
from tests.imap.test_mime import ALTERNATIVE, DIGEST, ENCODED, MIXED, PLAIN

MESSAGES = {
    "plain": PLAIN,
    "alternative": ALTERNATIVE,
    "mixed": MIXED,
    "digest": DIGEST,
    "encoded": ENCODED,
    "no body": b"Subject: only a header\r\nFrom: a@b.example\r\n",
    "empty header": b"\r\njust a body\r\n",
    "lf endings": b"Subject: lf\nTo: x@y.example\n\nbody\n",
}
FIELD_LISTS = (("Subject", "From"), ("to", "CC", "Message-ID"), ("X-Missing",))


@pytest.mark.parametrize("name", MESSAGES)
def test_summary_matches_the_parsed_message(name: str) -> None:
    """Ensure ENVELOPE, BODY, BODYSTRUCTURE and header sections from a summary equal a parse."""
    view = MessageView(MESSAGES[name])
    summary = summarize(view)
    assert summary.envelope == render(envelope(view))
    assert summary.body == render(body_structure(view, extended=False))
    assert summary.bodystructure == render(body_structure(view, extended=True))
    assert summary.header_section("HEADER", ()) == section(view, SectionSpec(text="HEADER"))
    for fields in FIELD_LISTS:
        for text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            expected = section(view, SectionSpec((), text, fields))
            assert summary.header_section(text, fields) == expected, (text, fields)
            assert summary.header_section(text, fields) == expected  # from its memo
    for field in ("subject", "From", "X-Missing"):
        assert summary.header_values(field) == header_values(view, field)


@pytest.mark.parametrize("name", MESSAGES)
def test_persisted_form_gives_the_same_summary(name: str) -> None:
    """Ensure a summary read back from its persisted form holds the very same octets."""
    summary = summarize(MessageView(MESSAGES[name]))
    data = encoded_summary(MESSAGES[name])
    assert data == summary.encode() and data[0] == SUMMARY_FORMAT
    again = Summary.decode(data)
    assert again == summary
    assert Summary.decode(bytes([SUMMARY_FORMAT + 1]) + data[1:]) is None  # another rendering
    assert Summary.decode(data[:-1]) is None  # truncated


def test_header_values_are_decoded_and_remembered() -> None:
    """Ensure SEARCH gets RFC 2047 decoded values, computed once per field."""
    summary = summarize(MessageView(b"Subject: =?UTF-8?Q?caf=C3=A9?= au lait\r\n\r\nx\r\n"))
    assert summary.header_values("SUBJECT") == ["café au lait"]
    assert summary.decoded == {"subject": ["café au lait"]}
    assert summary.header_values("X-None") == []


def _summary(size: int = 1) -> Summary:
    return Summary(b"h" * size, b"e" * size, b"b" * size, b"s" * size)


def test_cache_is_bounded_by_octets() -> None:
    """Ensure entries are evicted oldest first once the octets exceed the bound."""
    one = _summary(100)
    cache = SummaryCache(max_bytes=3 * one.cost)
    for i in range(5):
        cache.put(f"m{i}", _summary(100))
    assert len(cache) == 3 and cache.size == 3 * one.cost
    assert cache.get("m0") is None and cache.get("m4") is not None
    assert one.cost == ENTRY_OVERHEAD + 400


def test_recently_used_entries_get_a_second_chance() -> None:
    """Ensure a hit protects an entry from the next eviction (CLOCK)."""
    cost = _summary().cost
    cache = SummaryCache(max_bytes=2 * cost)
    cache.put("a", _summary())
    cache.put("b", _summary())
    assert cache.get("a") is not None  # referenced: survives the next eviction
    cache.put("c", _summary())
    assert cache.get("a") is not None and cache.get("b") is None


def test_putting_again_reaccounts_the_entry() -> None:
    """Ensure what is derived and kept on an entry later is counted against the bound."""
    cache = SummaryCache()
    summary = summarize(MessageView(MIXED))
    cache.put("x", summary)
    before = cache.size
    summary.header_section("HEADER.FIELDS", ("Subject",))
    summary.header_values("From")
    summary.remember_line(1, object(), b"UID 1 FLAGS ()")
    cache.put("x", summary)
    assert cache.size == summary.cost > before and len(cache) == 1
