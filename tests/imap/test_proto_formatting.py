"""Serialisation of Python values into IMAP data syntax."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from imap.proto.formatting import (
    Atom,
    Literal,
    Raw,
    Value,
    format_astring,
    format_datetime,
    format_flags,
    format_literal,
    format_nstring,
    format_string,
    format_value,
)


@pytest.mark.parametrize(
    ("data", "wire"),
    [
        ("hello", b'"hello"'),
        ("", b'""'),
        ('say "hi"', b'"say \\"hi\\""'),
        ("back\\slash", b'"back\\\\slash"'),
        (b"bytes ok", b'"bytes ok"'),
        ("two\r\nlines", b"{10}\r\ntwo\r\nlines"),
        ("Grüße", b"{7}\r\nGr\xc3\xbc\xc3\x9fe"),  # 8-bit goes as a literal
        (b"nul\x00", b"{4}\r\nnul\x00"),
    ],
)
def test_format_string(data: str | bytes, wire: bytes) -> None:
    """Ensure strings are quoted when safe and sent as literals otherwise."""
    assert format_string(data) == wire


@pytest.mark.parametrize(
    ("data", "wire"),
    [("INBOX", b"INBOX"), ("NIL", b'"NIL"'), ("a b", b'"a b"'), ("", b'""'), ("x]", b'"x]"')],
)
def test_format_astring(data: str, wire: bytes) -> None:
    """Ensure atoms go bare, except NIL and anything needing quotes."""
    assert format_astring(data) == wire


def test_format_nstring_and_literal() -> None:
    """Ensure None is NIL and literals carry their exact length."""
    assert format_nstring(None) == b"NIL"
    assert format_nstring("x") == b'"x"'
    assert format_literal(b"") == b"{0}\r\n"


def test_format_flags() -> None:
    """Ensure flags are listed bare in parentheses, \\* included."""
    assert format_flags(["\\Seen", "$Forwarded", "\\*"]) == b"(\\Seen $Forwarded \\*)"
    assert format_flags([]) == b"()"


@pytest.mark.parametrize("flag", ["two words", "(x)", "a\r\nb", "", '"q"', "ü"])
def test_atom_validation(flag: str) -> None:
    """Ensure an Atom cannot hold anything that would break the syntax."""
    with pytest.raises(ValueError):
        Atom(flag)


@pytest.mark.parametrize(
    ("moment", "wire"),
    [
        (
            datetime(1994, 2, 7, 21, 52, 25, tzinfo=timezone(-timedelta(hours=8))),
            b'" 7-Feb-1994 21:52:25 -0800"',
        ),
        (datetime(2026, 11, 28, 12, 0, 5, tzinfo=UTC), b'"28-Nov-2026 12:00:05 +0000"'),
        (
            datetime(2020, 1, 1, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            b'" 1-Jan-2020 00:00:00 +0530"',
        ),
        (
            datetime(2020, 1, 1, tzinfo=timezone(-timedelta(hours=3, minutes=30))),
            b'" 1-Jan-2020 00:00:00 -0330"',
        ),
    ],
)
def test_format_datetime(moment: datetime, wire: bytes) -> None:
    """Ensure INTERNALDATE uses a space-padded day, English month and the offset."""
    assert format_datetime(moment) == wire


def test_format_datetime_needs_timezone() -> None:
    """Ensure a naive datetime is refused rather than guessed."""
    with pytest.raises(ValueError):
        format_datetime(datetime(2020, 1, 1))


def test_format_envelope_shape() -> None:
    """Ensure an ENVELOPE-like nested value renders as in RFC 3501 §7.4.2."""
    envelope: Value = [
        "Wed, 17 Jul 1996 02:23:25 -0700 (PDT)",
        "IMAP4rev1 WG mtg summary and minutes",
        [["Terry Gray", None, "gray", "cac.washington.edu"]],
        None,
        [],
        None,
        "<B27397-0100000@cac.washington.edu>",
    ]
    assert format_value(envelope) == (
        b'("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes" '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) NIL () NIL '
        b'"<B27397-0100000@cac.washington.edu>")'
    )


def test_format_bodystructure_shape() -> None:
    """Ensure a BODYSTRUCTURE-like value mixes strings, numbers, NIL and lists."""
    part: Value = ("TEXT", "PLAIN", ("CHARSET", "US-ASCII"), None, None, "7BIT", 3028, 92)
    multipart: Value = (part, part, "MIXED")
    assert format_value(multipart) == (
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92) '
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92) "MIXED")'
    )


def test_format_value_wrappers() -> None:
    """Ensure Atom, Literal, Raw and datetime render as their IMAP forms."""
    moment = datetime(2020, 1, 1, tzinfo=UTC)
    value: Value = [Atom("\\Seen"), Literal(b"abc"), Raw(b"(FLAGS ())"), moment, 0]
    assert format_value(value) == (b'(\\Seen {3}\r\nabc (FLAGS ()) " 1-Jan-2020 00:00:00 +0000" 0)')


@pytest.mark.parametrize(
    ("value", "error"), [(True, TypeError), (-1, ValueError), (1.5, TypeError)]
)
def test_format_value_rejects(value: object, error: type[Exception]) -> None:
    """Ensure booleans, negative numbers and unknown types are refused."""
    with pytest.raises(error):
        format_value(value)  # type: ignore[arg-type]
