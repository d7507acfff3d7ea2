"""Low-level token readers (RFC 3501 §4, §9)."""

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from imap.proto.errors import LiteralTooLarge, NeedsLiteral, NotParseable
from imap.proto.limits import MAX_LINE_LENGTH, MAX_LITERAL_SIZE, MAX_LITERALS_PER_COMMAND
from imap.proto.tokens import (
    check_framing,
    literal_announcement,
    read_astring,
    read_atom,
    read_date,
    read_datetime,
    read_end,
    read_flag,
    read_flag_list,
    read_list_mailbox,
    read_literal,
    read_mailbox,
    read_nstring,
    read_number,
    read_quoted,
    read_string,
    read_tag,
)


@pytest.mark.parametrize(
    ("buf", "value", "pos"),
    [
        (b"FLAGS rest", b"FLAGS", 5),
        (b"a.b-c+d ", b"a.b-c+d", 7),
        (b"x[1]", b"x[1", 3),  # "]" ends an atom
        (b"$Forwarded)", b"$Forwarded", 10),
    ],
)
def test_read_atom(buf: bytes, value: bytes, pos: int) -> None:
    """Ensure an atom stops at the first atom-special."""
    assert read_atom(buf, 0) == (value, pos)


@pytest.mark.parametrize("buf", [b"", b" x", b"(x", b'"x"', b"*", b"%", b"\\Seen", b"\r\n"])
def test_read_atom_rejects(buf: bytes) -> None:
    """Ensure atom-specials and end of input are not atoms."""
    with pytest.raises(NotParseable):
        read_atom(buf, 0)


@pytest.mark.parametrize(
    ("buf", "prefix"), [(b"caf\xc3\xa9", b"caf"), (b"\x80abc", b""), (b"\xff", b"")]
)
def test_eight_bit_in_atom(buf: bytes, prefix: bytes) -> None:
    """Ensure 8-bit octets never become part of an atom and the error says why."""
    if prefix:
        assert read_atom(buf, 0) == (prefix, len(prefix))
    with pytest.raises(NotParseable, match="8-bit"):
        read_atom(buf, len(prefix))


@pytest.mark.parametrize(
    ("buf", "tag"), [(b"a1 NOOP", "a1"), (b"A.001 X", "A.001"), (b"x] y", "x]")]
)
def test_read_tag(buf: bytes, tag: str) -> None:
    """Ensure a tag is ASTRING-CHARs up to the space."""
    assert read_tag(buf, 0)[0] == tag


@pytest.mark.parametrize("buf", [b"+ x", b"* x", b" x", b"(x"])
def test_read_tag_rejects(buf: bytes) -> None:
    """Ensure '+', '*' and other specials cannot open a tag."""
    with pytest.raises(NotParseable):
        read_tag(buf, 0)


def test_tag_stops_at_plus() -> None:
    """Ensure '+' is not a tag character (RFC 3501 §9)."""
    assert read_tag(b"a+b", 0) == ("a", 1)


@pytest.mark.parametrize(
    ("buf", "value"),
    [(b'"hello"', b"hello"), (b'""', b""), (rb'"a\"b"', b'a"b'), (rb'"a\\b"', b"a\\b")],
)
def test_read_quoted(buf: bytes, value: bytes) -> None:
    """Ensure quoted strings unescape only \\" and \\\\."""
    assert read_quoted(buf, 0) == (value, len(buf))


def test_quoted_accepts_utf8() -> None:
    """Ensure UTF-8 in a quoted string is kept (RFC 9051 §9, clients send it)."""
    assert read_quoted('"Grüße"'.encode(), 0)[0] == "Grüße".encode()


@pytest.mark.parametrize(
    "buf",
    [b'"open', rb'"bad \n escape"', rb'"a\b"', b'"cr\rlf"', b'"nul\x00"', b'"\xff\xfe"', b"x"],
)
def test_read_quoted_rejects(buf: bytes) -> None:
    """Ensure unterminated, badly escaped, CR/LF/NUL and non-UTF-8 strings are refused."""
    with pytest.raises(NotParseable):
        read_quoted(buf, 0)


def test_literal_complete() -> None:
    """Ensure a literal with its octets present is returned with the next position."""
    buf = b"{5}\r\nhe\r\nl rest"
    assert read_literal(buf, 0) == (b"he\r\nl", 10)


