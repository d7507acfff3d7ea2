"""Pooled quota in the delivery path: exact under concurrency, nothing partial."""

from __future__ import annotations

import asyncio
import smtplib
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select

from admin.services import directory as d
from storage.models import Client, Domain, Mailbox, Organization, RoutingEntry, UnpublishedCopy

BODY = b"Subject: load\r\n\r\n" + (b"x" * 98 + b"\r\n") * 20


def _set_pool(world, quota: int | None) -> None:
    with world.db.session() as s:
        org = d.get_organization(s, "Agency")
        d.set_quota(s, actor="t", now=world.now, row=org, quota_bytes=quota)


def _used(world) -> dict[str, int]:
    with world.db.session() as s:
        return {
            "org": s.scalars(select(Organization.used_bytes)).one(),
            "client": s.scalars(select(Client.used_bytes)).one(),
            "domain": s.scalar(select(Domain.used_bytes).where(Domain.name == "acme.test")),
            "mailboxes": sum(s.scalars(select(Mailbox.used_bytes))),
        }


def _disk_bytes(world) -> int:
    return sum(
        f.stat().st_size for box in ("alice", "bob", "carol")
        for f in world.new_files(f"{box}@acme.test")
    )  # fmt: skip


def _burst(port: int, connections: int, per_connection: int) -> list[int]:
    """Send messages over parallel connections; return each message's final reply code."""

    def one_connection(n: int) -> list[int]:
        codes = []
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo(f"c{n}.example")
            for i in range(per_connection):
                rcpt = ("alice", "bob", "carol")[(n + i) % 3] + "@acme.test"
                try:
                    client.sendmail("s@remote.example", [rcpt], BODY)
                    codes.append(250)
                except smtplib.SMTPRecipientsRefused as exc:
                    codes.append(next(iter(exc.recipients.values()))[0])
                except smtplib.SMTPDataError as exc:
                    codes.append(exc.smtp_code)
                    client.rset()
        return codes

    with ThreadPoolExecutor(connections) as pool:
        return [c for codes in pool.map(one_connection, range(connections)) for c in codes]


async def test_concurrent_deliveries_keep_quota_exact(any_world) -> None:
    """Ensure 200 messages over 20 connections charge exactly what landed on disk."""
    codes = await asyncio.to_thread(_burst, any_world.smtp_port, 20, 10)
    assert codes == [250] * 200
    used = _used(any_world)
    disk = _disk_bytes(any_world)
    assert used == {"org": disk, "client": disk, "domain": disk, "mailboxes": disk}


async def test_full_pool_defers_without_partial_delivery(any_world) -> None:
    """Ensure a pool that fills up under load answers 452 and charges only what landed."""
    _set_pool(any_world, 60_000)  # room for about 28 of these messages
    codes = await asyncio.to_thread(_burst, any_world.smtp_port, 10, 6)
    delivered = codes.count(250)
    assert 0 < delivered < 60 and set(codes) <= {250, 452}
    files = sum(len(any_world.new_files(f"{b}@acme.test")) for b in ("alice", "bob", "carol"))
    assert files == delivered
    disk = _disk_bytes(any_world)
    assert disk <= 60_000  # and every level charged exactly that: refusals gave theirs back
    assert _used(any_world) == {"org": disk, "client": disk, "domain": disk, "mailboxes": disk}


async def test_full_pool_answers_452_at_rcpt(world) -> None:
    """Ensure a full pool refuses at RCPT with 452 4.2.2, writes no file and logs a defer."""
    _set_pool(world, 10)
    with world.db.session() as s:
        org = d.get_organization(s, "Agency")
        org.used_bytes = 10

    def attempt() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", world.smtp_port) as client:
            client.ehlo("x.example")
            client.mail("s@remote.example")
            return client.rcpt("alice@acme.test")

    code, text = await asyncio.to_thread(attempt)
    assert (code, text[:5]) == (452, b"4.2.2")
    assert world.new_files("alice@acme.test") == []
    with world.db.session() as s:
        entry = s.scalars(select(RoutingEntry).order_by(RoutingEntry.id.desc())).first()
    assert entry is not None and (entry.decision, entry.reason) == ("defer", "quota-exceeded")


async def test_multi_recipient_message_is_all_or_nothing(world) -> None:
    """Ensure a message whose copies do not all fit is refused whole: no copy lands."""
    _set_pool(world, 3000)  # one copy fits, two do not

    def attempt() -> int:
        with smtplib.SMTP("127.0.0.1", world.smtp_port) as client:
            client.ehlo("x.example")
            try:
                client.sendmail("s@remote.example", ["alice@acme.test", "bob@acme.test"], BODY)
            except smtplib.SMTPDataError as exc:
                return exc.smtp_code
            return 250

    assert await asyncio.to_thread(attempt) == 452
    assert world.new_files("alice@acme.test") == [] and world.new_files("bob@acme.test") == []
    assert _used(world) == {"org": 0, "client": 0, "domain": 0, "mailboxes": 0}


async def test_copy_that_cannot_be_written_is_withdrawn(any_world) -> None:
    """Ensure a message whose copy cannot be written gets 451, its charge is refunded and the
    routing log says so after its deliver entry (the write and the record run side by side)."""
    world = any_world
    blocked = world.maildir("alice@acme.test")
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("a file where the Maildir should be")  # mkdir of tmp/ fails

    def send() -> int:
        with smtplib.SMTP("127.0.0.1", world.smtp_port, timeout=30) as client:
            try:
                client.sendmail("s@remote.example", ["alice@acme.test"], BODY)
            except smtplib.SMTPDataError as exc:
                return exc.smtp_code
            return 250

    assert await asyncio.to_thread(send) == 451
    assert _used(world) == {"org": 0, "client": 0, "domain": 0, "mailboxes": 0}
    with world.db.session() as s:
        rows = s.scalars(select(RoutingEntry).where(RoutingEntry.recipient == "alice@acme.test")
                         .order_by(RoutingEntry.id)).all()  # fmt: skip
    decisions = [(r.decision, r.reason) for r in rows]
    assert decisions[-1] == ("defer", "storage-failed")
    assert rows[-1].reply.startswith("451")
    # Both were logged under the same queue id: what was recorded, then taken back.
    assert decisions[-2][0] == "deliver" and rows[-2].queue_id == rows[-1].queue_id
    with world.db.session() as s:  # nothing is left for recovery to publish at the next start
        assert s.scalars(select(UnpublishedCopy)).all() == []
    blocked.unlink()
    assert await asyncio.to_thread(send) == 250
