"""SEARCH criteria (RFC 3501 §6.4.4) parsed into key trees."""

from datetime import date

import pytest

from imap.proto.errors import NotParseable, UnsupportedCharset
from imap.proto.limits import MAX_NESTING_DEPTH
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
    check_charset,
    read_search_criteria,
    read_search_key,
    uses_modseq,
    walk,
)
from imap.proto.sequence import SequenceSet
from imap.proto.tokens import read_end


def key(text: bytes) -> SearchKey:
    buf = b" " + text + b"\r\n"
    value, pos = read_search_criteria(buf, 0)
    read_end(buf, pos)
    return value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"ALL", AllKey()),
        (b"all", AllKey()),
        (b"ANSWERED", FlagKey("\\Answered")),
        (b"DELETED", FlagKey("\\Deleted")),
        (b"DRAFT", FlagKey("\\Draft")),
        (b"FLAGGED", FlagKey("\\Flagged")),
        (b"RECENT", FlagKey("\\Recent")),
        (b"SEEN", FlagKey("\\Seen")),
        (b"UNANSWERED", FlagKey("\\Answered", present=False)),
        (b"UNDELETED", FlagKey("\\Deleted", present=False)),
        (b"UNDRAFT", FlagKey("\\Draft", present=False)),
        (b"UNFLAGGED", FlagKey("\\Flagged", present=False)),
        (b"UNSEEN", FlagKey("\\Seen", present=False)),
        (b"NEW", AndKey((FlagKey("\\Recent"), FlagKey("\\Seen", present=False)))),
        (b"OLD", FlagKey("\\Recent", present=False)),
        (b"KEYWORD $Forwarded", FlagKey("$Forwarded")),
        (b"UNKEYWORD Junk", FlagKey("Junk", present=False)),
        (b"BCC joe", HeaderKey("Bcc", "joe")),
        (b"CC joe", HeaderKey("Cc", "joe")),
        (b'FROM "Smith"', HeaderKey("From", "Smith")),
        (b"SUBJECT {5}\r\nhello", HeaderKey("Subject", "hello")),
        (b"TO x@y", HeaderKey("To", "x@y")),
        (b'HEADER X-Spam ""', HeaderKey("X-Spam", "")),
        (b"BODY needle", BodyKey("needle")),
        (b'TEXT "two words"', TextKey("two words")),
        (b"BEFORE 1-Feb-1994", DateKey(DateField.INTERNAL, DateRelation.BEFORE, date(1994, 2, 1))),
        (b"ON 1-Feb-1994", DateKey(DateField.INTERNAL, DateRelation.ON, date(1994, 2, 1))),
        (b"SINCE 1-Feb-1994", DateKey(DateField.INTERNAL, DateRelation.SINCE, date(1994, 2, 1))),
        (b"SENTBEFORE 2-Mar-2020", DateKey(DateField.SENT, DateRelation.BEFORE, date(2020, 3, 2))),
        (b'SENTON "2-Mar-2020"', DateKey(DateField.SENT, DateRelation.ON, date(2020, 3, 2))),
        (b"SENTSINCE 2-Mar-2020", DateKey(DateField.SENT, DateRelation.SINCE, date(2020, 3, 2))),
        (b"LARGER 1024", SizeKey(True, 1024)),
        (b"SMALLER 0", SizeKey(False, 0)),
        (b"UID 1:*", SequenceKey(SequenceSet(((1, None),)), uid=True)),
        (b"2,4:5", SequenceKey(SequenceSet(((2, 2), (4, 5))))),
        (b"*", SequenceKey(SequenceSet(((None, None),)))),
        (b"NOT SEEN", NotKey(FlagKey("\\Seen"))),
        (b"OR SEEN FLAGGED", OrKey(FlagKey("\\Seen"), FlagKey("\\Flagged"))),
        (b"(SEEN)", FlagKey("\\Seen")),
        (b"MODSEQ 620162338", ModSeqKey(620162338)),
        (b"MODSEQ 0", ModSeqKey(0)),
        (
            b'MODSEQ "/flags/\\\\draft" all 620162338',
            ModSeqKey(620162338, "/flags/\\draft", "all"),
        ),
    ],
)
def test_single_keys(text: bytes, expected: SearchKey) -> None:
    """Ensure every search key of RFC 3501 §6.4.4 (and MODSEQ) parses to its node."""
    assert key(text) == expected


