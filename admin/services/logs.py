"""Reading the audit and routing logs: filtered queries, views and chain checks.

Filters match exactly, or as a glob when the value holds ``*``. An actor
given as a bare name means that operator (``admin`` is ``operator:admin``).
Queries return the newest ``limit`` entries in chronological order, the way a
log is read. Views turn rows into JSON-able dicts with ``before``, ``after``
and ``trace`` parsed back from their canonical JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from storage import chain
from storage.models import AuditEntry, RoutingEntry

DEFAULT_LIMIT = 50


def _match(column: InstrumentedAttribute[Any], pattern: str) -> ColumnElement[bool]:
    if "*" not in pattern:
        return column == pattern
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(escaped.replace("*", "%"), escape="\\")


def audit_entries(
    session: Session,
    *,
    actor: str | None = None,
    target: str | None = None,
    targets: Iterable[str] = (),
    action: str | None = None,
    since: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
) -> list[AuditEntry]:
    stmt = select(AuditEntry)
    if actor:
        names = [actor] if ":" in actor or "*" in actor else [actor, f"operator:{actor}"]
        stmt = stmt.where(or_(*(_match(AuditEntry.actor, n) for n in names)))
    if target:
        stmt = stmt.where(_match(AuditEntry.target, target))
    targets = list(targets)
    if targets:
        stmt = stmt.where(AuditEntry.target.in_(targets))
    if action:
        stmt = stmt.where(_match(AuditEntry.action, action))
    if since is not None:
        stmt = stmt.where(AuditEntry.at >= since)
    rows = session.scalars(stmt.order_by(AuditEntry.id.desc()).limit(limit)).all()
    return list(reversed(rows))


def routing_entries(
    session: Session,
    *,
    recipient: str | None = None,
    decision: str | None = None,
    since: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
) -> list[RoutingEntry]:
    stmt = select(RoutingEntry)
    if recipient:
        stmt = stmt.where(_match(RoutingEntry.recipient, recipient.strip().lower()))
    if decision:
        stmt = stmt.where(RoutingEntry.decision == decision.strip().lower())
    if since is not None:
        stmt = stmt.where(RoutingEntry.at >= since)
    rows = session.scalars(stmt.order_by(RoutingEntry.id.desc()).limit(limit)).all()
    return list(reversed(rows))


def _json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text  # a log shows what is there, even when it is not what we wrote


def audit_view(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at,
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "reason": entry.reason,
        "before": _json(entry.before),
        "after": _json(entry.after),
        "hash": entry.hash,
    }


def routing_view(entry: RoutingEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at,
        "session": entry.session,
        "client_ip": entry.client_ip,
        "helo": entry.helo,
        "mail_from": entry.mail_from,
        "recipient": entry.recipient,
        "decision": entry.decision,
        "reason": entry.reason,
        "rule_ids": [r for r in entry.rule_ids.split(",") if r] if entry.rule_ids else [],
        "reply": entry.reply,
        "message_id": entry.message_id,
        "queue_id": entry.queue_id,
        "trace": _json(entry.trace),
        "hash": entry.hash,
    }


def verify_chains(session: Session) -> list[chain.ChainReport]:
    """Both hash chains, audit first; each report says where its chain breaks, if it does."""
    return [chain.verify(session, chain.AUDIT), chain.verify(session, chain.ROUTING)]
