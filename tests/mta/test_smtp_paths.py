"""The SMTP path shortcut and PIPELINING: same answers as aiosmtpd's parser, fewer round trips."""

from __future__ import annotations

import asyncio
import random

import pytest
from aiosmtpd.smtp import SMTP

from mta.inbound import InboundSMTP
from tests.mta.test_inbound_limits import _open

_KNOWN = [
    "<a@b.c>", " <a@b.c> SIZE=100", "<a.b@c.d> BODY=8BITMIME SMTPUTF8", "<a..b@c.d>",
    "<.a@c.d>", "<a.@c.d>", '<"q u"@c.d>', "<a@[1.2.3.4]>", "<>", "<@x,@y:a@b.c>",
    "<" + "x" * 64 + "@b.c>", "<" + "x" * 65 + "@b.c>", "<a@b-.c>", "<a@-b.c>",
    "<a@b.c>garbage", "<a@b.c >", "< a@b.c>", "<a@b>", "<user+tag@Example.COM>",
    "<a@b.c>\tX=1", "a@b.c", "<a(comment)@b.c>", "<ü@b.c>", "<a@b..c>", "<a@b.c> (c) X=1",
    "<a@b.c> X=1 ", "<",
]  # fmt: skip


def _cases() -> list[str]:
    rng = random.Random(7)
    cases = list(_KNOWN)
    for _ in range(3000):
        cases.append("".join(rng.choice("ab.@<> -\t()\"[]=:,\\x")
                             for _ in range(rng.randint(1, 14))))  # fmt: skip
        local = "".join(rng.choice("ab.-+_") for _ in range(rng.randint(1, 5)))
        domain = "".join(rng.choice("ab.-1") for _ in range(rng.randint(1, 6)))
        cases.append(f"<{local}@{domain}>" + rng.choice(["", " S=1", "  S=1 T", "\tS", " (x)"]))
    return cases


def test_fast_path_parses_like_aiosmtpd() -> None:
    """Ensure the shortcut returns exactly what aiosmtpd's full parser returns, or falls back."""

    class Handler:
        pass

    loop = asyncio.new_event_loop()
    try:
        ours = InboundSMTP(Handler(), loop=loop)
        theirs = SMTP(Handler(), loop=loop)
        theirs.local_part_limit = ours.local_part_limit
        for case in _cases():
            try:
                expected = theirs._getaddr(case)
            except Exception:  # the email parser crashes count as unparseable
                expected = (None, None)
            assert ours._getaddr(case) == expected, case
    finally:
        loop.close()


@pytest.mark.parametrize("path", [b"<", b"<a@(x>", b"<@"])
async def test_paths_that_crash_the_email_parser_get_553(world, path: bytes) -> None:
    """Ensure a path the email parser chokes on is refused as malformed and the session goes on."""
    t = await _open(world.smtp_port)
    code, text = await t.send(b"MAIL FROM:" + path + b"\r\n")
    assert code == 553 and "5.1.3" in text, text
    assert (await t.send(b"MAIL FROM:<s@remote.example>\r\n"))[0] == 250
    assert (await t.send(b"RCPT TO:<alice@acme.test>\r\n"))[0] == 250


async def test_pipelined_transaction_delivers(world) -> None:
    """Ensure PIPELINING is offered and a pipelined RSET/MAIL/RCPT/RCPT/DATA group is
    answered in order, with the refused recipient refused and the message delivered."""
    t = await _open(world.smtp_port)
    ehlo = await t.send(b"EHLO client.example\r\n")
    assert "250-PIPELINING" in ehlo[1]
    t.writer.write(b"RSET\r\nMAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@acme.test>\r\n"
                   b"RCPT TO:<nobody@acme.test>\r\nDATA\r\n")  # fmt: skip
    await t.writer.drain()
    codes = [(await t.reply())[0] for _ in range(5)]
    assert codes == [250, 250, 250, 550, 354]
    code, text = await t.send(b"Subject: pipelined\r\n\r\nhello\r\n.\r\n")
    assert code == 250, text
    files = world.new_files("alice@acme.test")
    assert len(files) == 1 and b"hello" in files[0].read_bytes()


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        # Ends with a 250: the held replies must still be written, not wait for input.
        (b"RSET\r\nMAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@acme.test>\r\nNOOP\r\n",
         [250, 250, 250, 250]),
        # An error reply between held ones keeps its place.
        (b"RSET\r\nRCPT TO:<alice@acme.test>\r\nNOOP\r\n", [250, 503, 250]),
        # QUIT closes the connection: what was held goes out before 221.
        (b"RSET\r\nNOOP\r\nQUIT\r\n", [250, 250, 221]),
    ],
)  # fmt: skip
async def test_pipelined_replies_are_all_sent_in_order(world, group: bytes, expected) -> None:
    """Ensure replies held back while pipelined commands are buffered (RFC 2920 §3.2) all
    reach the client, in order, whatever the group ends with."""
    t = await _open(world.smtp_port)
    await t.send(b"EHLO client.example\r\n")
    t.writer.write(group)
    await t.writer.drain()
    assert [(await t.reply())[0] for _ in expected] == expected
    if expected[-1] == 221:
        assert await asyncio.wait_for(t.reader.read(), 10) == b""
