"""Group commit and batched chain appends: a failed unit takes only its own entries."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from storage import chain
from storage.committer import GroupCommitter
from storage.models import RoutingEntry


def _entry(recipient: str) -> RoutingEntry:
    return RoutingEntry(at=datetime.now(UTC), session="s", recipient=recipient,
                        decision="accept", reason="test", rule_ids="", reply="250",
                        trace="[]")  # fmt: skip


def _row(recipient: str) -> dict:
    return {"at": datetime.now(UTC), "session": "s", "client_ip": None, "helo": None,
            "mail_from": None, "recipient": recipient, "decision": "accept", "reason": "test",
            "rule_ids": "", "reply": "250", "message_id": None, "queue_id": None,
            "trace": "[]"}  # fmt: skip


def _recipients(db) -> list[str]:
    with db.session() as s:
        rows = s.scalars(select(RoutingEntry).order_by(RoutingEntry.id))
        return [r.recipient for r in rows]


def test_savepoint_rollback_keeps_other_entries(db) -> None:
    """Ensure rewinding a failed SAVEPOINT drops its entries and keeps the others linked."""
    with db.session() as s:
        chain.append(s, chain.ROUTING, [_entry("a")])
        position = chain.mark(s)
        with pytest.raises(ValueError), s.begin_nested():
            chain.append(s, chain.ROUTING, [_entry("b")])
            raise ValueError
        chain.rewind(s, position)
        chain.append(s, chain.ROUTING, [_entry("c")])
    assert _recipients(db) == ["a", "c"]
    with db.session() as s:
        assert chain.verify(s, chain.ROUTING).ok


def test_rolled_back_transaction_writes_nothing(db) -> None:
    """Ensure entries of a transaction that rolls back never reach the log."""
    with pytest.raises(RuntimeError), db.session() as s:
        chain.append(s, chain.ROUTING, [_entry("lost")])
        raise RuntimeError
    with db.session() as s:
        chain.append(s, chain.ROUTING, [_entry("kept")])
    assert _recipients(db) == ["kept"]


def test_group_commit_isolates_failing_units(db) -> None:
    """Ensure a unit that raises fails alone while the batch commits the rest, in order."""
    committer = GroupCommitter(db)

    def ok(name: str):
        return lambda tx: chain.append_rows(tx, chain.ROUTING, [_row(name)]) or name

    def failing(tx):
        chain.append_rows(tx, chain.ROUTING, [_row("bad")])
        raise LookupError("refused")

    try:
        futures = [committer.submit(ok(f"m{i}")) for i in range(20)]
        bad = committer.submit(failing)
        futures += [committer.submit(ok(f"n{i}"), isolated=False) for i in range(5)]
        for future in [*futures, bad]:
            future.exception(timeout=30)
    finally:
        committer.close()
    expected = [f"m{i}" for i in range(20)] + [f"n{i}" for i in range(5)]
    assert [f.result() for f in futures] == expected
    with pytest.raises(LookupError):
        bad.result()
    assert _recipients(db) == expected
    with db.session() as s:
        assert chain.verify(s, chain.ROUTING).ok


def test_failing_unit_rolls_back_its_own_statements(db) -> None:
    """Ensure a unit's writes before its failure are undone with it (SAVEPOINT on the driver)."""
    from sqlalchemy import update

    from storage.ledger import Statement
    from storage.models import ChainHead

    touch = Statement(update(ChainHead.__table__).where(ChainHead.__table__.c.name == "audit")
                      .values(last_hash="f" * 64))  # fmt: skip
    committer = GroupCommitter(db)

    def half_done(tx):
        tx.execute(touch)
        raise LookupError("refused after a write")

    try:
        bad = committer.submit(half_done)
        good = committer.submit(lambda tx: chain.append_rows(tx, chain.ROUTING, [_row("ok")]))
        for future in (bad, good):
            future.exception(timeout=30)
    finally:
        committer.close()
    with pytest.raises(LookupError):
        bad.result()
    assert good.result() is None
    with db.session() as s:
        assert s.get(ChainHead, "audit").last_hash != "f" * 64
        assert chain.verify(s, chain.AUDIT).ok
    assert _recipients(db) == ["ok"]


async def test_coroutines_await_their_own_commit(db) -> None:
    """Ensure ``run`` resolves each awaiting coroutine after the batch commits, in one wake-up."""
    import asyncio

    committer = GroupCommitter(db)
    try:
        names = [f"c{i}" for i in range(30)]
        results = await asyncio.gather(*(
            committer.run(lambda tx, n=n: chain.append_rows(tx, chain.ROUTING, [_row(n)]) or n)
            for n in names
        ))  # fmt: skip
        assert results == names
        assert sorted(_recipients(db)) == sorted(names)
        with pytest.raises(LookupError):
            await committer.run(lambda tx: (_ for _ in ()).throw(LookupError("no")))
    finally:
        committer.close()


def test_failed_commit_fails_every_unit(db) -> None:
    """Ensure a batch whose transaction cannot commit fails all its units as unavailable."""

    from storage.db import StorageUnavailable

    committer = GroupCommitter(db)
    release, holding = threading.Event(), threading.Event()

    def hold(tx):
        holding.set()
        return release.wait(10)

    def breaks_the_transaction(tx):
        raise RuntimeError("not the unit's own failure")

    try:
        # Hold the writer so that the next units queue up into one batch.
        gate = committer.submit(hold, isolated=False)
        assert holding.wait(10)
        futures = [committer.submit(lambda tx: chain.append_rows(tx, chain.ROUTING, [_row("x")]),
                                    isolated=False)]  # fmt: skip
        futures.append(committer.submit(breaks_the_transaction, isolated=False))
        release.set()
        for future in [gate, *futures]:
            future.exception(timeout=30)
    finally:
        committer.close()
    assert gate.result() is True
    for future in futures:
        assert isinstance(future.exception(), StorageUnavailable)
    assert _recipients(db) == []


def test_pending_waits_for_the_commit_and_times_out(db) -> None:
    """Ensure a blocking caller's outcome is ready only after its batch commits, every waiter
    sees it, and a wait with a timeout gives up while the writer is held."""
    committer = GroupCommitter(db)
    release, holding = threading.Event(), threading.Event()

    def hold(tx):
        holding.set()
        release.wait(10)
        return "done"

    try:
        held = committer.submit(hold)
        assert holding.wait(10)
        with pytest.raises(TimeoutError):
            held.result(timeout=0.05)
        release.set()
        assert held.result(timeout=30) == "done"
        assert held.exception() is None and held.result() == "done"  # again, at once
    finally:
        committer.close()
