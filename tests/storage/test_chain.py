"""Hash-chained audit and routing logs: appends link up, any tampering is found.

Each test builds its chain on a fresh database (SQLite and PostgreSQL), tampers
with it through plain SQL as an intruder with database access would, and asks
``verify`` where the chain breaks.
"""

from __future__ import annotations

import itertools
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import delete, select, update

from storage import audit, chain
from storage.db import Database
from storage.models import AuditEntry, ChainHead, RoutingEntry

BROKEN_CONTENT = "entry content does not match its hash"
BROKEN_LINK = "link to the previous entry is broken"


def record(db: Database, now: datetime, count: int = 5, start: int = 0) -> None:
    with db.session() as session:
        for i in range(start, start + count):
            audit.record(
                session, actor="test", action="thing.change", target=f"thing:{i}",
                now=now + timedelta(seconds=i, microseconds=i),
                before={"value": i}, after={"value": i + 1}, reason=f"step {i}",
            )  # fmt: skip


def routing_entry(now: datetime, i: int) -> RoutingEntry:
    return RoutingEntry(
        at=now + timedelta(seconds=i), session=f"s{i}", client_ip="192.0.2.1",
        helo="mx.example.org", mail_from="sender@example.org", recipient=f"user{i}@example.com",
        decision="deliver", reason="deliver-mailbox", rule_ids="forward:1",
        reply="250 2.1.5 Recipient OK", message_id=f"<{i}@example.org>", queue_id=f"Q{i}",
        trace='[["mailbox","hit"]]',
    )  # fmt: skip


def append_routing(db: Database, now: datetime, count: int = 5, start: int = 0) -> None:
    with db.session() as session:
        entries = [routing_entry(now, i) for i in range(start, start + count)]
        chain.append(session, chain.ROUTING, entries)


def verify(db: Database, name: str = chain.AUDIT, batch: int = 5000) -> chain.ChainReport:
    with db.session() as session:
        return chain.verify(session, name, batch=batch)


def broken(db: Database, name: str = chain.AUDIT) -> tuple[int | None, str]:
    report = verify(db, name)
    return report.broken_at, report.detail


def tamper(db: Database, stmt: Any) -> None:
    with db.session() as session:
        session.execute(stmt)


def check_every_column_edit(
    db: Database, model: type[AuditEntry] | type[RoutingEntry], row_id: int,
    edits: dict[str, Any],
) -> None:  # fmt: skip
    """Edit one column at a time, check the break is found at that row, then restore it."""
    name = chain.AUDIT if model is AuditEntry else chain.ROUTING
    for column, value in edits.items():
        with db.session() as session:
            original = getattr(session.get(model, row_id), column)
        if callable(value):
            value = value(original)
        tamper(db, update(model).where(model.id == row_id).values({column: value}))
        assert broken(db, name) == (row_id, BROKEN_CONTENT), column
        tamper(db, update(model).where(model.id == row_id).values({column: original}))
        assert verify(db, name).ok, column


# The audit chain.


def test_audit_entries_form_an_intact_gapless_chain(db: Database, now: datetime) -> None:
    """Ensure entries written through audit.record, over several transactions, verify."""
    assert verify(db) == chain.ChainReport(chain.AUDIT, 0, None, "ok")
    with db.session() as session:
        chain.append(session, chain.AUDIT, [])  # an empty batch changes nothing
    record(db, now, 3)
    record(db, now, 4, start=3)
    for batch in (1, 2, 5000):
        report = verify(db, batch=batch)
        assert report.ok, report.detail
        assert report.entries == 7
    with db.session() as session:
        rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        head = session.get(ChainHead, chain.AUDIT)
        routing_head = session.get(ChainHead, chain.ROUTING)
    assert [r.id for r in rows] == list(range(1, 8))
    assert rows[0].prev_hash == chain.GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
    assert head is not None and (head.last_id, head.last_hash) == (7, rows[-1].hash)
    assert routing_head is not None and routing_head.last_id == 0  # the chains are separate


def test_edited_audit_field_is_detected_at_that_entry(db: Database, now: datetime) -> None:
    """Ensure editing any hashed column of one row, even the time by 1 µs, breaks it there."""
    record(db, now, 5)
    check_every_column_edit(db, AuditEntry, 3, {
        "actor": "mallory", "action": "thing.delete", "target": "thing:99",
        "before": '{"value":100}', "after": None, "reason": "nothing to see",
        "at": lambda at: at + timedelta(microseconds=1),
    })  # fmt: skip


