"""Low-level readers for the tokens of RFC 3501 §9.

Every reader has the shape ``read_x(buf, pos) -> (value, newpos)``: it looks
at ``buf`` from ``pos``, returns the value and the position after it, and
raises :class:`NotParseable` when the input does not match. Readers never
skip whitespace; the grammar fixes exactly one SP between tokens.

A literal ``{n}`` / ``{n+}`` (RFC 3501 §4.3, RFC 7888) raises
:class:`NeedsLiteral` when the buffer ends right after its CRLF; once the
server has appended the octets and the rest of the line, the same call
succeeds.

Strings are returned as ``bytes``; the command parsers decide how to decode
(UTF-8 for user names, modified UTF-7 for mailboxes, the SEARCH charset).
"""

import re
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import TypeVar

from imap.proto import mutf7
from imap.proto.errors import LiteralTooLarge, NeedsLiteral, NotParseable
from imap.proto.limits import (
    MAX_LINE_LENGTH,
    MAX_LITERAL_SIZE,
    MAX_LITERALS_PER_COMMAND,
    MAX_NUMBER,
    MAX_NUMBER_DIGITS,
)

CRLF = b"\r\n"

# RFC 3501 §9. ATOM-CHAR excludes atom-specials: "(" ")" "{" SP CTL "%" "*"
# '"' "\" "]" and, CHAR being 7-bit, every octet above 0x7F.
_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\\]]+')
_ASTRING = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\]+')  # + resp-specials "]"
_LIST_MAILBOX = re.compile(rb'[^\x00-\x20\x7f-\xff(){"\\]+')  # + "%" "*" "]"
_TAG = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\+]+')  # ASTRING-CHAR minus "+"
_DIGITS = re.compile(rb"[0-9]+")
# QUOTED-CHAR: TEXT-CHAR except '"' and "\", or "\" followed by one of them.
# Octets above 0x7F are admitted here and checked as UTF-8 below (RFC 9051
# §9 and RFC 6855 allow UTF-8 in quoted strings; RFC 3501 clients send it).
_QUOTED = re.compile(rb'"((?:[^"\\\r\n\x00]|\\["\\])*)"')
_QUOTED_ESCAPE = re.compile(rb'\\(["\\])')
_LITERAL = re.compile(rb"\{([0-9]+)(\+?)\}\r\n")
_LITERAL_AT_END = re.compile(rb"\{([0-9]+)(\+?)\}\Z")

