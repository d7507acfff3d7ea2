"""DATA read in large pieces (mta.smtp_data): byte for byte what aiosmtpd's line reader gives;
and the idle timeout of a session."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
from aiosmtpd.smtp import SMTP

from mta.inbound import InboundSMTP
from mta.smtp_data import DATA_BUFFER, Refusal, read_data

SIZE_LIMIT = 3000


class Capture:
    """A handler that accepts every recipient and keeps each message's bytes."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: SMTP, session: object, envelope) -> str:
        self.messages.append(envelope.original_content)
        return "250 OK"


async def _serve(cls: type[SMTP], capture: Capture) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: cls(capture, data_size_limit=SIZE_LIMIT, decode_data=False, loop=loop),
        host="127.0.0.1", port=0,
    )  # fmt: skip


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def reply(self) -> bytes:
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 10)
            assert line, "connection closed"
            if line[3:4] != b"-":
                return line

    async def send(self, data: bytes, replies: int = 1) -> list[bytes]:
        self.writer.write(data)
        await self.writer.drain()
        return [await self.reply() for _ in range(replies)]


@pytest.fixture
async def clients() -> AsyncIterator[tuple[tuple[Client, Capture], tuple[Client, Capture]]]:
    """One session with plain aiosmtpd and one with ``InboundSMTP``, each after EHLO."""
    pairs, servers = [], []
    for cls in (SMTP, InboundSMTP):
        capture = Capture()
        server = await _serve(cls, capture)
        servers.append(server)
        client = Client(*await asyncio.open_connection(*server.sockets[0].getsockname()[:2]))
        await client.reply()
        await client.send(b"EHLO client.example\r\n")
        pairs.append((client, capture))
    yield pairs[0], pairs[1]
    for client, _capture in pairs:
        client.writer.close()
    for server in servers:
        server.close()
        await server.wait_closed()


def _line(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.05:
        return b"x" * rng.randint(995, 1003)  # around the 1001-octet line limit
    pieces = [b"", b".", b"..", b". ", b"text.", b"a\rb", b"a\nb", b"\n.", b"\r", b"end.\r",
              b"\xc3\xa9t\xc3\xa9", b" \t ", b"From: x", b"-"]  # fmt: skip
    # Pieces side by side must not make a CRLF: that would end the line (or the data).
    line = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 4))).replace(b"\r\n", b"\r")
    return b"x" + line if line in (b".", b"") and rng.random() < 0.5 else line


def _bodies() -> list[bytes]:
    rng = random.Random(11)
    bodies = [b"", b"..", b".x", b"a", b"x" * 999, b"x" * 1000, b"x" * 2500]
    for _ in range(250):
        lines = [_line(rng) for _ in range(rng.randint(1, 60))]
        # A line that is just "." would end the data early; that is its own case.
        bodies.append(b"\r\n".join(line for line in lines if line != b"."))
    return bodies


async def test_data_reader_matches_aiosmtpd(clients) -> None:
    """Ensure random bodies (dots, bare CR and LF, lines around the limit, data beyond the
    size limit) get the same reply and, when accepted, the same bytes as from aiosmtpd."""
    (theirs, their_capture), (ours, our_capture) = clients
    codes = set()
    for body in _bodies():
        stream = (body + b"\r\n" if body else b"") + b".\r\n"
        results = []
        for client, capture in ((theirs, their_capture), (ours, our_capture)):
            before = len(capture.messages)
            head = await client.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n"
                                     b"DATA\r\n", replies=3)  # fmt: skip
            assert [r[:3] for r in head] == [b"250", b"250", b"354"]
            (reply,) = await client.send(stream)
            results.append((reply, capture.messages[before:]))
        assert results[0] == results[1], body[:200]
        codes.add(results[0][0][:3])
    assert codes == {b"250", b"500", b"552"}, "the bodies must reach both limits"


