"""Reading an SMTP DATA body (RFC 5321 §4.1.1.4, §4.5.2) in a few large reads.

aiosmtpd reads the body one line at a time, a coroutine round trip and a
handful of list operations per line: for a 4 KiB message about a tenth of the
server's CPU. ``read_data`` asks the stream for everything up to the next
``.<CRLF>`` instead and checks, on the bytes gathered, whether it stands at
the start of a line (the end of the data) or inside one (a sentence's full
stop). The limits and replies are aiosmtpd's: a line longer than
``line_limit`` octets with its CRLF is refused with 500, data beyond
``size_limit`` octets with 552; either way the rest of the data is read and
dropped, and the session goes on. The first limit crossed decides the reply.

While the body is read the stream may buffer up to ``DATA_BUFFER`` octets.
Its own limit is the command line's (aiosmtpd refuses long commands by it),
and at 1,001 octets a 4 KiB body stopped and restarted the socket's reading
(an ``epoll_ctl`` each: a fifth of the event loop's time at 10 connections)
and overran the limit on every message. The data's limits do not depend on
it: they are counted on the octets read.
"""

from __future__ import annotations

import asyncio
import enum

_DOT_LINE = b".\r\n"
DATA_BUFFER = 64 * 1024  # the stream pauses reading at twice this
LINE_TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"
TOO_MUCH_DATA = "552 Error: Too much mail data"


class Refusal(enum.Enum):
    LINE_TOO_LONG = LINE_TOO_LONG
    TOO_MUCH_DATA = TOO_MUCH_DATA


async def read_data(
    reader: asyncio.StreamReader, *, size_limit: int | None, line_limit: int
) -> bytes | Refusal:
    """The message as sent (dot-unstuffed), or why it was refused; raises
    ``asyncio.IncompleteReadError`` when the connection ends before the final dot."""
    command_limit = reader._limit  # type: ignore[attr-defined]
    reader._limit = max(command_limit, DATA_BUFFER)  # type: ignore[attr-defined]
    try:
        return await _read(reader, size_limit, line_limit)
    finally:
        reader._limit = command_limit  # type: ignore[attr-defined]


async def _read(
    reader: asyncio.StreamReader, size_limit: int | None, line_limit: int
) -> bytes | Refusal:
    body = bytearray()
    refusal: Refusal | None = None
    # Once a limit is crossed only the last bytes are kept, to find the end.
    while True:
        try:
            body += await reader.readuntil(_DOT_LINE)
        except asyncio.LimitOverrunError as exc:
            # More than the stream's limit before the next ".\r\n": take what
            # cannot hold its start (or, if found, everything before it).
            body += await reader.readexactly(exc.consumed)
        else:
            end = len(body) - 3  # where the ".\r\n" just read starts
            if end == 0 or (end >= 2 and body[end - 2 : end] == b"\r\n"):
                break
        if refusal is None and size_limit is not None and len(body) > size_limit + line_limit:
            refusal = _first_limit_crossed(body, size_limit, line_limit)
        if refusal is not None:
            del body[:-4]  # enough to see a "\r\n.\r\n" that starts in them
    if refusal is None:
        refusal = _first_limit_crossed(body[:-3], size_limit, line_limit)
    if refusal is not None:
        return refusal
    content = bytes(body[:-3])
    if content.startswith(b"."):
        content = content[1:]
    return content.replace(b"\r\n.", b"\r\n")


def _first_limit_crossed(data: bytes | bytearray, size_limit: int | None, line_limit: int
                         ) -> Refusal | None:  # fmt: skip
    """Which limit the data crosses first, counted line by line as aiosmtpd does; None if
    neither. ``data`` may end inside a line (the body so far)."""
    pieces = data.split(b"\r\n")
    if (size_limit is None or len(data) <= size_limit) and max(map(len, pieces)) + 2 <= line_limit:
        return None  # the everyday case, decided in C
    *lines, rest = pieces
    seen = 0
    for line in lines:
        if len(line) > line_limit:  # over the stream's limit: refused while being read
            return Refusal.LINE_TOO_LONG
        seen += len(line) + 2
        if size_limit is not None and seen > size_limit:  # counted before the length check
            return Refusal.TOO_MUCH_DATA
        if len(line) + 2 > line_limit:
            return Refusal.LINE_TOO_LONG
    return Refusal.LINE_TOO_LONG if len(rest) > line_limit else None
