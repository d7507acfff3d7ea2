"""Hostile and broken input, limits, quota, and storage failures, byte by byte."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from storage.db import Database, StorageUnavailable
from storage.mailindex import MailStore
from tests.imap.conftest import MESSAGE, IMAPWorld, Transcript, running_imap, settings


async def test_unknown_and_malformed_commands_get_bad(world: IMAPWorld, transcript) -> None:
    """Ensure unknown commands, junk and wrong-state commands get BAD; the session goes on."""
    t = await transcript()
    await t.expect(b"* OK*")
    for line, reply in (
        (b"a1 FROBNICATE", b"a1 BAD*"),
        (b"a2 SELECT INBOX", b"a2 BAD*not allowed before login*"),
        (b"a3 LOGIN onlyuser", b"a3 BAD*"),
        (b"", b"* BAD*"),
        (b"\x00\xff garbage", b"* BAD*"),
        (b"a4 NOOP extra", b"a4 BAD*"),
        (b"a5 CAPABILITY", b"a5 OK*"),
    ):
        await t.send(line)
        await t.expect(reply)
    await t.login()
    await t.send(b"b1 FETCH 1 FLAGS")
    await t.expect(b"b1 BAD*not allowed without a selected folder*")
    await t.send(b"b2 UID FROB 1")
    await t.expect(b"b2 BAD*")
    await t.send(b"b3 LOGOUT")
    await t.expect(b"* BYE*")
    await t.expect(b"b3 OK*")
    assert await t.closed()


async def test_overlong_line_refused_connection_survives(world: IMAPWorld, transcript) -> None:
    """Ensure an overlong line is discarded to its end and answered BAD; the session goes on."""
    t = await transcript()
    await t.login()
    limit = world.ctx.settings.max_line_length
    await t.send(b"x1 SEARCH SUBJECT " + b"a" * (limit * 3))
    await t.expect(b"x1 BAD [LIMIT]*")
    await t.send(b"x2 NOOP")
    await t.expect(b"x2 OK*")
    # Without a readable tag the refusal is untagged.
    await t.send(b"(" * (limit + 10))
    await t.expect(b"* BAD [LIMIT]*")
    # An overlong line announcing a LITERAL+ has its literal skipped too.
    await t.send(b"x3 APPEND INBOX " + b"b" * limit + b" {5+}")
    await t.send(b"x4 NO")  # these five octets are the literal, not a command
    await t.expect(b"x3 BAD [LIMIT]*")
    await t.send(b"x5 NOOP")
    lines = await t.expect(b"x5 OK*")
    assert lines == [b"x5 OK NOOP completed\r\n"]


async def test_oversized_literal_refused_before_reading(tmp_path: Path, sqlite_db: Database):
    """Ensure a too-large literal gets NO [TOOBIG] instead of '+', and LITERAL+ is drained."""
    async with running_imap(tmp_path, sqlite_db, settings=settings(max_append_size=1000)) as w:
        t = await Transcript.open(w.port)
        await t.login()
        await t.send(b"a1 APPEND INBOX {5000}")
        lines = await t.expect(b"a1 *")
        assert lines == [b"a1 NO [TOOBIG] literal too large\r\n"]  # and no "+"
        await t.send(b"a2 APPEND INBOX {999999999999}")
        await t.expect(b"a2 NO [TOOBIG]*")
        # A non-synchronising literal is already on its way: read into the void.
        await t.send(b"a3 APPEND INBOX {1001+}")
        await t.send(b"x" * 1001)
        await t.expect(b"a3 BAD [TOOBIG]*")
        await t.send(b"a4 APPEND INBOX {%d}" % len(MESSAGE))
        await t.expect(b"+ *")
        await t.send(MESSAGE)
        await t.expect(b"a4 OK [APPENDUID*")
        # Far beyond what is worth draining: the connection is closed.
        await t.send(b"a5 APPEND INBOX {999999999+}")
        await t.expect(b"a5 BAD [TOOBIG]*")
        await t.expect(b"* BYE*")
        assert await t.closed()
        await t.close()
    assert len(w.store.sync(w.mailbox_id(), "INBOX").messages) == 1


async def test_literals_before_login_are_small(world: IMAPWorld, transcript) -> None:
    """Ensure a big literal before authentication is refused, and a big LITERAL+ closes."""
    t = await transcript()
    await t.expect(b"* OK*")
    await t.send(b"a1 LOGIN {100000}")
    await t.expect(b"a1 NO [TOOBIG]*")
    await t.send(b'a2 LOGIN {15}\r\nalice@acme.test "correct horse battery"', end=b"\r\n")
    await t.expect(b"+ *")
    await t.expect(b"a2 OK*")
    t2 = await transcript()
    await t2.expect(b"* OK*")
    await t2.send(b"b1 LOGIN {100000+}")
    await t2.expect(b"b1 BAD [TOOBIG]*")
    assert await t2.closed()


async def test_refused_command_skips_its_literal_plus(world: IMAPWorld, transcript) -> None:
    """Ensure a malformed command's LITERAL+ octets are not run as commands."""
    t = await transcript()
    await t.login()
    await t.send(b"a1 APPEND INBOX (\\Bogus) {12+}")
    await t.send(b"a2 LOGOUT\r\n")  # exactly the 12 literal octets
    await t.expect(b"a1 BAD*")
    await t.send(b"a3 NOOP")
    assert await t.expect(b"a3 *") == [b"a3 OK NOOP completed\r\n"]