async def test_data_limits_refuse_and_session_goes_on(clients) -> None:
    """Ensure a long line gets 500 and too much data 552, the data is read to its end
    either way, and the next message on the session is accepted."""
    _theirs, (ours, capture) = clients
    cases = [(b"x" * 1000 + b"\r\n", b"500"), ((b"y" * 70 + b"\r\n") * 50, b"552"),
             (b"short\r\n", b"250")]  # fmt: skip
    for data, code in cases:
        await ours.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n", 3)
        (reply,) = await ours.send(data + b".\r\n")
        assert reply[:3] == code, reply
    assert capture.messages == [b"short\r\n"]


async def test_data_beyond_the_read_buffer_and_command_limit_after_it(clients) -> None:
    """Ensure data larger than the stream's buffer during DATA (``DATA_BUFFER``) gets the
    same reply as from aiosmtpd, with the next final dot found, and that the command line
    limit holds again after DATA: a 2,000-octet command is refused, the session goes on."""
    (theirs, _), (ours, capture) = clients
    big = (b"z" * 998 + b"\r\n") * (3 * DATA_BUFFER // 1000)
    replies = []
    for client in (theirs, ours):
        await client.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n", 3)
        (reply,) = await client.send(big + b".\r\n")
        replies.append(reply)
        (long_command,) = await client.send(b"NOOP " + b"n" * 2000 + b"\r\n")
        assert long_command.startswith(b"500 Command line too long"), long_command
        (noop,) = await client.send(b"NOOP\r\n")
        assert noop[:3] == b"250"
    assert replies[0] == replies[1] and replies[1][:3] == b"552"
    await ours.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n", 3)
    (reply,) = await ours.send(b"after\r\n.\r\n")
    assert reply[:3] == b"250" and capture.messages == [b"after\r\n"]


async def test_read_data_leaves_the_stream_limit_as_it_found_it() -> None:
    """Ensure the larger buffer is for DATA only: afterwards the stream holds the command
    line limit again (it bounds what a client can make the server buffer)."""
    reader = asyncio.StreamReader(limit=1001)
    reader.feed_data(b"x" * 5000 + b"\r\n.\r\nNOOP\r\n")
    assert await read_data(reader, size_limit=None, line_limit=1001) is Refusal.LINE_TOO_LONG
    assert reader._limit == 1001
    assert await reader.readuntil(b"\n") == b"NOOP\r\n"


async def test_data_split_across_many_writes(clients) -> None:
    """Ensure the final dot is found when the body arrives in pieces cut anywhere,
    including inside "\\r\\n.\\r\\n"."""
    _theirs, (ours, capture) = clients
    body = b"line one.\r\n.dot-stuffed\r\n\r\nend.\r\n"
    await ours.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n", 3)
    stream = body + b".\r\n"
    for i in range(len(stream)):
        ours.writer.write(stream[i : i + 1])
        await ours.writer.drain()
        await asyncio.sleep(0)
    assert (await ours.reply())[:3] == b"250"
    assert capture.messages == [b"line one.\r\ndot-stuffed\r\n\r\nend.\r\n"]


async def test_idle_session_times_out_and_commands_keep_it_open() -> None:
    """Ensure each command pushes the idle deadline back and a silent session is closed
    once the timeout has passed."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: InboundSMTP(Capture(), decode_data=False, timeout=0.4, loop=loop),
        host="127.0.0.1", port=0,
    )  # fmt: skip
    try:
        client = Client(*await asyncio.open_connection(*server.sockets[0].getsockname()[:2]))
        await client.reply()
        for _ in range(6):  # 0.6 s of commands, each within the timeout of the last
            assert (await client.send(b"NOOP\r\n"))[0][:3] == b"250"
            await asyncio.sleep(0.1)
        started = loop.time()
        assert await asyncio.wait_for(client.reader.read(), 5) == b""  # closed by the server
        assert 0.25 < loop.time() - started < 2
        client.writer.close()
    finally:
        server.close()
        await server.wait_closed()
