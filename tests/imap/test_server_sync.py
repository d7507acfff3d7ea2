"""Sessions seeing each other's changes, IDLE, and delivery over SMTP reaching an IDLE client."""

from __future__ import annotations

import asyncio
import smtplib
import time
from pathlib import Path

import aioimaplib

from mta.delivery import DeliveryAgent
from mta.inbound import InboundHandler, InboundLimits, listening_port, start_inbound
from storage.db import Database
from storage.spool import Spool
from tests.imap.conftest import ALICE, MESSAGE, PASSWORD, IMAPWorld, running_imap, settings


async def test_two_sessions_see_each_others_changes(world: IMAPWorld, transcript) -> None:
    """Ensure flags, new mail and expunges reach the other session, EXPUNGE only when allowed."""
    for _ in range(3):
        world.deliver(MESSAGE)
    a, b = await transcript(), await transcript()
    for t in (a, b):
        await t.login()
        await t.send(b"s SELECT INBOX")
        await t.expect(b"s OK*")

    await a.send(b"a1 STORE 2 +FLAGS.SILENT (\\Flagged)")
    await a.expect(b"a1 OK*")
    await b.send(b"b1 NOOP")
    lines = await b.expect(b"b1 OK*")
    assert lines[:-1] == [b"* 2 FETCH (UID 2 FLAGS (\\Flagged))\r\n"]

    await a.send(b"a2 APPEND INBOX {%d+}" % len(MESSAGE))
    await a.send(MESSAGE)
    lines = await a.expect(b"a2 OK*")
    # RFC 3501 §6.3.11: APPEND to the selected folder is announced. The three
    # delivered messages are \Recent for session a, which selected first.
    assert lines[:-1] == [b"* 4 EXISTS\r\n", b"* 3 RECENT\r\n"]
    await b.send(b"b2 NOOP")
    lines = await b.expect(b"b2 OK*")
    assert lines[:-1] == [b"* 4 EXISTS\r\n", b"* 0 RECENT\r\n"]

    await a.send(b"a3 STORE 1 +FLAGS.SILENT (\\Deleted)")
    await a.expect(b"a3 OK*")
    await a.send(b"a4 EXPUNGE")
    await a.expect(b"* 1 EXPUNGE")
    await a.expect(b"a4 OK*")
    # RFC 3501 §7.4.1: no EXPUNGE while answering FETCH; the numbers stay valid.
    await b.send(b"b3 FETCH 1:4 (UID)")
    lines = await b.expect(b"b3 OK*")
    assert b"* 1 FETCH (UID 1)\r\n" in lines  # not known to be gone yet: cached data
    assert not any(b"EXPUNGE" in line for line in lines)
    await b.send(b"b3 FETCH 1:2 (UID)")
    lines = await b.expect(b"b3 *")
    assert lines == [b"* 2 FETCH (UID 2)\r\n",
                     b"b3 NO [EXPUNGEISSUED] Some messages no longer exist\r\n"]  # fmt: skip
    await b.send(b"b4 SEARCH ALL")
    assert (await b.expect(b"b4 OK*"))[0] == b"* SEARCH 2 3 4\r\n"
    await b.send(b"b5 NOOP")
    lines = await b.expect(b"b5 OK*")
    assert lines[:-1] == [b"* 1 EXPUNGE\r\n"]
    await b.send(b"b6 FETCH 1 UID")
    await b.expect(b"* 1 FETCH (UID 2)")


async def test_uid_commands_may_carry_expunges(world: IMAPWorld, transcript) -> None:
    """Ensure a UID FETCH brings pending EXPUNGE responses (RFC 3501 §7.4.1 allows it)."""
    for _ in range(2):
        world.deliver(MESSAGE)
    a, b = await transcript(), await transcript()
    for t in (a, b):
        await t.login()
        await t.send(b"s SELECT INBOX")
        await t.expect(b"s OK*")
    await a.send(b"a1 UID STORE 1 +FLAGS.SILENT (\\Deleted)")
    await a.expect(b"a1 OK*")
    await a.send(b"a2 UID EXPUNGE 1")
    await a.expect(b"a2 OK*")
    await b.send(b"b1 UID FETCH 1:* FLAGS")
    lines = await b.expect(b"b1 OK*")
    assert b"* 1 EXPUNGE\r\n" in lines


async def test_idle_gets_changes_from_other_session(world: IMAPWorld) -> None:
    """Ensure an aioimaplib client in IDLE is told about another session's flags and messages."""
    world.deliver(MESSAGE)
    client = aioimaplib.IMAP4(host="127.0.0.1", port=world.port, timeout=10)
    await client.wait_hello_from_server()
    await client.login(ALICE, PASSWORD)
    await client.select("INBOX")
    idle = await client.idle_start(timeout=10)

    def other() -> None:
        c = world.imaplib()
        c.select("INBOX")
        c.store("1", "+FLAGS", r"(\Answered)")
        c.append("INBOX", None, None, MESSAGE)
        c.logout()

    await world.run(other)
    pushed: list[str] = []
    deadline = time.monotonic() + 5
    while not any("2 EXISTS" in line for line in pushed) and time.monotonic() < deadline:
        lines = await client.wait_server_push(timeout=5)
        pushed.extend(line.decode() if isinstance(line, bytes) else line for line in lines)
    client.idle_done()
    await asyncio.wait_for(idle, 5)
    assert "1 FETCH (UID 1 FLAGS (\\Answered \\Recent))" in pushed
    assert "2 EXISTS" in pushed
    await client.logout()