def test_rehashed_edit_is_detected_at_the_next_entry(db: Database, now: datetime) -> None:
    """Ensure an edit whose own hash is recomputed still breaks the next link."""
    record(db, now, 5)
    with db.session() as session:
        row = session.get(AuditEntry, 3)
        assert row is not None
        row.actor = "mallory"
        row.hash = chain.entry_hash(row.prev_hash, chain._field_values(row, chain.AUDIT_FIELDS))
    assert broken(db) == (4, BROKEN_LINK)


def test_prev_hash_mismatch_is_detected(db: Database, now: datetime) -> None:
    """Ensure a wrong link to the previous entry is reported at that entry."""
    record(db, now, 5)
    tamper(db, update(AuditEntry).where(AuditEntry.id == 2).values(prev_hash="f" * 64))
    assert broken(db) == (2, BROKEN_LINK)


def test_deleted_last_entries_are_detected(db: Database, now: datetime) -> None:
    """Ensure removing the newest entry, or every entry, is found through the chain head."""
    record(db, now, 5)
    tamper(db, delete(AuditEntry).where(AuditEntry.id == 5))
    report = verify(db)
    assert not report.ok
    assert (report.broken_at, report.entries) == (5, 4)
    assert "removed" in report.detail
    tamper(db, delete(AuditEntry))
    assert verify(db).broken_at == 1


def test_deleted_middle_entry_is_detected(db: Database, now: datetime) -> None:
    """Ensure removing a middle entry is found as a gap, and renumbering does not hide it."""
    record(db, now, 5)
    tamper(db, delete(AuditEntry).where(AuditEntry.id == 3))
    assert broken(db) == (4, "entry 3 is missing")
    tamper(db, update(AuditEntry).where(AuditEntry.id == 4).values(id=3))
    assert broken(db)[0] == 3


def test_entries_written_with_any_utc_offset_verify(db: Database, now: datetime) -> None:
    """Ensure an aware non-UTC time hashes the same as the UTC value the database returns."""
    record(db, now.astimezone(timezone(timedelta(hours=2))), 3)
    report = verify(db)
    assert report.ok, report.detail


def test_concurrent_appends_serialize_on_the_chain_head(db: Database, now: datetime) -> None:
    """Ensure a second transaction appending while the first is open waits and links after it."""
    errors: list[BaseException] = []

    def second() -> None:
        try:
            append_routing(db, now + timedelta(minutes=1), 2, start=2)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    with db.session() as session:
        chain.append(session, chain.ROUTING, [routing_entry(now, i) for i in range(2)])
        session.flush()
        worker = threading.Thread(target=second)
        worker.start()
        time.sleep(0.2)  # let the second transaction reach the chain head and wait
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert errors == []
    report = verify(db, chain.ROUTING)
    assert report.ok, report.detail
    assert report.entries == 4


# The routing chain.


def test_routing_chain_verifies_and_detects_edits(db: Database, now: datetime) -> None:
    """Ensure routing entries chain across batches and any edited decision is detected."""
    append_routing(db, now, 3)
    append_routing(db, now + timedelta(hours=1), 2, start=3)
    report = verify(db, chain.ROUTING)
    assert report.ok, report.detail
    assert report.entries == 5
    assert verify(db, chain.AUDIT).entries == 0
    check_every_column_edit(db, RoutingEntry, 4, {
        "recipient": "other@example.com", "decision": "reject", "reason": "relay-denied",
        "rule_ids": "", "trace": "[]", "client_ip": None, "mail_from": "ceo@example.com",
        "queue_id": "Q999", "message_id": None, "reply": "550 5.1.1 No such recipient here",
    })  # fmt: skip
    tamper(db, update(RoutingEntry).where(RoutingEntry.id == 3).values(prev_hash=chain.GENESIS))
    assert broken(db, chain.ROUTING) == (3, BROKEN_LINK)


def test_deleted_routing_entries_are_detected(db: Database, now: datetime) -> None:
    """Ensure deleting the last or a middle routing entry is detected."""
    append_routing(db, now, 5)
    tamper(db, delete(RoutingEntry).where(RoutingEntry.id == 5))
    assert broken(db, chain.ROUTING)[0] == 5
    tamper(db, delete(RoutingEntry).where(RoutingEntry.id == 2))
    assert broken(db, chain.ROUTING) == (3, "entry 2 is missing")