def test_literal_needs_more() -> None:
    """Ensure a buffer ending after the announcement asks for the literal."""
    with pytest.raises(NeedsLiteral) as info:
        read_literal(b"{12}\r\n", 0)
    assert (info.value.size, info.value.non_sync) == (12, False)


def test_literal_plus_needs_more() -> None:
    """Ensure the non-synchronising form is reported as such (RFC 7888)."""
    with pytest.raises(NeedsLiteral) as info:
        read_literal(b"{3+}\r\n", 0)
    assert (info.value.size, info.value.non_sync) == (3, True)


def test_empty_literal() -> None:
    """Ensure {0} asks for nothing more once the rest of the line is there."""
    assert read_literal(b"{0}\r\n\r\n", 0) == (b"", 5)


@pytest.mark.parametrize("non_sync", [False, True])
def test_literal_too_large(non_sync: bool) -> None:
    """Ensure an oversized announcement is refused before any octet is read."""
    plus = b"+" if non_sync else b""
    with pytest.raises(LiteralTooLarge) as info:
        read_literal(b"{%d%s}\r\n" % (MAX_LITERAL_SIZE + 1, plus), 0)
    assert info.value.size == MAX_LITERAL_SIZE + 1
    assert info.value.non_sync is non_sync


@pytest.mark.parametrize(
    "buf",
    [
        b"{5}\r\nabc",  # shorter than announced
        b"{5}abcde",  # no CRLF
        b"{5}\nabcde",
        b"{-1}\r\n",
        b"{}\r\n",
        b"{5+\r\n",
        b"{" + b"9" * 50 + b"}\r\n",  # absurd number of digits
        b"{3}\r\na\x00b",  # NUL is not CHAR8
    ],
)
def test_literal_rejects(buf: bytes) -> None:
    """Ensure malformed announcements, short data and NUL octets are refused."""
    with pytest.raises(NotParseable):
        read_literal(buf, 0)


def test_literal_allows_nul_on_request() -> None:
    """Ensure APPEND can take message octets as they come."""
    assert read_literal(b"{3}\r\na\x00b", 0, allow_nul=True)[0] == b"a\x00b"


@pytest.mark.parametrize(
    ("buf", "value"),
    [(b"joe ", b"joe"), (b'"j o"', b"j o"), (b"{2}\r\nhi", b"hi"), (b"a]b", b"a]b")],
)
def test_read_astring(buf: bytes, value: bytes) -> None:
    """Ensure astring accepts atoms (with ']'), quoted strings and literals."""
    assert read_astring(buf, 0)[0] == value


def test_read_string_refuses_atom() -> None:
    """Ensure a bare atom is not a string."""
    with pytest.raises(NotParseable):
        read_string(b"abc", 0)


@pytest.mark.parametrize(
    ("buf", "value"),
    [(b"NIL ", None), (b"nil)", None), (b'"NIL"', b"NIL"), (b'"x"', b"x")],
)
def test_read_nstring(buf: bytes, value: bytes | None) -> None:
    """Ensure NIL is None and a quoted "NIL" is the string."""
    assert read_nstring(buf, 0)[0] == value


def test_read_nstring_rejects_atom_starting_with_nil() -> None:
    """Ensure NILX is neither NIL nor a string."""
    with pytest.raises(NotParseable):
        read_nstring(b"NILX", 0)


@pytest.mark.parametrize(
    ("buf", "kwargs", "value"),
    [
        (b"0", {}, 0),
        (b"007", {}, 7),
        (b"4294967295", {}, 2**32 - 1),
        (b"9223372036854775807", {"maximum": 2**63 - 1}, 2**63 - 1),
        (b"12", {"nonzero": True}, 12),
    ],
)
def test_read_number(buf: bytes, kwargs: dict[str, object], value: int) -> None:
    """Ensure numbers parse within their range."""
    assert read_number(buf, 0, **kwargs)[0] == value  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("buf", "kwargs"),
    [
        (b"4294967296", {}),
        (b"9" * 5000, {}),
        (b"0", {"nonzero": True}),
        (b"01", {"nonzero": True}),
        (b"-1", {}),
        (b"", {}),
        (b"x", {}),
    ],
)
def test_read_number_rejects(buf: bytes, kwargs: dict[str, object]) -> None:
    """Ensure overflow, huge digit strings, zero for nz-number and non-digits are refused."""
    with pytest.raises(NotParseable):
        read_number(buf, 0, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("buf", "name"),
    [
        (b"INBOX", "INBOX"),
        (b"inbox", "INBOX"),
        (b'"InBoX"', "INBOX"),
        (b"INBOX/Sub", "INBOX/Sub"),
        (b"Entw&APw-rfe", "Entwürfe"),
        (b'"My Folder"', "My Folder"),
        (b"{5}\r\nA&-B.", "A&B."),
        (b'""', ""),
    ],
)
def test_read_mailbox(buf: bytes, name: str) -> None:
    """Ensure mailboxes are decoded from modified UTF-7 and INBOX is normalised."""
    assert read_mailbox(buf, 0)[0] == name