async def test_getquotaroot_and_append_over_quota(tmp_path: Path, sqlite_db: Database) -> None:
    """Ensure GETQUOTAROOT reports the limiting pool in KiB; APPEND over it is NO [OVERQUOTA]."""
    async with running_imap(tmp_path, sqlite_db, pool_bytes=10 * 1024) as w:
        t = await Transcript.open(w.port)
        await t.login()
        await t.send(b"q1 GETQUOTAROOT INBOX")
        lines = await t.expect(b"q1 OK*")
        assert lines[:2] == [b'* QUOTAROOT "INBOX" ""\r\n', b'* QUOTA "" (STORAGE 0 10)\r\n']
        await t.send(b"a1 APPEND INBOX {%d}" % len(MESSAGE))
        await t.expect(b"+ *")
        await t.send(MESSAGE)
        await t.expect(b"a1 OK*")
        await t.send(b'q2 GETQUOTA ""')
        await t.expect(b'* QUOTA "" (STORAGE 1 10)')
        await t.expect(b"q2 OK*")
        big = b"Subject: big\r\n\r\n" + b"x" * 12_000 + b"\r\n"
        await t.send(b"a2 APPEND INBOX {%d+}" % len(big))
        await t.send(big)
        await t.expect(b"a2 NO [OVERQUOTA]*")
        await t.send(b'q3 SETQUOTA "" (STORAGE 99999)')
        await t.expect(b"q3 NO [NOPERM]*")
        await t.send(b"q4 GETQUOTA other")
        await t.expect(b"q4 NO [NONEXISTENT]*")
        await t.send(b"q5 GETQUOTAROOT Nowhere")
        await t.expect(b"q5 NO [NONEXISTENT]*")
        await t.close()
        assert len(w.store.sync(w.mailbox_id(), "INBOX").messages) == 1


async def test_no_quota_root_when_uncapped(world: IMAPWorld, transcript) -> None:
    """Ensure an uncapped mailbox has no quota root (RFC 9208 §4.3)."""
    t = await transcript()
    await t.login()
    await t.send(b"q GETQUOTAROOT INBOX")
    assert await t.expect(b"q OK*") == [b'* QUOTAROOT "INBOX"\r\n',
                                        b"q OK GETQUOTAROOT completed\r\n"]  # fmt: skip


async def test_storage_unavailable_is_no_unavailable(
    world: IMAPWorld, transcript, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ensure a database outage answers NO [UNAVAILABLE] and the session survives."""
    t = await transcript()
    await t.login()

    def broken(*args: object, **kwargs: object) -> None:
        raise StorageUnavailable("database is locked")

    monkeypatch.setattr(MailStore, "list_folders", broken)
    await t.send(b'l1 LIST "" *')
    lines = await t.expect(b"l1 *")
    assert lines == [b"l1 NO [UNAVAILABLE] Storage temporarily unavailable\r\n"]
    monkeypatch.undo()
    await t.send(b'l2 LIST "" INBOX')
    await t.expect(b"l2 OK*")


async def test_id_and_many_pipelined_commands(world: IMAPWorld, transcript) -> None:
    """Ensure ID answers, and pipelined commands are each answered in order."""
    t = await transcript()
    await t.login()
    await t.send(b'i1 ID ("name" "test-client")')
    await t.expect(b'* ID ("name" "Mailward"*')
    await t.expect(b"i1 OK*")
    await t.send(b"\r\n".join(b"p%d NOOP" % n for n in range(50)))
    for n in range(50):
        await t.expect(b"p%d OK*" % n)
    await asyncio.sleep(0)
