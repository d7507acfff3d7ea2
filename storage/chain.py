"""Append-only, hash-chained logs: the audit log and the routing log.

Each entry stores the hash of the previous entry and its own hash over a
canonical serialization of its fields, so editing, deleting or reordering any
row breaks the chain from that point on and ``verify`` finds it. Appends to
one chain serialize on its ``chain_head`` row (``SELECT … FOR UPDATE`` on
PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already serializes writers), which
keeps the chain linear across processes and nodes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, event, insert, select, update
from sqlalchemy.orm import Session, SessionTransaction

from storage.ledger import Statement, Tx
from storage.models import AuditEntry, ChainHead, RoutingEntry

GENESIS = "0" * 64
AUDIT = "audit"
ROUTING = "routing"

# The fields covered by the hash, in order; ``id`` is covered too so that a
# deleted row cannot be hidden by renumbering.
AUDIT_FIELDS = ("id", "at", "actor", "action", "target", "before", "after", "reason")
ROUTING_FIELDS = (
    "id", "at", "session", "client_ip", "helo", "mail_from", "recipient", "decision",
    "reason", "rule_ids", "reply", "message_id", "queue_id", "trace",
)  # fmt: skip

_MODELS: dict[str, tuple[type[AuditEntry] | type[RoutingEntry], tuple[str, ...]]] = {
    AUDIT: (AuditEntry, AUDIT_FIELDS),
    ROUTING: (RoutingEntry, ROUTING_FIELDS),
}


# Statements built once: on the delivery path, building SQL expressions costs
# more than executing them.
_HEAD = (
    select(ChainHead.last_id, ChainHead.last_hash)
    .where(ChainHead.name == bindparam("chain"))
    .with_for_update()
)
_MOVE_HEAD = (
    update(ChainHead.__table__)
    .where(ChainHead.__table__.c.name == bindparam("chain"))
    .values(last_id=bindparam("new_last_id"), last_hash=bindparam("new_last_hash"))
)
_INSERT = {name: insert(model.__table__) for name, (model, _f) in _MODELS.items()}
_COLUMNS = {name: [c.key for c in model.__table__.columns] for name, (model, _f) in _MODELS.items()}


def canonical(value: Any) -> str:
    """Stable JSON for hashing and for the before/after columns."""
    return _CANONICAL.encode(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    return str(value)


# One encoder: ``json.dumps`` with options builds a new one per call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=_json_default)


def entry_hash(prev_hash: str, fields: Iterable[Any]) -> str:
    payload = canonical([prev_hash, *fields]).encode()
    return hashlib.sha256(payload).hexdigest()


def _field_values(entry: AuditEntry | RoutingEntry | dict[str, Any], names: tuple[str, ...]
                  ) -> list[Any]:  # fmt: skip
    if isinstance(entry, dict):
        values = [entry[name] for name in names]
    else:
        values = [getattr(entry, name) for name in names]
    # Hash the UTC form: the database stores UTC and hands back UTC, so an
    # aware time in another zone must hash the same at append and at verify.
    return [
        v.astimezone(UTC).isoformat(timespec="microseconds") if isinstance(v, datetime) else v
        for v in values
    ]


_TAILS = "mailward.chain_tails"
_HOOKED = "mailward.chain_hooked"


@dataclass(slots=True)
class _Tail:
    """A chain's end as the current transaction sees it, and the rows it will add."""

    last_id: int
    last_hash: str
    pending: list[dict[str, Any]]


def append(session: Session, chain: str, entries: list[AuditEntry] | list[RoutingEntry]) -> None:
    """Link entries at the end of a chain; they are written when the transaction commits.

    The head row is locked at the first append of a transaction and all of the
    transaction's entries go in with one multi-row INSERT and one head update
    just before COMMIT, so a batch of a hundred logged SMTP commands costs
    three statements, not three hundred.
    """
    if not entries:
        return
    names = _MODELS[chain][1]
    tail = _tail(session, chain)
    columns = _COLUMNS[chain]
    for entry in entries:
        row = {c: getattr(entry, c) for c in columns}
        _link(tail, names, row)
        entry.id, entry.prev_hash, entry.hash = row["id"], row["prev_hash"], row["hash"]


def _link(tail: _Tail, names: tuple[str, ...], row: dict[str, Any]) -> None:
    # Ids come from the head, not from an autoincrement, so they are gapless
    # and a deleted row is visible as a gap as well as a broken link.
    tail.last_id += 1
    row["id"] = tail.last_id
    row["prev_hash"] = tail.last_hash
    row["hash"] = tail.last_hash = entry_hash(tail.last_hash, _field_values(row, names))
    tail.pending.append(row)


def _tail(session: Session, chain: str) -> _Tail:
    tails: dict[str, _Tail] | None = session.info.get(_TAILS)
    if tails is None:
        tails = session.info[_TAILS] = {}
        if not session.info.get(_HOOKED):
            # Listeners stay for the session's life; they act only when tails exist.
            session.info[_HOOKED] = True
            event.listen(session, "before_commit", _write_pending)
            event.listen(session, "after_transaction_end", _forget_pending)
    tail = tails.get(chain)
    if tail is None:
        row = session.connection().execute(_HEAD, {"chain": chain}).one()  # made by migration
        tail = tails[chain] = _Tail(row.last_id, row.last_hash, [])
    return tail