@pytest.mark.parametrize("buf", [b"a&b", b"&AGE-", b'"caf\xc3\xa9"', b"&AAA-", b"x&AAo-y"])
def test_read_mailbox_rejects(buf: bytes) -> None:
    """Ensure invalid modified UTF-7 and control characters are refused."""
    with pytest.raises(NotParseable):
        read_mailbox(buf, 0)


@pytest.mark.parametrize(
    ("buf", "pattern"), [(b"%", "%"), (b"*", "*"), (b"INBOX/%", "INBOX/%"), (b'"a b*"', "a b*")]
)
def test_read_list_mailbox(buf: bytes, pattern: str) -> None:
    """Ensure LIST patterns keep their wildcards."""
    assert read_list_mailbox(buf, 0)[0] == pattern


@pytest.mark.parametrize(
    ("buf", "flag"),
    [
        (b"\\seen", "\\Seen"),
        (b"\\ANSWERED", "\\Answered"),
        (b"\\Flagged", "\\Flagged"),
        (b"\\Deleted", "\\Deleted"),
        (b"\\Draft", "\\Draft"),
        (b"$Forwarded", "$Forwarded"),
        (b"NonJunk", "NonJunk"),
    ],
)
def test_read_flag(buf: bytes, flag: str) -> None:
    """Ensure system flags take their canonical spelling and keywords are kept."""
    assert read_flag(buf, 0)[0] == flag


@pytest.mark.parametrize("buf", [b"\\Recent", b"\\Bogus", b"\\", b"\\*", b"\xc3\xa9x", b"(x)"])
def test_read_flag_rejects(buf: bytes) -> None:
    """Ensure \\Recent, unknown system flags and non-atoms cannot be set."""
    with pytest.raises(NotParseable):
        read_flag(buf, 0)


def test_read_flag_allows_recent_on_request() -> None:
    """Ensure contexts that may mention \\Recent can read it."""
    assert read_flag(b"\\RECENT", 0, allow_recent=True)[0] == "\\Recent"


@pytest.mark.parametrize(
    ("buf", "flags"),
    [
        (b"()", ()),
        (b"(\\Seen)", ("\\Seen",)),
        (b"(\\Seen $x \\draft)", ("\\Seen", "$x", "\\Draft")),
    ],
)
def test_read_flag_list(buf: bytes, flags: tuple[str, ...]) -> None:
    """Ensure flag lists may be empty and keep order."""
    assert read_flag_list(buf, 0) == (flags, len(buf))


@pytest.mark.parametrize("buf", [b"(\\Seen", b"( \\Seen)", b"(\\Seen )", b"(a  b)", b"\\Seen"])
def test_read_flag_list_rejects(buf: bytes) -> None:
    """Ensure unbalanced parentheses and stray spaces are refused."""
    with pytest.raises(NotParseable):
        read_flag_list(buf, 0)


@pytest.mark.parametrize(
    ("buf", "value"),
    [
        (b"1-Feb-1994", date(1994, 2, 1)),
        (b"01-feb-1994", date(1994, 2, 1)),
        (b'"29-Feb-2024"', date(2024, 2, 29)),
        (b"31-DEC-1999", date(1999, 12, 31)),
    ],
)
def test_read_date(buf: bytes, value: date) -> None:
    """Ensure dates accept one or two day digits, any month case and quotes."""
    assert read_date(buf, 0) == (value, len(buf))