async def test_idle_polls_for_changes_from_other_processes(world: IMAPWorld, transcript) -> None:
    """Ensure a file dropped into the Maildir without any event is seen during IDLE by polling."""
    t = await transcript()
    await t.login()
    await t.send(b"s SELECT INBOX")
    await t.expect(b"s OK*")
    await t.send(b"i IDLE")
    await t.expect(b"+ idling")
    world.deliver(MESSAGE)  # no event: like another server process
    await t.expect(b"* 1 EXISTS", timeout=3)
    await t.expect(b"* 1 RECENT")
    await t.send(b"DONE")
    await t.expect(b"i OK IDLE terminated")
    await t.send(b"j IDLE")
    await t.expect(b"+ idling")
    await t.send(b"NOT DONE")
    await t.expect(b"j BAD*")
    await t.send(b"k NOOP")
    await t.expect(b"k OK*")


async def test_idle_receives_smtp_delivery_within_a_second(
    tmp_path: Path, sqlite_db: Database
) -> None:
    """Ensure a message delivered over SMTP reaches an IDLE client within one second."""
    # A 30 s poll: only the delivery event can wake the session in time.
    async with running_imap(tmp_path, sqlite_db, settings=settings(poll_interval=30.0)) as w:
        agent = DeliveryAgent(sqlite_db, mail_root=w.mail_root, spool=Spool(tmp_path / "queue"),
                              hostname="mx.acme.test",
                              on_delivered=w.events.changed_threadsafe)  # fmt: skip
        limits = InboundLimits()
        handler = InboundHandler(agent, limits)
        smtp = await start_inbound(handler, host="127.0.0.1", port=0, hostname="mx.acme.test",
                                   tls_context=None, limits=limits)  # fmt: skip
        try:
            client = aioimaplib.IMAP4(host="127.0.0.1", port=w.port, timeout=10)
            await client.wait_hello_from_server()
            await client.login(ALICE, PASSWORD)
            await client.select("INBOX")
            idle = await client.idle_start(timeout=10)
            await asyncio.sleep(0.1)

            def send() -> float:
                with smtplib.SMTP("127.0.0.1", listening_port(smtp), timeout=10) as s:
                    s.sendmail("someone@remote.example", [ALICE], MESSAGE)
                return time.monotonic()

            sent_at = await asyncio.to_thread(send)
            pushed = await client.wait_server_push(timeout=5)
            latency = time.monotonic() - sent_at
            assert any("1 EXISTS" in str(line) for line in pushed), pushed
            assert latency < 1.0
            client.idle_done()
            await asyncio.wait_for(idle, 5)
            response = await client.fetch("1", "(BODY.PEEK[HEADER.FIELDS (Subject)])")
            assert b"Subject: hello there" in b"".join(
                x for x in response.lines if isinstance(x, bytes | bytearray)
            )
            await client.logout()
        finally:
            smtp.close()
            handler.close_connections()
            await smtp.wait_closed()


async def test_selected_folder_deleted_elsewhere_is_closed(world: IMAPWorld, transcript) -> None:
    """Ensure a session whose folder another session deletes gets [CLOSED] and leaves SELECTED."""
    a, b = await transcript(), await transcript()
    await a.login()
    await b.login()
    await a.send(b"a1 CREATE Projects")
    await a.expect(b"a1 OK*")
    await a.send(b"a2 SELECT Projects")
    await a.expect(b"a2 OK*")
    await b.send(b"b1 DELETE Projects")
    await b.expect(b"b1 OK*")
    await a.send(b"a3 NOOP")
    assert await a.expect(b"a3 OK*") == [b"* OK [CLOSED] Previous mailbox closed\r\n",
                                         b"a3 OK NOOP completed\r\n"]  # fmt: skip
    await a.send(b"a4 FETCH 1 FLAGS")
    await a.expect(b"a4 BAD*")


async def test_rename_of_selected_folder_keeps_it_selected(world: IMAPWorld, transcript) -> None:
    """Ensure renaming the selected folder (and its parent) keeps the selection working."""
    t = await transcript()
    await t.login()
    await t.send(b"a1 CREATE Team.Inbox")
    await t.expect(b"a1 OK*")
    await t.send(b"a2 APPEND Team.Inbox {%d+}" % len(MESSAGE))
    await t.send(MESSAGE)
    await t.expect(b"a2 OK*")
    await t.send(b"a3 SELECT Team.Inbox")
    await t.expect(b"a3 OK*")
    await t.send(b"a4 RENAME Team Crew")
    await t.expect(b"a4 OK*")
    await t.send(b"a5 NOOP")
    assert await t.expect(b"a5 OK*") == [b"a5 OK NOOP completed\r\n"]
    await t.send(b"a6 FETCH 1 (BODY.PEEK[HEADER.FIELDS (Subject)])")
    await t.expect(b"Subject: hello there")
    await t.expect(b"a6 OK*")


async def test_concurrent_sessions_append_and_store(world: IMAPWorld) -> None:
    """Ensure several sessions appending and storing at once get distinct UIDs and lose nothing."""

    async def worker(n: int) -> list[int]:
        client = aioimaplib.IMAP4(host="127.0.0.1", port=world.port, timeout=10)
        await client.wait_hello_from_server()
        await client.login(ALICE, PASSWORD)
        await client.select("INBOX")
        uids = []
        for i in range(5):
            response = await client.append(MESSAGE.replace(b"hello", b"w%d m%d" % (n, i)))
            assert response.result == "OK", response
            uids.append(int(response.lines[-1].split(b"]")[0].split()[-1]))
            await client.store("1", "+FLAGS", "(\\Seen)")
        await client.logout()
        return uids

    results = await asyncio.gather(*(worker(n) for n in range(5)))
    every = sorted(uid for uids in results for uid in uids)
    assert every == list(range(1, 26))
    state = world.store.sync(world.mailbox_id(), "INBOX")
    assert len(state.messages) == 25
