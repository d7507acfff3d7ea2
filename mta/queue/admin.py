"""Operator commands on the outbound queue, for the CLI, API and web UI.

Each change (retry, hold, release, delete) is one transaction that also
writes an audit entry with the row before and after, so any of them can be
shown and reverted. Reading (``list_queue``, ``show``) changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.orm import Session

from storage import audit, outbound
from storage.models import OutboundMessage
from storage.outbound import QueueState


class QueueError(LookupError):
    """No such message, or the command does not apply to its state."""


@dataclass(frozen=True, slots=True)
class RecipientView:
    address: str
    state: str
    attempts: int
    last_reply: str | None
    remote_mta: str | None


@dataclass(frozen=True, slots=True)
class MessageView:
    queue_id: str
    state: str
    mail_from: str
    recipients: tuple[str, ...]
    size: int
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_error: str | None
    details: tuple[RecipientView, ...] = ()


def _view(session: Session, row: OutboundMessage, *, details: bool = False) -> MessageView:
    rows = outbound.recipients(session, row.id) if details else []
    listed = tuple(json.loads(row.recipients))
    views = tuple(RecipientView(r.address, r.state, r.attempts, r.last_reply, r.remote_mta)
                  for r in rows)  # fmt: skip
    if details and not views:  # not attempted yet: every recipient is still pending
        views = tuple(RecipientView(a, "pending", 0, None, None) for a in listed)
    return MessageView(
        queue_id=row.queue_id, state=row.state, mail_from=row.mail_from,
        recipients=listed, size=row.size, attempts=row.attempts,
        created_at=row.created_at, next_attempt_at=row.next_attempt_at,
        last_error=row.last_error, details=views,
    )  # fmt: skip


def _get(session: Session, queue_id: str) -> OutboundMessage:
    row = outbound.find(session, queue_id)
    if row is None:
        raise QueueError(f"no queued message {queue_id}")
    return row


def list_queue(session: Session, *, include_final: bool = False) -> list[MessageView]:
    return [_view(session, r) for r in outbound.listing(session, include_final=include_final)]


def show(session: Session, queue_id: str) -> MessageView:
    return _view(session, _get(session, queue_id), details=True)


def _change(
    session: Session, row: OutboundMessage, *, actor: str, action: str, now: datetime,
    reason: str | None, state: QueueState | None = None, due: datetime | None = None,
) -> MessageView:  # fmt: skip
    before = audit.snapshot(row)
    if state is not None:
        row.state = state
    if due is not None:
        row.next_attempt_at = due
    audit.record(session, actor=actor, action=f"queue.{action}", target=f"queue:{row.queue_id}",
                 now=now, before=before, after=audit.snapshot(row), reason=reason)  # fmt: skip
    return _view(session, row)


def retry(session: Session, queue_id: str, *, actor: str, now: datetime,
          reason: str | None = None) -> MessageView:  # fmt: skip
    """Make a waiting message due now (the next run attempts it)."""
    row = _get(session, queue_id)
    if row.state != QueueState.QUEUED:
        raise QueueError(f"{row.queue_id} is {row.state}; only queued messages can be retried")
    return _change(session, row, actor=actor, action="retry", now=now, reason=reason, due=now)


def hold(session: Session, queue_id: str, *, actor: str, now: datetime,
         reason: str | None = None) -> MessageView:  # fmt: skip
    row = _get(session, queue_id)
    if row.state not in (QueueState.QUEUED, QueueState.SENDING):
        raise QueueError(f"{row.queue_id} is {row.state}; it cannot be held")
    return _change(session, row, actor=actor, action="hold", now=now, reason=reason,
                   state=QueueState.HELD)  # fmt: skip


def release(session: Session, queue_id: str, *, actor: str, now: datetime,
            reason: str | None = None) -> MessageView:  # fmt: skip
    row = _get(session, queue_id)
    if row.state != QueueState.HELD:
        raise QueueError(f"{row.queue_id} is {row.state}, not held")
    return _change(session, row, actor=actor, action="release", now=now, reason=reason,
                   state=QueueState.QUEUED, due=now)  # fmt: skip


def delete(session: Session, queue_id: str, *, actor: str, now: datetime,
           reason: str | None = None) -> MessageView:  # fmt: skip
    """Remove a message and its file; its recipients get nothing and no DSN."""
    row = _get(session, queue_id)
    view = _view(session, row, details=True)
    before = audit.snapshot(row)
    path = Path(row.spool_path)
    outbound.remove(session, row)
    audit.record(session, actor=actor, action="queue.delete", target=f"queue:{view.queue_id}",
                 now=now, before=before, after=None, reason=reason)  # fmt: skip
    # The file goes only once the row is gone for good (a rolled-back delete keeps both).
    event.listen(session, "after_commit", lambda _s: path.unlink(missing_ok=True), once=True)
    return view