@pytest.mark.parametrize(
    "buf", [b"29-Feb-2023", b"32-Jan-2020", b"1-Foo-2020", b"1-Jan-20", b'"1-Jan-2020', b"x"]
)
def test_read_date_rejects(buf: bytes) -> None:
    """Ensure impossible dates, unknown months and bad quoting are refused."""
    with pytest.raises(NotParseable):
        read_date(buf, 0)


@pytest.mark.parametrize(
    ("buf", "value"),
    [
        (
            b'" 7-Feb-1994 21:52:25 -0800"',
            datetime(1994, 2, 7, 21, 52, 25, tzinfo=timezone(timedelta(hours=-8))),
        ),
        (
            b'"17-Jul-1996 02:44:25 +0530"',
            datetime(1996, 7, 17, 2, 44, 25, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        ),
        (b'"1-jan-2000 00:00:00 +0000"', datetime(2000, 1, 1, tzinfo=UTC)),
    ],
)
def test_read_datetime(buf: bytes, value: datetime) -> None:
    """Ensure date-time yields an aware datetime with the given offset."""
    parsed, pos = read_datetime(buf, 0)
    assert parsed == value
    assert parsed.utcoffset() == value.utcoffset()
    assert pos == len(buf)


@pytest.mark.parametrize(
    "buf",
    [
        b'"07-Feb-1994 25:00:00 +0000"',
        b'"07-Feb-1994 21:52:25 +2400"',
        b'"07-Feb-1994 21:52:25 +0060"',
        b'"07-Feb-1994 21:52:25"',
        b"07-Feb-1994 21:52:25 +0000",
        b'"31-Apr-1994 21:52:25 +0000"',
    ],
)
def test_read_datetime_rejects(buf: bytes) -> None:
    """Ensure bad times, zones, missing quotes and impossible dates are refused."""
    with pytest.raises(NotParseable):
        read_datetime(buf, 0)


@pytest.mark.parametrize(
    ("buf", "pos", "message"),
    [
        (b"x\r\n", 0, "unexpected characters"),
        (b"\r\nmore", 0, "after end"),
        (b"", 0, "unexpected end"),
    ],
)
def test_read_end(buf: bytes, pos: int, message: str) -> None:
    """Ensure trailing garbage and data after the final CRLF are refused."""
    with pytest.raises(NotParseable, match=message):
        read_end(buf, pos)


def test_framing_accepts_line_at_limit() -> None:
    """Ensure a line of exactly MAX_LINE_LENGTH octets plus CRLF passes."""
    check_framing(b"a" * MAX_LINE_LENGTH + b"\r\n")


def test_framing_refuses_overlong_line() -> None:
    """Ensure one octet more than MAX_LINE_LENGTH is refused as a limit."""
    with pytest.raises(NotParseable) as info:
        check_framing(b"a" * (MAX_LINE_LENGTH + 1) + b"\r\n")
    assert info.value.code == "LIMIT"


def test_framing_skips_literal_data() -> None:
    """Ensure literal octets do not count toward the line length."""
    big = b"x" * (MAX_LINE_LENGTH * 3)
    check_framing(b"a1 LOGIN {%d}\r\n" % len(big) + big + b" pw\r\n")


def test_framing_checks_line_after_literal() -> None:
    """Ensure the line that continues after a literal is also limited."""
    with pytest.raises(NotParseable):
        check_framing(b"a1 LOGIN {1}\r\nx " + b"p" * MAX_LINE_LENGTH + b"\r\n")


def test_framing_limits_literal_count() -> None:
    """Ensure a command cannot announce literals without bound."""
    piece = b" {1+}\r\nx"
    check_framing(b"a SEARCH" + piece * MAX_LITERALS_PER_COMMAND + b"\r\n")
    with pytest.raises(NotParseable, match="too many literals"):
        check_framing(b"a SEARCH" + piece * (MAX_LITERALS_PER_COMMAND + 1) + b"\r\n")


@pytest.mark.parametrize(
    ("line", "result"),
    [
        (b"a1 LOGIN {5}\r\n", (5, False)),
        (b"a1 APPEND x {100+}\r\n", (100, True)),
        (b"a1 NOOP\r\n", None),
        (b"a1 LOGIN {5}", None),
        (b"a1 X {" + b"9" * 40 + b"}\r\n", None),
    ],
)
def test_literal_announcement(line: bytes, result: tuple[int, bool] | None) -> None:
    """Ensure the server can find a trailing literal to discard after an error."""
    assert literal_announcement(line) == result
