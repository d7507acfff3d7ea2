"""FETCH attributes, body sections and modifiers (RFC 3501 §6.4.5)."""

import pytest

from imap.proto.errors import NotParseable
from imap.proto.fetch import (
    MACROS,
    BodySection,
    FetchAttr,
    FetchItem,
    Section,
    SectionText,
    read_fetch_att,
    read_fetch_items,
    read_fetch_modifiers,
    read_section,
    sets_seen,
)
from imap.proto.limits import MAX_NESTING_DEPTH


@pytest.mark.parametrize(
    ("text", "item"),
    [
        (b"ENVELOPE", FetchAttr.ENVELOPE),
        (b"flags", FetchAttr.FLAGS),
        (b"INTERNALDATE", FetchAttr.INTERNALDATE),
        (b"RFC822", FetchAttr.RFC822),
        (b"RFC822.HEADER", FetchAttr.RFC822_HEADER),
        (b"RFC822.SIZE", FetchAttr.RFC822_SIZE),
        (b"RFC822.TEXT", FetchAttr.RFC822_TEXT),
        (b"BODY", FetchAttr.BODY),
        (b"BODYSTRUCTURE", FetchAttr.BODYSTRUCTURE),
        (b"UID", FetchAttr.UID),
        (b"MODSEQ", FetchAttr.MODSEQ),
        (b"BODY[]", BodySection()),
        (b"body.peek[]", BodySection(peek=True)),
        (b"BODY[HEADER]", BodySection(Section((), SectionText.HEADER))),
        (b"BODY[TEXT]", BodySection(Section((), SectionText.TEXT))),
        (b"BODY[1]", BodySection(Section((1,)))),
        (b"BODY[1.2.3]", BodySection(Section((1, 2, 3)))),
        (b"BODY[1.2.HEADER]", BodySection(Section((1, 2), SectionText.HEADER))),
        (b"BODY[3.MIME]", BodySection(Section((3,), SectionText.MIME))),
        (b"BODY[4.text]", BodySection(Section((4,), SectionText.TEXT))),
        (
            b"BODY.PEEK[HEADER.FIELDS (From Subject)]",
            BodySection(Section((), SectionText.HEADER_FIELDS, ("From", "Subject")), peek=True),
        ),
        (
            b'BODY[2.HEADER.FIELDS.NOT ("X-Spam" Received)]',
            BodySection(Section((2,), SectionText.HEADER_FIELDS_NOT, ("X-Spam", "Received"))),
        ),
        (b"BODY[]<0.2048>", BodySection(partial=(0, 2048))),
        (b"BODY.PEEK[TEXT]<100.5>", BodySection(Section((), SectionText.TEXT), True, (100, 5))),
    ],
)
def test_read_fetch_att(text: bytes, item: FetchItem) -> None:
    """Ensure every fetch-att form parses and consumes exactly itself."""
    assert read_fetch_att(text + b" ", 0) == (item, len(text))


@pytest.mark.parametrize(
    "text",
    [
        b"BOGUS",
        b"BODY.PEEK",
        b"BODY[",
        b"BODY[HEADER",
        b"BODY[0]",
        b"BODY[01]",
        b"BODY[1.]",
        b"BODY[.1]",
        b"BODY[MIME]",  # MIME needs a part number
        b"BODY[1.BOGUS]",
        b"BODY[HEADER.FIELDS]",
        b"BODY[HEADER.FIELDS ()]",
        b"BODY[HEADER.FIELDS (Bad:Name)]",
        b"BODY[HEADER.FIELDS (From]",
        b"BODY[]<0>",
        b"BODY[]<0.0>",
        b"BODY[]<a.1>",
        b"BODY[]<0.1",
        b"BODY[4294967296]",
        b"\xff",
        b"",
    ],
)
def test_read_fetch_att_rejects(text: bytes) -> None:
    """Ensure malformed attributes and sections are refused."""
    with pytest.raises(NotParseable):
        read_fetch_att(text, 0)


