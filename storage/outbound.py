"""Row operations of the outbound queue, inside the caller's transaction.

A message row moves ``queued → sending → queued …`` until every recipient is
final, then ends ``delivered`` (all delivered) or ``bounced`` (some failed).
``held`` rows are never picked. ``sending`` is a lease: the runner that
claims a row sets ``next_attempt_at`` to the end of its lease, so a row whose
runner died mid-delivery becomes due again when the lease runs out and
nothing is lost (at-least-once, as SMTP itself).

Recipient rows are ``pending``, ``delivered`` or ``failed``; they are created
from the message's ``recipients`` list the first time the row is claimed, so
rows spooled by ``storage.spool`` need no recipient rows of their own.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from storage.models import Domain, OutboundMessage
from storage.models_outbound import OutboundRecipient


class QueueState(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    HELD = "held"
    DELIVERED = "delivered"
    BOUNCED = "bounced"


class RecipientState(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


ACTIVE_STATES = (QueueState.QUEUED, QueueState.SENDING, QueueState.HELD)
FINAL_STATES = (QueueState.DELIVERED, QueueState.BOUNCED)


@dataclass(frozen=True, slots=True)
class Claimed:
    """What one delivery attempt needs, read while claiming the row."""

    id: int
    queue_id: str
    mail_from: str
    spool_path: str
    size: int
    created_at: datetime
    attempts: int
    pending: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One recipient's result of one attempt."""

    address: str
    state: RecipientState  # PENDING means "temporary failure, retry"
    reply: str
    remote_mta: str | None = None


def _ensure_recipients(session: Session, row: OutboundMessage, now: datetime) -> None:
    existing = set(
        session.scalars(
            select(OutboundRecipient.address).where(OutboundRecipient.message_id == row.id)
        )
    )
    if existing:
        return
    for address in dict.fromkeys(json.loads(row.recipients)):
        session.add(OutboundRecipient(message_id=row.id, address=address, state="pending",
                                      attempts=0, updated_at=now))  # fmt: skip
    session.flush()


def pending(session: Session, message_id: int) -> list[OutboundRecipient]:
    return list(
        session.scalars(
            select(OutboundRecipient)
            .where(
                OutboundRecipient.message_id == message_id,
                OutboundRecipient.state == RecipientState.PENDING,
            )
            .order_by(OutboundRecipient.id)
        )
    )


def recipients(session: Session, message_id: int) -> list[OutboundRecipient]:
    return list(
        session.scalars(
            select(OutboundRecipient)
            .where(OutboundRecipient.message_id == message_id)
            .order_by(OutboundRecipient.id)
        )
    )


def claim_due(
    session: Session, *, now: datetime, lease_until: datetime, limit: int, skip: Iterable[int] = ()
) -> list[Claimed]:
    """Lease up to ``limit`` due rows to the caller."""
    query = (
        select(OutboundMessage)
        .where(
            OutboundMessage.state.in_((QueueState.QUEUED, QueueState.SENDING)),
            OutboundMessage.next_attempt_at <= now,
        )
        .order_by(OutboundMessage.next_attempt_at, OutboundMessage.id)
        .limit(limit)
    )
    skip = set(skip)
    if skip:
        query = query.where(OutboundMessage.id.not_in(skip))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)  # several runners, one row each
    claimed: list[Claimed] = []
    for row in session.scalars(query).all():
        _ensure_recipients(session, row, now)
        row.state = QueueState.SENDING
        row.next_attempt_at = lease_until
        claimed.append(
            Claimed(row.id, row.queue_id, row.mail_from, row.spool_path, row.size,
                    row.created_at, row.attempts,
                    tuple(r.address for r in pending(session, row.id)))
        )  # fmt: skip
    return claimed


def record_outcomes(
    session: Session, message_id: int, outcomes: Sequence[Outcome], now: datetime
) -> OutboundMessage | None:
    """Store one attempt's per-recipient results; None if the row was deleted meanwhile."""
    row = session.get(OutboundMessage, message_id)
    if row is None:
        return None
    by_address = {r.address: r for r in pending(session, message_id)}
    for outcome in outcomes:
        rcpt = by_address.get(outcome.address)
        if rcpt is None:
            continue
        rcpt.state = outcome.state
        rcpt.attempts += 1
        rcpt.last_reply = outcome.reply[:1000]
        rcpt.remote_mta = outcome.remote_mta
        rcpt.updated_at = now
    row.attempts += 1
    temporary = [o.reply for o in outcomes if o.state is RecipientState.PENDING]
    row.last_error = temporary[0][:1000] if temporary else None
    return row


def reschedule(row: OutboundMessage, at: datetime) -> None:
    # A row put on hold while it was being delivered stays held.
    if row.state == QueueState.SENDING:
        row.state = QueueState.QUEUED
    row.next_attempt_at = at


def finish(session: Session, row: OutboundMessage) -> QueueState:
    failed = session.scalars(
        select(OutboundRecipient.id).where(
            OutboundRecipient.message_id == row.id,
            OutboundRecipient.state == RecipientState.FAILED,
        )
    ).first()
    row.state = QueueState.BOUNCED if failed is not None else QueueState.DELIVERED
    return QueueState(row.state)


def release(session: Session, ids: Iterable[int], now: datetime) -> None:
    """Give leased rows back at once (a clean shutdown; a crash waits for the lease)."""
    ids = list(ids)
    if not ids:
        return
    for row in session.scalars(
        select(OutboundMessage).where(
            OutboundMessage.id.in_(ids), OutboundMessage.state == QueueState.SENDING
        )
    ):
        row.state = QueueState.QUEUED
        row.next_attempt_at = now


def hosted_domains(session: Session, names: Iterable[str]) -> frozenset[str]:
    names = set(names)
    if not names:
        return frozenset()
    return frozenset(session.scalars(select(Domain.name).where(Domain.name.in_(names))))


def find(session: Session, queue_id: str) -> OutboundMessage | None:
    return session.scalars(
        select(OutboundMessage).where(OutboundMessage.queue_id == queue_id.upper())
    ).first()


def listing(session: Session, *, include_final: bool = False, limit: int = 1000) -> list[
    OutboundMessage
]:
    query = select(OutboundMessage).order_by(OutboundMessage.created_at, OutboundMessage.id)
    if not include_final:
        query = query.where(
            or_(*(OutboundMessage.state == s for s in ACTIVE_STATES))
        )
    return list(session.scalars(query.limit(limit)))


def remove(session: Session, row: OutboundMessage) -> None:
    session.execute(delete(OutboundRecipient).where(OutboundRecipient.message_id == row.id))
    session.delete(row)
