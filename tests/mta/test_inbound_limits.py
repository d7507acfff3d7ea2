"""Hostile and malformed input on the inbound server: clear 5xx, session survives."""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import ssl

import pytest

from admin.config import Settings
from admin.runtime import running
from mta.inbound import DEFAULT_MAX_RECIPIENTS
from tests.mta.conftest import TEST_DNS, TEST_LISTEN


class Transcript:
    """A tiny SMTP conversation driver over a raw socket: send a line, expect a reply."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def reply(self) -> tuple[int, str]:
        lines = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 10)
            assert line, "connection closed"
            lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
            if line[3:4] != b"-":
                return int(lines[-1][:3]), "\n".join(lines)

    async def send(self, data: bytes) -> tuple[int, str]:
        self.writer.write(data)
        await self.writer.drain()
        return await self.reply()


_open_transcripts: list[Transcript] = []


async def _open(port: int) -> Transcript:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    t = Transcript(reader, writer)
    _open_transcripts.append(t)
    assert (await t.reply())[0] == 220
    assert (await t.send(b"EHLO client.example\r\n"))[0] == 250
    return t


@pytest.fixture(autouse=True)
async def _close_transcripts():
    yield
    while _open_transcripts:
        t = _open_transcripts.pop()
        t.writer.close()
        with contextlib.suppress(Exception):
            await t.writer.wait_closed()


async def test_overlong_command_line_refused_session_survives(world) -> None:
    """Ensure a command line over 1000 octets gets 500 and the next command works."""
    t = await _open(world.smtp_port)
    code, _ = await t.send(b"MAIL FROM:<" + b"a" * 1100 + b"@remote.example>\r\n")
    assert code == 500
    assert (await t.send(b"NOOP\r\n"))[0] == 250
    assert (await t.send(b"MAIL FROM:<s@remote.example>\r\n"))[0] == 250


@pytest.mark.parametrize("address", [b"<not an address>", b"<@>", b"<a@b@c>", b"<alice@>"])
async def test_malformed_recipient_refused(world, address: bytes) -> None:
    """Ensure malformed recipient addresses get a 5xx and the session goes on."""
    t = await _open(world.smtp_port)
    assert (await t.send(b"MAIL FROM:<s@remote.example>\r\n"))[0] == 250
    code, text = await t.send(b"RCPT TO:" + address + b"\r\n")
    assert 500 <= code < 600, text
    assert (await t.send(b"RCPT TO:<alice@acme.test>\r\n"))[0] == 250


async def test_non_ascii_envelope_without_smtputf8_refused(world) -> None:
    """Ensure 8-bit envelope addresses need SMTPUTF8 (RFC 6531) and the session survives."""
    t = await _open(world.smtp_port)
    code, text = await t.send("MAIL FROM:<jösé@remote.example>\r\n".encode())
    assert code == 553 and "5.6.7" in text
    assert (await t.send(b"MAIL FROM:<s@remote.example>\r\n"))[0] == 250
    code, text = await t.send("RCPT TO:<ålice@acme.test>\r\n".encode())
    assert code == 553 and "5.6.7" in text
    assert (await t.send(b"RCPT TO:<alice@acme.test>\r\n"))[0] == 250


async def test_non_ascii_with_smtputf8_is_judged_as_address(world) -> None:
    """Ensure with SMTPUTF8 a non-ASCII recipient is looked up (and unknown here)."""
    t = await _open(world.smtp_port)
    assert (await t.send(b"MAIL FROM:<s@remote.example> SMTPUTF8\r\n"))[0] == 250
    code, _ = await t.send("RCPT TO:<ålice@acme.test>\r\n".encode())
    assert code == 550


async def test_data_before_rcpt_refused(world) -> None:
    """Ensure DATA without a recipient gets 503 and the session goes on."""
    t = await _open(world.smtp_port)
    assert (await t.send(b"DATA\r\n"))[0] == 503
    assert (await t.send(b"MAIL FROM:<s@remote.example>\r\n"))[0] == 250
    assert (await t.send(b"DATA\r\n"))[0] == 503
    assert (await t.send(b"RCPT TO:<alice@acme.test>\r\n"))[0] == 250
    assert (await t.send(b"DATA\r\n"))[0] == 354
    assert (await t.send(b"Subject: ok\r\n\r\nhi\r\n.\r\n"))[0] == 250
    assert len(world.new_files("alice@acme.test")) == 1


async def test_recipient_limit(world) -> None:
    """Ensure recipients past the limit get 452 4.5.3 while earlier ones stay accepted."""
    t = await _open(world.smtp_port)
    assert (await t.send(b"MAIL FROM:<s@remote.example>\r\n"))[0] == 250
    for _ in range(DEFAULT_MAX_RECIPIENTS):
        assert (await t.send(b"RCPT TO:<alice@acme.test>\r\n"))[0] == 250
    code, text = await t.send(b"RCPT TO:<bob@acme.test>\r\n")
    assert code == 452 and "4.5.3" in text
    assert (await t.send(b"DATA\r\n"))[0] == 354
    assert (await t.send(b"Subject: many\r\n\r\nhi\r\n.\r\n"))[0] == 250
    assert len(world.new_files("alice@acme.test")) == 1
    assert world.new_files("bob@acme.test") == []


async def test_message_size_limit(tmp_path, sqlite_db) -> None:
    """Ensure SIZE over the limit is refused at MAIL and oversize DATA gets 552 with no file."""
    from datetime import UTC, datetime

    from admin.config import SMTPLimits
    from tests.mta.conftest import seed

    seed(sqlite_db, datetime.now(UTC))
    settings = Settings(data_dir=tmp_path, listen=TEST_LISTEN, dns=TEST_DNS,
                        smtp=SMTPLimits(max_message_bytes=10_000, verify_senders=False))
    async with running(settings, db=sqlite_db) as stack:
        t = await _open(stack.port("smtp"))
        code, _ = await t.send(b"MAIL FROM:<s@remote.example> SIZE=20000\r\n")
        assert code == 552
        assert (await t.send(b"MAIL FROM:<s@remote.example> SIZE=5000\r\n"))[0] == 250
        assert (await t.send(b"RCPT TO:<alice@acme.test>\r\n"))[0] == 250
        assert (await t.send(b"DATA\r\n"))[0] == 354
        code, _ = await t.send(b"Subject: big\r\n\r\n" + (b"y" * 98 + b"\r\n") * 200 + b".\r\n")
        assert code == 552
        assert (await t.send(b"NOOP\r\n"))[0] == 250
        assert not (tmp_path / "mail" / "acme.test" / "alice" / "new").exists() or not any(
            (tmp_path / "mail" / "acme.test" / "alice" / "new").iterdir()
        )


async def test_starttls_then_delivery(world) -> None:
    """Ensure STARTTLS is offered and mail delivered over it is marked ESMTPS."""

    def send() -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with smtplib.SMTP("127.0.0.1", world.smtp_port) as client:
            client.ehlo("tls.example")
            assert client.has_extn("starttls")
            client.starttls(context=context)
            client.ehlo("tls.example")
            client.sendmail("s@remote.example", ["alice@acme.test"], b"Subject: tls\r\n\r\nhi\r\n")

    await asyncio.to_thread(send)
    [path] = world.new_files("alice@acme.test")
    assert b" with ESMTPS id " in path.read_bytes()


async def test_null_sender_accepted(world) -> None:
    """Ensure bounces (null reverse-path) are accepted for local mailboxes."""
    t = await _open(world.smtp_port)
    assert (await t.send(b"MAIL FROM:<>\r\n"))[0] == 250
    assert (await t.send(b"RCPT TO:<alice@acme.test>\r\n"))[0] == 250
    assert (await t.send(b"DATA\r\n"))[0] == 354
    assert (await t.send(b"Subject: bounce\r\n\r\nhi\r\n.\r\n"))[0] == 250
    [path] = world.new_files("alice@acme.test")
    assert path.read_bytes().startswith(b"Return-Path: <>\n")
