"""Group commit and batched chain appends: a failed unit takes only its own entries."""

from __future__ import annotations

from concurrent.futures import wait
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
        return lambda s: chain.append(s, chain.ROUTING, [_entry(name)]) or name

    def failing(s):
        chain.append(s, chain.ROUTING, [_entry("bad")])
        raise LookupError("refused")

    try:
        futures = [committer.submit(ok(f"m{i}")) for i in range(20)]
        bad = committer.submit(failing)
        futures += [committer.submit(ok(f"n{i}"), isolated=False) for i in range(5)]
        wait([*futures, bad], timeout=30)
    finally:
        committer.close()
    expected = [f"m{i}" for i in range(20)] + [f"n{i}" for i in range(5)]
    assert [f.result() for f in futures] == expected
    with pytest.raises(LookupError):
        bad.result()
    assert _recipients(db) == expected
    with db.session() as s:
        assert chain.verify(s, chain.ROUTING).ok