def _write_pending(session: Session) -> None:
    tails: dict[str, _Tail] = session.info.pop(_TAILS, {})
    conn = session.connection()
    for chain, tail in tails.items():
        if tail.pending:
            conn.execute(_INSERT[chain], tail.pending)
            conn.execute(_MOVE_HEAD, {"chain": chain, "new_last_id": tail.last_id,
                                      "new_last_hash": tail.last_hash})  # fmt: skip


def _forget_pending(session: Session, transaction: SessionTransaction) -> None:
    # Only the outermost transaction's end matters: a SAVEPOINT that rolls
    # back is rewound by its owner (``rewind``), the others' entries stay.
    if transaction.parent is None:
        session.info.pop(_TAILS, None)


Mark = dict[str, tuple[int, str, int]]


def mark(session: Session) -> Mark:
    """Where every chain's tail stands now, to rewind to if a SAVEPOINT rolls back."""
    tails: dict[str, _Tail] = session.info.get(_TAILS, {})
    return {c: (t.last_id, t.last_hash, len(t.pending)) for c, t in tails.items()}


def rewind(session: Session, to: Mark) -> None:
    _rewind(session.info.get(_TAILS, {}), to)


def _rewind(tails: dict[str, _Tail], to: Mark) -> None:
    for chain, tail in tails.items():
        if chain in to:
            tail.last_id, tail.last_hash, kept = to[chain]
            del tail.pending[kept:]
        else:
            tail.last_id -= len(tail.pending)
            tail.last_hash = tail.pending[0]["prev_hash"] if tail.pending else tail.last_hash
            tail.pending.clear()


# -- the same chains on the group committer's driver connection (storage.ledger) --

_HEAD_TX = Statement(_HEAD)
_MOVE_HEAD_TX = Statement(_MOVE_HEAD)
_INSERT_TX = {name: Statement(_INSERT[name], column_keys=_COLUMNS[name]) for name in _MODELS}


def append_rows(tx: Tx, chain: str, rows: list[dict[str, Any]]) -> None:
    """``append`` for plain rows in a ledger transaction; written by ``write_pending_tx``.

    Each row must hold every column of the chain's table except ``id``,
    ``prev_hash`` and ``hash``, which are filled in here.
    """
    if not rows:
        return
    tail: _Tail | None = tx.tails.get(chain)
    if tail is None:
        last_id, last_hash = tx.execute(_HEAD_TX, {"chain": chain}).fetchone()
        tail = tx.tails[chain] = _Tail(last_id, last_hash, [])
    names = _MODELS[chain][1]
    for row in rows:
        _link(tail, names, row)


def write_pending_tx(tx: Tx) -> None:
    """One multi-row INSERT and one head update per chain, just before COMMIT."""
    for chain, tail in tx.tails.items():
        if tail.pending:
            tx.execute_many(_INSERT_TX[chain], tail.pending)
            tx.execute(_MOVE_HEAD_TX, {"chain": chain, "new_last_id": tail.last_id,
                                       "new_last_hash": tail.last_hash})  # fmt: skip
    tx.tails.clear()


def mark_tx(tx: Tx) -> Mark:
    return {c: (t.last_id, t.last_hash, len(t.pending)) for c, t in tx.tails.items()}


def rewind_tx(tx: Tx, to: Mark) -> None:
    _rewind(tx.tails, to)


@dataclass(frozen=True, slots=True)
class ChainReport:
    chain: str
    entries: int
    broken_at: int | None  # id of the first entry that does not verify
    detail: str

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def verify(session: Session, chain: str, batch: int = 5000) -> ChainReport:
    model, names = _MODELS[chain]
    prev_hash, expected_id, count = GENESIS, 1, 0
    for entry in _iterate(session, model, batch):
        count += 1
        if entry.id != expected_id:
            return ChainReport(chain, count, entry.id, f"entry {expected_id} is missing")
        if entry.prev_hash != prev_hash:
            return ChainReport(chain, count, entry.id, "link to the previous entry is broken")
        if entry_hash(prev_hash, _field_values(entry, names)) != entry.hash:
            return ChainReport(chain, count, entry.id, "entry content does not match its hash")
        prev_hash, expected_id = entry.hash, expected_id + 1
    head = session.get(ChainHead, chain)
    if head is not None and (head.last_id != expected_id - 1 or head.last_hash != prev_hash):
        return ChainReport(chain, count, expected_id, "entries after this point were removed")
    return ChainReport(chain, count, None, "ok")


def _iterate(
    session: Session, model: type[AuditEntry] | type[RoutingEntry], batch: int
) -> Iterator[AuditEntry | RoutingEntry]:
    last = 0
    while True:
        rows = session.scalars(
            select(model).where(model.id > last).order_by(model.id).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].id
        session.expunge_all()
