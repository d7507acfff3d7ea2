"""Inbound SMTP over real loopback sockets with smtplib as the client."""

from __future__ import annotations

import asyncio
import smtplib
from datetime import timedelta

from sqlalchemy import select

from admin.services import directory as d
from admin.services import rules
from storage.models import RoutingEntry

MESSAGE = (
    b"From: sender@remote.example\r\nTo: alice@acme.test\r\nSubject: hello\r\n"
    b"Message-ID: <m1@remote.example>\r\n\r\nBody line\r\n"
)


def _send(port: int, rcpts: list[str], data: bytes = MESSAGE, sender: str = "s@remote.example"):
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.remote.example")
        return client.sendmail(sender, rcpts, data)


def _routing(world, recipient: str) -> list[RoutingEntry]:
    with world.db.session() as s:
        return list(
            s.scalars(select(RoutingEntry).where(RoutingEntry.recipient == recipient)
                      .order_by(RoutingEntry.id))
        )  # fmt: skip


async def test_message_lands_once_in_new(world) -> None:
    """Ensure a message to a mailbox lands as exactly one file in its new/ with trace headers."""
    refused = await asyncio.to_thread(_send, world.smtp_port, ["alice@acme.test"])
    assert refused == {}
    files = world.new_files("alice@acme.test")
    assert len(files) == 1
    content = files[0].read_bytes()
    assert content.startswith(b"Return-Path: <s@remote.example>\nDelivered-To: alice@acme.test\n")
    assert b"\nReceived: from client.remote.example ([127.0.0.1])\n" in content
    assert content.endswith(b"Body line\n") and b"\r\n" not in content
    assert f",S={len(content)}" in files[0].name
    assert list((world.maildir("alice@acme.test") / "tmp").iterdir()) == []
    decisions = [e.decision for e in _routing(world, "alice@acme.test")]
    assert decisions == ["accept", "deliver"]
    entry = _routing(world, "alice@acme.test")[-1]
    assert entry.message_id == "<m1@remote.example>" and entry.queue_id
    assert entry.helo == "client.remote.example" and entry.client_ip == "127.0.0.1"


async def test_unknown_recipient_refused(world) -> None:
    """Ensure an unknown recipient gets 550 5.1.1, no file, and a logged reject."""

    def attempt() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", world.smtp_port) as client:
            client.ehlo("x.example")
            client.mail("s@remote.example")
            return client.rcpt("nobody@acme.test")

    code, text = await asyncio.to_thread(attempt)
    assert code == 550 and text.startswith(b"5.1.1")
    assert not world.maildir("nobody@acme.test").exists()
    [entry] = _routing(world, "nobody@acme.test")
    assert (entry.decision, entry.reason) == ("reject", "unknown-recipient")


async def test_relay_refused(world) -> None:
    """Ensure mail for a domain we do not host is refused as relaying."""

    def attempt() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", world.smtp_port) as client:
            client.ehlo("x.example")
            client.mail("s@remote.example")
            return client.rcpt("victim@elsewhere.example")

    code, text = await asyncio.to_thread(attempt)
    assert (code, text[:5]) == (550, b"5.7.1")


async def test_catch_all_off_by_default(world) -> None:
    """Ensure an unknown address is refused when no catch-all is configured."""
    with world.db.session() as s:
        assert s.scalars(select(RoutingEntry)).first() is None
    code, _ = await asyncio.to_thread(_rcpt_only, world.smtp_port, "random@acme.test")
    assert code == 550