def test_utf8_strings() -> None:
    """Ensure search strings are decoded as UTF-8, in literals and quoted strings."""
    assert key("SUBJECT {6}\r\nGrüß".encode()) == HeaderKey("Subject", "Grüß")
    assert key('BODY "café"'.encode()) == BodyKey("café")


def test_implicit_and_and_groups() -> None:
    """Ensure keys side by side are an AND, and groups and OR nest as written."""
    tree = key(b"OR FROM a (TO b CC c) NOT 1:3 UNSEEN")
    assert tree == AndKey(
        (
            OrKey(
                HeaderKey("From", "a"),
                AndKey((HeaderKey("To", "b"), HeaderKey("Cc", "c"))),
            ),
            NotKey(SequenceKey(SequenceSet(((1, 3),)))),
            FlagKey("\\Seen", present=False),
        )
    )


def test_rfc_example() -> None:
    """Ensure the example of RFC 3501 §6.4.4 parses."""
    tree = key(b'FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"')
    assert tree == AndKey(
        (
            FlagKey("\\Flagged"),
            DateKey(DateField.INTERNAL, DateRelation.SINCE, date(1994, 2, 1)),
            NotKey(HeaderKey("From", "Smith")),
        )
    )


def test_nesting_at_limit_is_accepted() -> None:
    """Ensure nesting up to MAX_NESTING_DEPTH is fine."""
    text = b"NOT " * MAX_NESTING_DEPTH + b"SEEN"
    tree = key(text)
    assert sum(isinstance(node, NotKey) for node in walk(tree)) == MAX_NESTING_DEPTH


@pytest.mark.parametrize(
    "text",
    [
        b"NOT " * (MAX_NESTING_DEPTH + 1) + b"SEEN",
        b"(" * (MAX_NESTING_DEPTH + 1) + b"SEEN" + b")" * (MAX_NESTING_DEPTH + 1),
        b"OR " * (MAX_NESTING_DEPTH + 1) + b"SEEN" + b" SEEN" * (MAX_NESTING_DEPTH + 1),
        b"(" * 5000,
        b"NOT " * 5000 + b"ALL",
    ],
)
def test_deep_nesting_is_refused(text: bytes) -> None:
    """Ensure deep NOT/OR/parenthesis nesting hits the limit, never the recursion limit."""
    with pytest.raises(NotParseable) as info:
        key(text)
    assert info.value.code == "LIMIT"


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"BOGUS",
        b"FROM",
        b"NOT",
        b"OR SEEN",
        b"SINCE 31-Feb-2020",
        b"SINCE yesterday",
        b"LARGER -1",
        b"LARGER 99999999999",
        b"UID 0",
        b"UID abc",
        b"0",
        b"1:",
        b"KEYWORD \\Seen",
        b"HEADER Bad:Name x",
        b"HEADER Subject",
        b"(SEEN",
        b"SEEN)",
        b"()",
        b"SEEN  UNSEEN",
        b"SUBJECT \xff\xfe",
        b"SUBJECT {2}\r\n\xff\xfe",
        b'MODSEQ "/other/x" all 5',
        b'MODSEQ "/flags/x" mine 5',
        b"MODSEQ 9223372036854775808",
        b"$",
        b"SEEN\xc3\xa9",
    ],
)
def test_bad_criteria(text: bytes) -> None:
    """Ensure unknown keys, missing or malformed arguments and stray tokens are refused."""
    with pytest.raises(NotParseable):
        key(text)


def test_read_search_key_position() -> None:
    """Ensure a single key read stops right after itself."""
    value, pos = read_search_key(b"SEEN UNSEEN", 0)
    assert value == FlagKey("\\Seen")
    assert pos == 4


@pytest.mark.parametrize(("charset", "name"), [("utf-8", "UTF-8"), ("US-ASCII", "US-ASCII")])
def test_check_charset(charset: str, name: str) -> None:
    """Ensure supported charsets are recognised case-insensitively."""
    assert check_charset(charset) == name


@pytest.mark.parametrize("charset", ["KOI8-R", "ISO-8859-1", "base64", ""])
def test_check_charset_refuses(charset: str) -> None:
    """Ensure other charsets raise BADCHARSET."""
    with pytest.raises(UnsupportedCharset):
        check_charset(charset)


def test_uses_modseq() -> None:
    """Ensure a MODSEQ key anywhere in the tree is found."""
    assert uses_modseq(key(b"OR SEEN NOT (FLAGGED MODSEQ 5)"))
    assert not uses_modseq(key(b"OR SEEN NOT (FLAGGED 1:5)"))