_DATE = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
_DATE_TIME = re.compile(
    rb'"( [0-9]|[0-9]{1,2})-([A-Za-z]{3})-([0-9]{4}) '
    rb'([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"'
)
_MONTHS = {
    name: number
    for number, name in enumerate(b"JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(), 1)
}

# RFC 3501 §2.3.2: system flags are case-insensitive; we send them as spelled
# here. \Recent is server-managed and not accepted from clients (§2.3.2).
SYSTEM_FLAGS: dict[str, str] = {
    flag.upper(): flag
    for flag in (r"\Seen", r"\Answered", r"\Flagged", r"\Deleted", r"\Draft", r"\Recent")
}
RECENT = r"\Recent"

T = TypeVar("T")


def _describe(buf: bytes, pos: int) -> str:
    if pos >= len(buf):
        return "unexpected end of command"
    if buf.startswith(CRLF, pos):
        return "missing argument"
    if buf[pos] >= 0x80:
        return "8-bit characters are not allowed here"
    return "invalid character"


def fail(buf: bytes, pos: int, expected: str) -> NotParseable:
    """A NotParseable naming what was expected and why the input is not it."""
    return NotParseable(f"expected {expected}: {_describe(buf, pos)}")


def expect(buf: bytes, pos: int, token: bytes, what: str | None = None) -> int:
    if not buf.startswith(token, pos):
        raise fail(buf, pos, what or repr(token.decode("ascii")))
    return pos + len(token)


def read_sp(buf: bytes, pos: int) -> int:
    return expect(buf, pos, b" ", "space")


def peek(buf: bytes, pos: int) -> bytes:
    return buf[pos : pos + 1]


def at_line_end(buf: bytes, pos: int) -> bool:
    return buf.startswith(CRLF, pos)


def read_end(buf: bytes, pos: int) -> None:
    """The command must end here with its final CRLF and nothing after it."""
    if not at_line_end(buf, pos):
        if pos >= len(buf):
            raise NotParseable("unexpected end of command")
        raise NotParseable("unexpected characters after command")
    if pos + 2 != len(buf):
        raise NotParseable("unexpected data after end of command")


def decode_utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise NotParseable(f"{what} is not valid UTF-8") from None


def check_framing(buf: bytes, limit: int = MAX_LINE_LENGTH) -> None:
    """Refuse overlong lines and commands with too many literals.

    A line may hold ``limit`` octets besides its CRLF, literals aside; a
    command at most ``MAX_LITERALS_PER_COMMAND`` literals. Walks the framing
    (line, literal, line, ...) as the server read it. The server's own reader
    must stop at ``limit + 2`` octets without a CRLF; this is the same check
    for callers that did not.
    """
    pos = 0
    literals = 0
    while pos < len(buf):
        end = buf.find(CRLF, pos, pos + limit + 2)
        if end < 0:
            if len(buf) - pos > limit:
                raise NotParseable("command line too long", code="LIMIT")
            return
        match = _LITERAL_AT_END.search(buf, pos, end)
        if match is None or len(match.group(1)) > MAX_NUMBER_DIGITS:
            return
        literals += 1
        if literals > MAX_LITERALS_PER_COMMAND:
            raise NotParseable("too many literals in command", code="LIMIT")
        pos = end + 2 + int(match.group(1))


def literal_announcement(line: bytes) -> tuple[int, bool] | None:
    """``(size, non_sync)`` if ``line`` ends with ``{n}`` / ``{n+}`` CRLF.

    For the server after a parse error: a client that sent ``{n+}`` sends n
    octets regardless, which must be read and discarded (never parsed as
    commands). Sizes too long to be numbers give ``None``.
    """
    if not line.endswith(CRLF):
        return None
    match = _LITERAL_AT_END.search(line, 0, len(line) - 2)
    if match is None or len(match.group(1)) > MAX_NUMBER_DIGITS:
        return None
    return int(match.group(1)), match.group(2) == b"+"


def read_atom(buf: bytes, pos: int) -> tuple[bytes, int]:
    match = _ATOM.match(buf, pos)
    if match is None:
        raise fail(buf, pos, "atom")
    return match.group(), match.end()


def read_keyword(buf: bytes, pos: int) -> tuple[str, int]:
    """An atom used as a grammar keyword, upper-cased (keywords are case-insensitive)."""
    atom, pos = read_atom(buf, pos)
    return atom.decode("ascii").upper(), pos


def read_tag(buf: bytes, pos: int) -> tuple[str, int]:
    match = _TAG.match(buf, pos)
    if match is None:
        raise fail(buf, pos, "tag")
    return match.group().decode("ascii"), match.end()


def read_number(
    buf: bytes, pos: int, *, nonzero: bool = False, maximum: int = MAX_NUMBER
) -> tuple[int, int]:
    """``number`` (32-bit unsigned) or, with ``nonzero``, ``nz-number``.

    ``maximum`` widens the range for mod-sequences and number64.
    """
    match = _DIGITS.match(buf, pos)
    if match is None:
        raise fail(buf, pos, "number")
    digits = match.group()
    if nonzero and digits.startswith(b"0"):
        raise NotParseable("expected non-zero number")
    if len(digits) > MAX_NUMBER_DIGITS or int(digits) > maximum:
        raise NotParseable("number out of range")
    return int(digits), match.end()


def read_quoted(buf: bytes, pos: int) -> tuple[bytes, int]:
    match = _QUOTED.match(buf, pos)
    if match is None:
        raise NotParseable("invalid quoted string")
    raw = _QUOTED_ESCAPE.sub(rb"\1", match.group(1))
    if not raw.isascii():
        decode_utf8(raw, "quoted string")
    return raw, match.end()


def read_literal(buf: bytes, pos: int, *, allow_nul: bool = False) -> tuple[bytes, int]:
    """``{n}`` CRLF followed by n octets; ``{n+}`` is the RFC 7888 form.

    Raises :class:`LiteralTooLarge` above ``MAX_LITERAL_SIZE`` before any of
    the octets are needed, and :class:`NeedsLiteral` when the buffer stops
    right after the announcement. NUL is not a CHAR8 (RFC 3501 §9) and is
    refused unless ``allow_nul`` (APPEND keeps message octets as they come).
    """
    match = _LITERAL.match(buf, pos)
    if match is None:
        raise NotParseable("invalid literal")
    digits, non_sync = match.group(1), match.group(2) == b"+"
    if len(digits) > MAX_NUMBER_DIGITS:
        raise NotParseable("literal size out of range")
    size = int(digits)
    if size > MAX_LITERAL_SIZE:
        raise LiteralTooLarge(size, non_sync)
    start = match.end()
    if start == len(buf):
        raise NeedsLiteral(size, non_sync)
    end = start + size
    if end > len(buf):
        raise NotParseable("literal shorter than announced")
    data = buf[start:end]
    if not allow_nul and b"\x00" in data:
        raise NotParseable("NUL octet in literal")
    return data, end


def read_string(buf: bytes, pos: int) -> tuple[bytes, int]:
    """``string = quoted / literal``."""
    first = peek(buf, pos)
    if first == b'"':
        return read_quoted(buf, pos)
    if first == b"{":
        return read_literal(buf, pos)
    raise fail(buf, pos, "string")


def read_astring(buf: bytes, pos: int) -> tuple[bytes, int]:
    """``astring = 1*ASTRING-CHAR / string``."""
    if peek(buf, pos) in (b'"', b"{"):
        return read_string(buf, pos)
    match = _ASTRING.match(buf, pos)
    if match is None:
        raise fail(buf, pos, "string")
    return match.group(), match.end()


def read_nstring(buf: bytes, pos: int) -> tuple[bytes | None, int]:
    """``nstring = string / nil``."""
    if buf[pos : pos + 3].upper() == b"NIL" and _ATOM.match(buf, pos + 3) is None:
        return None, pos + 3
    return read_string(buf, pos)


def _decode_mailbox(raw: bytes) -> str:
    try:
        name = mutf7.decode(raw)
    except mutf7.InvalidMUTF7 as exc:
        raise NotParseable(f"invalid mailbox name: {exc}") from None
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in name):
        raise NotParseable("control characters in mailbox name")
    return name


