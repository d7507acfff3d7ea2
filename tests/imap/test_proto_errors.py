"""Wire-layer exceptions and the responses they carry."""

import pytest

from imap.proto.errors import (
    IMAPError,
    LiteralTooLarge,
    NeedsLiteral,
    NotParseable,
    UnsupportedCharset,
)
from imap.proto.responses import ResponseCode, Status


def test_not_parseable_tagged() -> None:
    """Ensure a parse error with a tag answers tag BAD with the message."""
    exc = NotParseable("unknown command", tag="a1")
    assert exc.response() == b"a1 BAD unknown command\r\n"


def test_not_parseable_untagged() -> None:
    """Ensure a parse error without a tag answers * BAD."""
    assert NotParseable("invalid tag").response() == b"* BAD invalid tag\r\n"


def test_not_parseable_code() -> None:
    """Ensure a limit error carries its response code."""
    exc = NotParseable("too deep", tag="t", code="LIMIT")
    assert exc.response() == b"t BAD [LIMIT] too deep\r\n"


def test_with_tag_keeps_existing_tag() -> None:
    """Ensure with_tag fills a missing tag and never overwrites one."""
    assert NotParseable("x").with_tag("a").tag == "a"
    assert NotParseable("x", tag="a").with_tag("b").tag == "a"


def test_unsupported_charset_is_no() -> None:
    """Ensure an unknown SEARCH charset is a NO with BADCHARSET (RFC 3501 §6.4.4)."""
    exc = UnsupportedCharset("KOI8-R", ("US-ASCII", "UTF-8"), tag="s1")
    assert exc.response() == b"s1 NO [BADCHARSET (US-ASCII UTF-8)] unsupported charset\r\n"
    assert isinstance(exc, NotParseable)


@pytest.mark.parametrize(("non_sync", "status"), [(False, b"NO"), (True, b"BAD")])
def test_literal_too_large(non_sync: bool, status: bytes) -> None:
    """Ensure a refused literal is NO for synchronising, BAD for non-synchronising."""
    exc = LiteralTooLarge(10**9, non_sync, tag="a")
    assert exc.response() == b"a " + status + b" [TOOBIG] literal too large\r\n"
    assert exc.size == 10**9


def test_needs_literal_context() -> None:
    """Ensure the tag and command name are attached without replacing known ones."""
    exc = NeedsLiteral(5, True).with_context("a1", "APPEND")
    assert (exc.size, exc.non_sync, exc.tag, exc.command) == (5, True, "a1", "APPEND")
    assert not isinstance(exc, NotParseable)


@pytest.mark.parametrize(
    ("error", "tag", "line"),
    [
        (
            IMAPError(Status.NO, "Mailbox does not exist", ResponseCode.NONEXISTENT),
            "a1",
            b"a1 NO [NONEXISTENT] Mailbox does not exist\r\n",
        ),
        (
            IMAPError.no("Quota exceeded", ResponseCode.OVERQUOTA),
            "b2",
            b"b2 NO [OVERQUOTA] Quota exceeded\r\n",
        ),
        (IMAPError.bad("No mailbox selected"), "c3", b"c3 BAD No mailbox selected\r\n"),
        (IMAPError("NO", "Try later", "UNAVAILABLE"), None, b"* NO [UNAVAILABLE] Try later\r\n"),
        (
            IMAPError.no("Create it first", b"TRYCREATE"),
            "d",
            b"d NO [TRYCREATE] Create it first\r\n",
        ),
    ],
)
def test_imap_error_response(error: IMAPError, tag: str | None, line: bytes) -> None:
    """Ensure IMAPError renders status, optional code and text for a tag."""
    assert error.response(tag) == line


@pytest.mark.parametrize("status", ["OK", "BYE", "PREAUTH"])
def test_imap_error_only_no_or_bad(status: str) -> None:
    """Ensure an IMAPError cannot claim success or end the connection."""
    with pytest.raises(ValueError):
        IMAPError(status, "x")


def test_imap_error_text_cannot_inject_lines() -> None:
    """Ensure text with CR/LF cannot smuggle a second response line."""
    line = IMAPError.no("bad\r\n* OK injected").response("a")
    assert line.count(b"\r\n") == 1
    assert line == b"a NO bad * OK injected\r\n"
