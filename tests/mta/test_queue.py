"""The outbound queue against a sink on 127.0.0.1: retries, DSNs, restarts, MX routing."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path

import pytest
from sqlalchemy import select

from mta.queue import OutboundQueue
from mta.queue import admin as queue_admin
from storage.models import AuditEntry, OutboundMessage
from storage.models_outbound import OutboundRecipient
from tests.mta.conftest import seed
from tests.mta.support import HOSTNAME, Stack, outbound_stack

ALICE = "alice@acme.test"


def _message(to: str) -> bytes:
    return (f"From: Alice <{ALICE}>\r\nTo: {to}\r\nSubject: quarterly\r\n"
            f"Message-ID: <q-{to}@acme.test>\r\n\r\nNumbers.\r\n").encode()  # fmt: skip


def _submit(stack: Stack, rcpts: list[str]) -> dict:
    with stack.smtp() as client:
        return client.sendmail(ALICE, rcpts, _message(", ".join(rcpts)))


def _rows(stack: Stack) -> list[OutboundMessage]:
    with stack.db.session() as s:
        return list(s.scalars(select(OutboundMessage).order_by(OutboundMessage.id)))


def _recipients(stack: Stack, message_id: int) -> list[OutboundRecipient]:
    with stack.db.session() as s:
        return list(s.scalars(select(OutboundRecipient)
                              .where(OutboundRecipient.message_id == message_id)))  # fmt: skip


async def _until(predicate, timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), timeout)


def _dsns(stack: Stack) -> list[bytes]:
    return [p.read_bytes() for p in stack.maildir_new(ALICE)]


@pytest.fixture
async def stack(tmp_path, sqlite_db):
    seed(sqlite_db, datetime.now(UTC) - timedelta(seconds=1))
    async with outbound_stack(tmp_path, sqlite_db) as s:
        yield s


async def test_temporary_failure_retried_then_delivered(stack) -> None:
    """Ensure a 451 at the sink is retried on the backoff schedule and then delivered once."""
    stack.sink.data_replies = ["451 4.3.0 Greylisted, come back later"]
    await asyncio.to_thread(_submit, stack, ["bob@remote.example"])
    [got] = await stack.sink.wait_for(1)
    assert got.rcpt_tos == ["bob@remote.example"]
    await _until(lambda: _rows(stack)[0].state == "delivered")
    [row] = _rows(stack)
    [rcpt] = _recipients(stack, row.id)
    assert (row.attempts, rcpt.state, rcpt.attempts) == (2, "delivered", 2)
    assert rcpt.remote_mta == "127.0.0.1" and rcpt.last_reply.startswith("250")
    assert not Path(row.spool_path).exists(), "the body goes once every recipient is final"
    assert _dsns(stack) == []


async def test_permanent_failure_produces_exactly_one_dsn(stack) -> None:
    """Ensure a 550 fails only that recipient, at once, with one RFC 3464 DSN to the sender."""
    stack.sink.rcpt_replies["gone@remote.example"] = "550 5.1.1 No such user"
    await asyncio.to_thread(_submit, stack, ["gone@remote.example", "ok@remote.example"])
    [got] = await stack.sink.wait_for(1)
    assert got.rcpt_tos == ["ok@remote.example"]
    await _until(lambda: len(_dsns(stack)) == 1)
    await _until(lambda: all(r.state in ("delivered", "bounced") for r in _rows(stack)))
    await asyncio.sleep(0.3)  # a second DSN would have come by now
    [dsn] = _dsns(stack)
    assert dsn.startswith(b"Return-Path: <>\n")
    report = message_from_bytes(dsn)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    _human, status, headers = report.get_payload()
    assert status.get_content_type() == "message/delivery-status"
    text = status.as_string()
    assert "Final-Recipient: rfc822; gone@remote.example" in text and "Status: 5.1.1" in text
    assert "ok@remote.example" not in text
    assert headers.get_content_type() == "text/rfc822-headers"
    original, notice = _rows(stack)
    assert (original.state, notice.state, notice.mail_from) == ("bounced", "delivered", "")
    assert len(stack.sink.messages) == 1


async def test_null_sender_never_bounced(stack) -> None:
    """Ensure a failing message from the null sender produces no DSN (no bounce loops)."""
    stack.sink.rcpt_replies["gone@remote.example"] = "550 5.1.1 No such user"
    with stack.db.session() as s:
        spooled = stack.agent.spool.write("NULLSENDER0001", _message("gone@remote.example"))
        stack.agent.spool.record(s, spooled, "", ["gone@remote.example"], datetime.now(UTC))
    stack.queue.wake()
    await _until(lambda: _rows(stack)[0].state == "bounced")
    await asyncio.sleep(0.3)
    assert len(_rows(stack)) == 1 and _dsns(stack) == []


async def test_expired_message_bounced_with_5_4_7(tmp_path, sqlite_db) -> None:
    """Ensure a recipient still failing temporarily at max_age fails for good, with a DSN."""
    seed(sqlite_db, datetime.now(UTC))
    async with outbound_stack(tmp_path, sqlite_db, queue={"max_age": timedelta(seconds=1)}) as st:
        st.sink.rcpt_replies["slow@remote.example"] = "450 4.2.0 Mailbox busy"
        await asyncio.to_thread(_submit, st, ["slow@remote.example"])
        await _until(lambda: len(_dsns(st)) == 1)
        [rcpt] = _recipients(st, _rows(st)[0].id)
        assert rcpt.state == "failed" and rcpt.attempts >= 2
        assert b"Status: 5.4.7" in _dsns(st)[0]


async def test_restart_mid_delivery_loses_nothing(stack) -> None:
    """Ensure a runner stopped mid-delivery gives the row back and a new runner delivers it."""
    stack.sink.hold = asyncio.Event()
    await asyncio.to_thread(_submit, stack, ["bob@remote.example"])
    await _until(lambda: stack.sink.sessions == 1)
    await stack.queue.stop()  # the delivery in flight is cut off
    [row] = _rows(stack)
    assert row.state == "queued" and Path(row.spool_path).exists()
    stack.sink.data_replies = ["421 4.4.2 Connection dropped"]  # what the cut-off session sees
    stack.sink.hold.set()
    await _until(lambda: stack.sink.sessions == 0)
    stack.sink.hold = None
    fresh = OutboundQueue(stack.db, agent=stack.agent, spool=stack.agent.spool,
                          settings=stack.queue.settings, hostname=HOSTNAME)  # fmt: skip
    fresh.start()
    try:
        [got] = await stack.sink.wait_for(1)
        await _until(lambda: _rows(stack)[0].state == "delivered")
    finally:
        await fresh.stop()
    assert got.rcpt_tos == ["bob@remote.example"]


async def test_crashed_runner_lease_expires(tmp_path, sqlite_db) -> None:
    """Ensure a row left 'sending' by a runner that died is delivered once its lease runs out."""
    seed(sqlite_db, datetime.now(UTC))
    async with outbound_stack(tmp_path, sqlite_db, start_queue=False) as stack:
        await asyncio.to_thread(_submit, stack, ["bob@remote.example"])
        with stack.db.session() as s:  # what a killed process leaves behind
            row = s.scalars(select(OutboundMessage)).one()
            row.state, row.next_attempt_at = "sending", datetime.now(UTC) - timedelta(seconds=1)
        assert await stack.queue.run_once() == 1
        assert [m.rcpt_tos for m in stack.sink.messages] == [["bob@remote.example"]]
        assert _rows(stack)[0].state == "delivered"


async def test_queued_message_survives_until_runner_starts(tmp_path, sqlite_db) -> None:
    """Ensure an accepted message is on disk and recorded before any runner exists."""
    seed(sqlite_db, datetime.now(UTC))
    async with outbound_stack(tmp_path, sqlite_db, start_queue=False) as stack:
        await asyncio.to_thread(_submit, stack, ["bob@remote.example", "carl@remote.example"])
        [row] = _rows(stack)
        assert row.state == "queued" and json.loads(row.recipients) == [
            "bob@remote.example", "carl@remote.example"]
        assert Path(row.spool_path).read_bytes().count(b"DKIM-Signature:") == 2
        stack.queue.start()
        [got] = await stack.sink.wait_for(1)
        assert sorted(got.rcpt_tos) == ["bob@remote.example", "carl@remote.example"]


async def test_mx_lookup_routes_to_the_mail_host(stack) -> None:
    """Ensure a domain without a transport entry is delivered to its MX (via the test DNS)."""
    stack.dns.add("dest.example", "MX", "20 backup.dest.example.", "10 mx.dest.example.")
    stack.dns.add("mx.dest.example", "A", "127.0.0.1")
    stack.dns.add("backup.dest.example", "A", "127.0.0.1")
    await asyncio.to_thread(_submit, stack, ["dora@dest.example"])
    [got] = await stack.sink.wait_for(1)
    assert got.rcpt_tos == ["dora@dest.example"]
    await _until(lambda: _rows(stack)[0].state == "delivered")
    [rcpt] = _recipients(stack, _rows(stack)[0].id)
    assert rcpt.remote_mta == "mx.dest.example"
    assert ("dest.example", "MX") in stack.dns.queries


async def test_implicit_mx_and_nxdomain(stack) -> None:
    """Ensure a domain with only an A record gets mail, and a missing domain fails for good."""
    stack.dns.add("plain.example", "A", "127.0.0.1")
    await asyncio.to_thread(_submit, stack, ["pat@plain.example", "nobody@missing.example"])
    [got] = await stack.sink.wait_for(1)
    assert got.rcpt_tos == ["pat@plain.example"]
    await _until(lambda: len(_dsns(stack)) == 1)
    assert b"Status: 5.1.2" in _dsns(stack)[0]


async def test_per_destination_limit(tmp_path, sqlite_db) -> None:
    """Ensure no more than per_destination sessions reach one destination at a time."""
    seed(sqlite_db, datetime.now(UTC))
    async with outbound_stack(tmp_path, sqlite_db, start_queue=False,
                              queue={"per_destination": 1}) as stack:  # fmt: skip
        for n in range(3):
            await asyncio.to_thread(_submit, stack, [f"user{n}@remote.example"])
        stack.sink.hold = asyncio.Event()
        stack.queue.start()
        await _until(lambda: stack.sink.sessions == 1)
        await asyncio.sleep(0.3)
        stack.sink.hold.set()
        await stack.sink.wait_for(3)
        assert stack.sink.peak_sessions == 1


async def test_queue_commands_are_audited(tmp_path, sqlite_db) -> None:
    """Ensure hold, release, retry and delete do what they say, each with an audit entry."""
    seed(sqlite_db, datetime.now(UTC))
    async with outbound_stack(tmp_path, sqlite_db, start_queue=False) as stack:
        await asyncio.to_thread(_submit, stack, ["bob@remote.example"])
        await asyncio.to_thread(_submit, stack, ["carl@remote.example"])
        first, second = (r.queue_id for r in _rows(stack))
        now = datetime.now(UTC)
        with stack.db.session() as s:
            assert queue_admin.hold(s, first, actor="op:ann", now=now).state == "held"
        assert await stack.queue.run_once() == 1  # only the second one
        with stack.db.session() as s:
            views = queue_admin.list_queue(s)
            assert [(v.queue_id, v.state) for v in views] == [(first, "held")]
            queue_admin.release(s, first, actor="op:ann", now=now, reason="checked")
            queue_admin.retry(s, first, actor="op:ann", now=now)
            shown = queue_admin.show(s, first)
            assert shown.details[0].address == "bob@remote.example"
        assert await stack.queue.run_once() == 1
        assert len(stack.sink.messages) == 2
        await asyncio.to_thread(_submit, stack, ["dan@remote.example"])
        third = _rows(stack)[-1]
        with stack.db.session() as s:
            queue_admin.delete(s, third.queue_id, actor="op:ann", now=now, reason="spam")
        assert not Path(third.spool_path).exists()
        with stack.db.session() as s:
            actions = [e.action for e in s.scalars(select(AuditEntry).where(
                AuditEntry.action.like("queue.%")).order_by(AuditEntry.id))]  # fmt: skip
        assert actions == ["queue.hold", "queue.release", "queue.retry", "queue.delete"]
        assert second != first
