"""Pooled quota accounting, atomic under concurrent deliveries.

A charge is a set of conditional ``UPDATE … SET used = used + n WHERE used + n
<= limit`` statements, one per level (mailbox, domain, client, organization),
in the caller's transaction. Each statement re-checks the limit against the
row as it is when the row lock is taken (PostgreSQL re-evaluates the WHERE
clause after waiting; SQLite serializes writers), so two deliveries can never
both squeeze into the last bytes. If any level refuses, ``QuotaExceeded`` is
raised and the caller rolls the whole transaction back: nothing is charged
and nothing is delivered.
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Update, bindparam, or_, select, update
from sqlalchemy.orm import Session

from policy.quota import QuotaLevel, QuotaSnapshot
from storage.committer import UnitRefused
from storage.ledger import Statement, Tx
from storage.models import Client, Domain, Mailbox, Organization


class QuotaExceeded(UnitRefused):
    def __init__(self, scope: str, name: str) -> None:
        super().__init__(f"{scope} {name} is over quota")
        self.scope = scope
        self.name = name


class MailboxGone(UnitRefused, LookupError):
    """The mailbox was deleted since the decision to deliver to it."""


_LEVELS = (("mailbox", Mailbox), ("domain", Domain), ("client", Client),
           ("organization", Organization))  # fmt: skip


# A mailbox never changes domain, client or organization, so its chain of
# owners is looked up once per database engine.
_owner_caches: weakref.WeakKeyDictionary[Any, dict[int, tuple[int, int, int]]] = (
    weakref.WeakKeyDictionary()
)


_OWNERS = (
    select(Domain.id, Client.id, Client.organization_id)
    .join(Client, Domain.client_id == Client.id)
    .join(Mailbox, Mailbox.domain_id == Domain.id)
    .where(Mailbox.id == bindparam("mailbox_id"))
)
_OWNERS_TX = Statement(_OWNERS)


def _owners(session: Session, mailbox_ids: list[int]) -> dict[int, tuple[int, int, int]]:
    cache = _owner_caches.setdefault(session.get_bind(), {})
    for m in mailbox_ids:
        if m not in cache:
            did, cid, oid = session.connection().execute(_OWNERS, {"mailbox_id": m}).one()
            cache[m] = (did, cid, oid)
    return {m: cache[m] for m in mailbox_ids}


def _owners_tx(tx: Tx, mailbox_ids: Iterable[int]) -> dict[int, tuple[int, int, int]]:
    cache = _owner_caches.setdefault(tx.conn.engine, {})
    for m in mailbox_ids:
        if m not in cache:
            row = tx.execute(_OWNERS_TX, {"mailbox_id": m}).fetchone()
            if row is None:
                raise MailboxGone(m)
            cache[m] = (row[0], row[1], row[2])
    return {m: cache[m] for m in mailbox_ids}


def _charge_statement(model: type[Mailbox | Domain | Client | Organization]) -> Update:
    # Built once: constructing SQL expressions costs more than running them.
    table = model.__table__
    delta = bindparam("delta")
    fits = or_(delta <= 0, table.c.quota_bytes.is_(None),
               table.c.used_bytes + delta <= table.c.quota_bytes)  # fmt: skip
    return (
        update(table)
        .where(table.c.id == bindparam("row_id"), fits)
        .values(used_bytes=table.c.used_bytes + delta)
    )


_CHARGE = {name: _charge_statement(model) for name, model in _LEVELS}


_CHARGE_TX = {name: Statement(statement) for name, statement in _CHARGE.items()}
# Unconditional: giving back a charge just made, or setting usage to what is
# on disk (``recount``), must not depend on the limits.
_ADJUST = {
    name: update(model.__table__).where(model.__table__.c.id == bindparam("row_id"))
    .values(used_bytes=model.__table__.c.used_bytes + bindparam("delta"))
    for name, model in _LEVELS
}  # fmt: skip
_ADJUST_TX = {name: Statement(statement) for name, statement in _ADJUST.items()}


def _plan(
    sizes: Mapping[int, int], owners: Mapping[int, tuple[int, int, int]]
) -> list[tuple[str, int, int]]:
    """(level, row id, delta) in a fixed order, so concurrent charges lock rows alike."""
    per_level: dict[str, defaultdict[int, int]] = {name: defaultdict(int) for name, _ in _LEVELS}
    for mailbox_id, size in sizes.items():
        domain_id, client_id, org_id = owners[mailbox_id]
        per_level["mailbox"][mailbox_id] += size
        per_level["domain"][domain_id] += size
        per_level["client"][client_id] += size
        per_level["organization"][org_id] += size
    return [(name, row_id, delta) for name, _model in _LEVELS
            for row_id, delta in sorted(per_level[name].items())]  # fmt: skip


def charge(session: Session, sizes: Mapping[int, int]) -> None:
    """Charge ``sizes`` (mailbox id → bytes; negative refunds) at every level, or raise."""
    if not sizes:
        return
    conn = session.connection()
    for name, row_id, delta in _plan(sizes, _owners(session, list(sizes))):
        result = conn.execute(_CHARGE[name], {"row_id": row_id, "delta": delta})
        if result.rowcount != 1:
            raise QuotaExceeded(name, str(row_id))


def charge_tx(tx: Tx, sizes: Mapping[int, int]) -> None:
    """``charge`` in a ledger transaction, all or nothing without a savepoint: a
    level that refuses has the levels charged before it given back first."""
    if not sizes:
        return
    charged: list[tuple[str, int, int]] = []
    for name, row_id, delta in _plan(sizes, _owners_tx(tx, sizes)):
        if tx.execute(_CHARGE_TX[name], {"row_id": row_id, "delta": delta}).rowcount != 1:
            for done_name, done_id, done_delta in reversed(charged):
                tx.execute(_ADJUST_TX[done_name], {"row_id": done_id, "delta": -done_delta})
            raise QuotaExceeded(name, str(row_id))
        charged.append((name, row_id, delta))


_SNAPSHOT = (
    select(
        Mailbox.local_part, Mailbox.used_bytes, Mailbox.quota_bytes,
        Domain.name, Domain.used_bytes, Domain.quota_bytes,
        Client.name, Client.used_bytes, Client.quota_bytes,
        Organization.name, Organization.used_bytes, Organization.quota_bytes,
    )
    .join(Domain, Mailbox.domain_id == Domain.id)
    .join(Client, Domain.client_id == Client.id)
    .join(Organization, Client.organization_id == Organization.id)
    .where(Mailbox.id == bindparam("mailbox_id"))
)  # fmt: skip


_SNAPSHOT_TX = Statement(_SNAPSHOT)


def snapshot(session: Session, mailbox_id: int) -> QuotaSnapshot:
    """Usage and limits at every level, in one query (it runs for every recipient)."""
    row = session.connection().execute(_SNAPSHOT, {"mailbox_id": mailbox_id}).first()
    return _snapshot(mailbox_id, row)


def snapshot_tx(tx: Tx, mailbox_id: int) -> QuotaSnapshot:
    return _snapshot(mailbox_id, tx.execute(_SNAPSHOT_TX, {"mailbox_id": mailbox_id}).fetchone())


def _snapshot(mailbox_id: int, row: Sequence[Any] | None) -> QuotaSnapshot:
    if row is None:
        raise LookupError(mailbox_id)
    scopes = ("mailbox", "domain", "client", "organization")
    return QuotaSnapshot(tuple(
        QuotaLevel(scope, row[i * 3], row[i * 3 + 1], row[i * 3 + 2])
        for i, scope in enumerate(scopes)
    ))  # fmt: skip


def recount(session: Session, mailbox_id: int, actual_bytes: int) -> int:
    """Set a mailbox's usage to what is on disk and move every level by the same delta.

    Used by reindex: the files are the truth, so no limit is checked here.
    Returns the delta applied.
    """
    used = session.connection().execute(
        select(Mailbox.used_bytes).where(Mailbox.id == mailbox_id)
    ).scalar_one()
    delta = actual_bytes - used
    if delta:
        domain_id, client_id, org_id = _owners(session, [mailbox_id])[mailbox_id]
        conn = session.connection()
        for (name, _model), row_id in zip(_LEVELS, (mailbox_id, domain_id, client_id, org_id),
                                          strict=True):  # fmt: skip
            conn.execute(_ADJUST[name], {"row_id": row_id, "delta": delta})
    return delta