def test_section_depth_limit() -> None:
    """Ensure a part path longer than MAX_NESTING_DEPTH is refused."""
    ok = b".".join([b"1"] * MAX_NESTING_DEPTH)
    assert read_section(b"[" + ok + b"]", 0)[0].parts == (1,) * MAX_NESTING_DEPTH
    with pytest.raises(NotParseable) as info:
        read_section(b"[" + ok + b".1]", 0)
    assert info.value.code == "LIMIT"


@pytest.mark.parametrize(("macro", "items"), list(MACROS.items()))
def test_macros_expand(macro: str, items: tuple[FetchAttr, ...]) -> None:
    """Ensure ALL, FAST and FULL expand into their attributes (RFC 3501 §6.4.5)."""
    assert read_fetch_items(macro.lower().encode(), 0)[0] == items


def test_items_list_and_single() -> None:
    """Ensure a parenthesised list and a single attribute are both accepted."""
    items, _ = read_fetch_items(b"(UID FLAGS BODY.PEEK[HEADER])", 0)
    assert items == (
        FetchAttr.UID,
        FetchAttr.FLAGS,
        BodySection(Section((), SectionText.HEADER), peek=True),
    )
    assert read_fetch_items(b"UID", 0)[0] == (FetchAttr.UID,)


@pytest.mark.parametrize("text", [b"()", b"(ALL)", b"(UID", b"(UID  FLAGS)", b"ALL FAST"])
def test_items_reject(text: bytes) -> None:
    """Ensure empty lists and macros inside lists are refused."""
    with pytest.raises(NotParseable):
        _, pos = read_fetch_items(text, 0)
        if pos != len(text):
            raise NotParseable("trailing")


def test_modifiers() -> None:
    """Ensure CHANGEDSINCE is read (RFC 7162 §3.1.4.1)."""
    assert read_fetch_modifiers(b"(CHANGEDSINCE 12345)", 0) == (12345, 20)
    assert read_fetch_modifiers(b"(changedsince 9223372036854775807)", 0)[0] == 2**63 - 1


@pytest.mark.parametrize(
    "text",
    [
        b"()",
        b"(VANISHED)",
        b"(CHANGEDSINCE)",
        b"(CHANGEDSINCE x)",
        b"(CHANGEDSINCE 1 CHANGEDSINCE 2)",
        b"(CHANGEDSINCE 9223372036854775808)",
    ],
)
def test_modifiers_reject(text: bytes) -> None:
    """Ensure unknown, empty, repeated or out-of-range modifiers are refused."""
    with pytest.raises(NotParseable):
        read_fetch_modifiers(text, 0)


@pytest.mark.parametrize(
    ("item", "name"),
    [
        (BodySection(), b"BODY[]"),
        (BodySection(peek=True, partial=(10, 20)), b"BODY[]<10>"),
        (BodySection(Section((1, 2), SectionText.MIME)), b"BODY[1.2.MIME]"),
        (
            BodySection(Section((), SectionText.HEADER_FIELDS, ("From", "To")), peek=True),
            b"BODY[HEADER.FIELDS (From To)]",
        ),
    ],
)
def test_response_name(item: BodySection, name: bytes) -> None:
    """Ensure the response echoes the section without PEEK and with the origin only."""
    assert item.response_name() == name


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ((FetchAttr.FLAGS, FetchAttr.UID), False),
        ((BodySection(peek=True),), False),
        ((FetchAttr.RFC822_HEADER,), False),
        ((BodySection(),), True),
        ((FetchAttr.RFC822,), True),
        ((FetchAttr.RFC822_TEXT,), True),
    ],
)
def test_sets_seen(items: tuple[FetchItem, ...], expected: bool) -> None:
    """Ensure only non-PEEK body fetches and RFC822/RFC822.TEXT set \\Seen."""
    assert sets_seen(items) is expected