def _rcpt_only(port: int, rcpt: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.ehlo("x.example")
        client.mail("s@remote.example")
        return client.rcpt(rcpt)


async def test_documented_catch_all_delivers(world) -> None:
    """Ensure a documented, unexpired catch-all routes unknown addresses to its target."""
    with world.db.session() as s:
        rules.set_catch_all(s, actor="t", now=world.now, domain=d.get_domain(s, "acme.test"),
                            target="carol@acme.test", owner=d.Owner(person_id=world.owner_id),
                            purpose="migration from old host",
                            expires_at=world.now + timedelta(days=10))  # fmt: skip
    await asyncio.to_thread(_send, world.smtp_port, ["whatever@acme.test"])
    assert len(world.new_files("carol@acme.test")) == 1
    entry = _routing(world, "whatever@acme.test")[-1]
    assert entry.reason == "deliver-catchall" and entry.rule_ids.startswith("catchall:")


async def test_expired_forward_not_applied(world) -> None:
    """Ensure an expired forward is skipped, the mail stays local and the log says why."""
    with world.db.session() as s:
        bob = d.get_mailbox(s, "bob@acme.test")
        rule = rules.add_forward(s, actor="t", now=world.now, mailbox=bob,
                                 target="carol@acme.test", owner=d.Owner(person_id=world.owner_id),
                                 purpose="vacation cover for bob",
                                 expires_at=world.now + timedelta(days=1), keep_copy=False)
        rule.expires_at = world.now  # it has run out since
    await asyncio.to_thread(_send, world.smtp_port, ["bob@acme.test"])
    assert len(world.new_files("bob@acme.test")) == 1
    assert world.new_files("carol@acme.test") == []
    entry = _routing(world, "bob@acme.test")[-1]
    assert f'"forward:{rule.id}","skip","rule-expired"' in entry.trace


async def test_undocumented_forward_not_applied(world) -> None:
    """Ensure a forward whose purpose was blanked behind our back is skipped and logged."""
    with world.db.session() as s:
        bob = d.get_mailbox(s, "bob@acme.test")
        rule = rules.add_forward(s, actor="t", now=world.now, mailbox=bob,
                                 target="carol@acme.test", owner=d.Owner(person_id=world.owner_id),
                                 purpose="vacation cover for bob",
                                 expires_at=world.now + timedelta(days=1), keep_copy=False)
        rule.purpose = ""
    await asyncio.to_thread(_send, world.smtp_port, ["bob@acme.test"])
    assert len(world.new_files("bob@acme.test")) == 1
    assert world.new_files("carol@acme.test") == []
    assert "rule-undocumented" in _routing(world, "bob@acme.test")[-1].trace


async def test_documented_internal_forward_applies(world) -> None:
    """Ensure a documented forward without keep-copy moves mail to its target only."""
    with world.db.session() as s:
        bob = d.get_mailbox(s, "bob@acme.test")
        rules.add_forward(s, actor="t", now=world.now, mailbox=bob, target="carol@acme.test",
                          owner=d.Owner(person_id=world.owner_id), purpose="vacation cover",
                          expires_at=world.now + timedelta(days=5), keep_copy=False)
    await asyncio.to_thread(_send, world.smtp_port, ["bob@acme.test"])
    assert world.new_files("bob@acme.test") == []
    assert len(world.new_files("carol@acme.test")) == 1


async def test_external_forward_is_spooled(world) -> None:
    """Ensure an allowed external forward is kept durably in the spool as queued."""
    from storage.models import OutboundMessage

    with world.db.session() as s:
        acme = d.get_domain(s, "acme.test")
        d.set_domain_policy(s, actor="t", now=world.now, domain=acme, external_forwarding=True)
        rules.add_forward(s, actor="t", now=world.now, mailbox=d.get_mailbox(s, "bob@acme.test"),
                          target="bob@home.example", owner=d.Owner(person_id=world.owner_id),
                          purpose="travel forwarding", expires_at=world.now + timedelta(days=5))
    await asyncio.to_thread(_send, world.smtp_port, ["bob@acme.test"])
    assert len(world.new_files("bob@acme.test")) == 1
    with world.db.session() as s:
        [queued] = s.scalars(select(OutboundMessage)).all()
    # The queue runner may already be trying it (no DNS answers in tests, so it
    # stays undelivered): either way it is on record and on disk.
    assert queued.state in ("queued", "sending") and '"bob@home.example"' in queued.recipients
    spooled = (world.settings.spool_root / f"{queued.queue_id}.eml").read_bytes()
    assert spooled.endswith(MESSAGE)


async def test_suspended_mailbox_refused(world) -> None:
    """Ensure a suspended mailbox refuses mail with its own reason."""
    with world.db.session() as s:
        d.set_mailbox_state(s, actor="t", now=world.now, mailbox=d.get_mailbox(s, "bob@acme.test"),
                            state="suspended", reason="offboarding")  # fmt: skip
    code, text = await asyncio.to_thread(_rcpt_only, world.smtp_port, "bob@acme.test")
    assert (code, text[:5]) == (550, b"5.2.1")
    assert _routing(world, "bob@acme.test")[-1].reason == "mailbox-suspended"


async def test_duplicate_recipients_get_one_copy(world) -> None:
    """Ensure two recipients reaching one mailbox produce one file, two log entries."""
    await asyncio.to_thread(_send, world.smtp_port, ["alice@acme.test", "ALICE@acme.test"])
    assert len(world.new_files("alice@acme.test")) == 1