def read_mailbox(buf: bytes, pos: int) -> tuple[str, int]:
    """``mailbox``: an astring in modified UTF-7, decoded.

    ``INBOX`` is case-insensitive (RFC 3501 §5.1) and always returned as
    ``"INBOX"``.
    """
    raw, pos = read_astring(buf, pos)
    name = _decode_mailbox(raw)
    return ("INBOX" if name.upper() == "INBOX" else name), pos


def read_list_mailbox(buf: bytes, pos: int) -> tuple[str, int]:
    """``list-mailbox``: like a mailbox, but ``%`` and ``*`` are allowed unquoted."""
    if peek(buf, pos) in (b'"', b"{"):
        raw, pos = read_string(buf, pos)
    else:
        match = _LIST_MAILBOX.match(buf, pos)
        if match is None:
            raise fail(buf, pos, "mailbox pattern")
        raw, pos = match.group(), match.end()
    return _decode_mailbox(raw), pos


def read_flag(buf: bytes, pos: int, *, allow_recent: bool = False) -> tuple[str, int]:
    """``flag``: a system flag (canonical spelling) or a keyword atom.

    Unknown backslash flags (``flag-extension``) and, unless ``allow_recent``,
    ``\\Recent`` are refused: a client may not set them (RFC 3501 §2.3.2).
    """
    if peek(buf, pos) == b"\\":
        name, end = read_atom(buf, pos + 1)
        flag = SYSTEM_FLAGS.get("\\" + name.decode("ascii").upper())
        if flag is None:
            raise NotParseable("unknown system flag")
        if flag == RECENT and not allow_recent:
            raise NotParseable(r"\Recent cannot be set by a client")
        return flag, end
    return read_flag_keyword(buf, pos)


def read_flag_keyword(buf: bytes, pos: int) -> tuple[str, int]:
    """``flag-keyword = atom`` (RFC 3501 §9)."""
    atom, pos = read_atom(buf, pos)
    return atom.decode("ascii"), pos


def read_list(
    buf: bytes, pos: int, read_item: Callable[[bytes, int], tuple[T, int]], *, empty: bool = False
) -> tuple[tuple[T, ...], int]:
    """``"(" item *(SP item) ")"``, or ``"()"`` when ``empty`` is allowed."""
    pos = expect(buf, pos, b"(", "'('")
    items: list[T] = []
    if peek(buf, pos) == b")":
        if not empty:
            raise NotParseable("empty list")
        return (), pos + 1
    while True:
        item, pos = read_item(buf, pos)
        items.append(item)
        if peek(buf, pos) == b")":
            return tuple(items), pos + 1
        pos = read_sp(buf, pos)


def read_flag_list(
    buf: bytes, pos: int, *, allow_recent: bool = False
) -> tuple[tuple[str, ...], int]:
    """``flag-list = "(" [flag *(SP flag)] ")"``."""

    def item(b: bytes, p: int) -> tuple[str, int]:
        return read_flag(b, p, allow_recent=allow_recent)

    return read_list(buf, pos, item, empty=True)


def _month(name: bytes) -> int:
    month = _MONTHS.get(name.upper())
    if month is None:
        raise NotParseable("invalid month name")
    return month


def read_date(buf: bytes, pos: int) -> tuple[date, int]:
    """``date``: ``d-Mon-yyyy``, optionally in double quotes (RFC 3501 §9)."""
    quoted = peek(buf, pos) == b'"'
    match = _DATE.match(buf, pos + quoted)
    if match is None:
        raise fail(buf, pos, "date")
    end = match.end()
    if quoted:
        end = expect(buf, end, b'"', "closing quote")
    day, month, year = int(match.group(1)), _month(match.group(2)), int(match.group(3))
    try:
        return date(year, month, day), end
    except ValueError:
        raise NotParseable("invalid date") from None


def read_datetime(buf: bytes, pos: int) -> tuple[datetime, int]:
    """``date-time``: ``"dd-Mon-yyyy hh:mm:ss +zzzz"`` (RFC 3501 §9), timezone-aware."""
    match = _DATE_TIME.match(buf, pos)
    if match is None:
        raise fail(buf, pos, "date-time")
    day, mon, year, hh, mm, ss, sign, zh, zm = match.groups()
    if int(zh) > 23 or int(zm) > 59:
        raise NotParseable("invalid time zone")
    offset = timedelta(hours=int(zh), minutes=int(zm))
    zone = timezone(-offset if sign == b"-" else offset)
    try:
        moment = datetime(int(year), _month(mon), int(day), int(hh), int(mm), int(ss), tzinfo=zone)
    except ValueError:
        raise NotParseable("invalid date-time") from None
    return moment, match.end()
