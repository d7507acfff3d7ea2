"""Helpdesk resets, the exception (hard rule 3): two operators, one temporary credential.

``requested → approved → executed → completed`` (or ``cancelled``):

1. an operator with ``helpdesk`` (or owner/domain-admin) for the domain opens
   a request with a reason;
2. a *different* operator holding ``approver`` for the mailbox's domain
   approves it (``policy.identity.authorize_approval``);
3. the requester or the approver executes it: Mailward generates a random
   one-time temporary credential (192 bits, stored as SHA-256), clears the
   lasting password, revokes every session, app password and recovery code of
   the mailbox, and sends the credential as a link to the owner's
   out-of-band contact. No operator ever sees it;
4. the owner opens the link within the hour and sets a new password, and gets
   a fresh set of recovery codes. The credential works for nothing else (not
   IMAP, not SMTP) and only once.

Each step is an audit entry naming its actor; the request row keeps who
requested, approved and executed, and when.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from admin.services import NotFound, ServiceError
from admin.services.identity import (
    Forbidden,
    IdentityEnv,
    LinkClosed,
    actor_of,
    address_of,
    check_new_password,
    notify,
    operator_facts,
    owner_recipients,
    revoke_access,
    set_mailbox_password,
)
from admin.services.recovery import issue_codes
from policy.identity import (
    TEMP_CREDENTIAL_TTL,
    ResetFacts,
    ResetState,
    authorize_approval,
    authorize_cancel,
    authorize_completion,
    authorize_execution,
    authorize_request,
)
from storage import audit
from storage.models import Mailbox, Operator
from storage.models_identity import RecoveryCode, ResetRequest
from storage.secrets import hash_password, new_token, token_digest

TEMPORARY_PATH = "/reset/temporary/"
OPEN_STATES = (ResetState.REQUESTED, ResetState.APPROVED, ResetState.EXECUTED)


@dataclass(frozen=True, slots=True)
class CompletedReset:
    mailbox: Mailbox
    address: str
    recovery_codes: list[str]  # shown once to the owner


def facts(row: ResetRequest, mailbox: Mailbox) -> ResetFacts:
    return ResetFacts(
        state=ResetState(row.state),
        domain_id=mailbox.domain_id,
        requested_by=row.requested_by,
        requested_at=row.requested_at,
        approved_by=row.approved_by,
        approved_at=row.approved_at,
        expires_at=row.expires_at,
    )


def _load(session: Session, request_id: int) -> tuple[ResetRequest, Mailbox]:
    row = session.scalars(
        select(ResetRequest).where(ResetRequest.id == request_id).with_for_update()
    ).first()
    if row is None:
        raise NotFound(f"no reset request {request_id}")
    mailbox = session.get(Mailbox, row.mailbox_id)
    assert mailbox is not None
    return row, mailbox


def _record(
    session: Session,
    row: ResetRequest,
    *,
    actor: str,
    action: str,
    now: datetime,
    before: dict[str, Any] | None,
    reason: str | None = None,
) -> None:
    audit.record(
        session,
        actor=actor,
        action=action,
        target=f"reset:{row.id}",
        now=now,
        before=before,
        after=audit.snapshot(row),
        reason=reason,
    )


def request_reset(
    session: Session, *, operator: Operator, now: datetime, mailbox: Mailbox, reason: str
) -> ResetRequest:
    verdict = authorize_request(
        operator_facts(session, operator), domain_id=mailbox.domain_id, reason=reason
    )
    if not verdict:
        raise Forbidden(verdict.reason)
    open_request = session.scalars(
        select(ResetRequest.id).where(
            ResetRequest.mailbox_id == mailbox.id,
            ResetRequest.state.in_([ResetState.REQUESTED, ResetState.APPROVED]),
        )
    ).first()
    if open_request is not None:
        raise ServiceError(f"reset request {open_request} for this mailbox is already open")
    row = ResetRequest(
        mailbox_id=mailbox.id,
        state=ResetState.REQUESTED,
        reason=reason.strip(),
        requested_by=operator.username,
        requested_at=now,
    )
    session.add(row)
    session.flush()
    _record(
        session,
        row,
        actor=actor_of(operator),
        action="reset.request",
        now=now,
        before=None,
        reason=row.reason,
    )
    return row


def approve_reset(
    session: Session, *, operator: Operator, now: datetime, request_id: int
) -> ResetRequest:
    row, mailbox = _load(session, request_id)
    verdict = authorize_approval(facts(row, mailbox), operator_facts(session, operator), now=now)
    if not verdict:
        raise Forbidden(verdict.reason)
    before = audit.snapshot(row)
    row.state = ResetState.APPROVED
    row.approved_by = operator.username
    row.approved_at = now
    _record(session, row, actor=actor_of(operator), action="reset.approve", now=now, before=before)
    return row


def execute_reset(
    session: Session, env: IdentityEnv, *, operator: Operator, now: datetime, request_id: int
) -> ResetRequest:
    row, mailbox = _load(session, request_id)
    verdict = authorize_execution(facts(row, mailbox), operator_facts(session, operator), now=now)
    if not verdict:
        raise Forbidden(verdict.reason)
    recipients = owner_recipients(session, mailbox)
    if not recipients:
        raise ServiceError("the mailbox's owner has no out-of-band contact to receive the reset")
    actor = actor_of(operator)
    token = new_token()
    before = audit.snapshot(row)
    row.state = ResetState.EXECUTED
    row.executed_by = operator.username
    row.executed_at = now
    row.temp_credential_sha256 = token_digest(token)
    row.expires_at = now + TEMP_CREDENTIAL_TTL
    reason = f"helpdesk reset {row.id}: {row.reason}"
    set_mailbox_password(
        session,
        actor=actor,
        now=now,
        mailbox=mailbox,
        password_hash=None,
        action="mailbox.password.clear",
        reason=reason,
    )
    revoke_access(session, actor=actor, now=now, mailbox=mailbox, reason=reason)
    session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.mailbox_id == mailbox.id,
            RecoveryCode.used_at.is_(None),
            RecoveryCode.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    address = address_of(mailbox)
    link = env.link(TEMPORARY_PATH + token)
    minutes = int(TEMP_CREDENTIAL_TTL.total_seconds() // 60)
    body = (
        f"A password reset for {address} was requested by the helpdesk ({row.requested_by}) "
        f"and approved by {row.approved_by}.\n\nOpen this link within {minutes} minutes to "
        f"choose a new password:\n\n{link}\n\nThe link works once and only for setting a "
        "new password. If you did not ask for this reset, contact your administrator.\n"
    )
    sent: list[str] = []
    for person in recipients:
        notify(
            session,
            env,
            actor=actor,
            now=now,
            kind="reset-credential",
            to=person,
            subject=f"Password reset for {address}",
            body=body,
            about=f"reset:{row.id}",
        )
        sent.append(str(person))
    row.sent_to = ", ".join(sent)[:255]
    _record(session, row, actor=actor, action="reset.execute", now=now, before=before)
    return row


def find_by_credential(session: Session, token: str, *, lock: bool = False) -> ResetRequest | None:
    if not token or len(token) > 128:
        return None
    stmt = select(ResetRequest).where(ResetRequest.temp_credential_sha256 == token_digest(token))
    return session.scalars(stmt.with_for_update() if lock else stmt).first()


def open_temporary(
    session: Session, token: str, now: datetime, *, lock: bool = False
) -> tuple[ResetRequest, Mailbox]:
    row = find_by_credential(session, token, lock=lock)
    if row is None:
        raise LinkClosed("This temporary credential is not valid.")
    mailbox = session.get(Mailbox, row.mailbox_id)
    assert mailbox is not None
    verdict = authorize_completion(facts(row, mailbox), now=now)
    if not verdict:
        raise LinkClosed(verdict.reason)
    return row, mailbox


def complete_reset(
    session: Session, env: IdentityEnv, *, token: str, new_password: str, now: datetime
) -> CompletedReset:
    row, mailbox = open_temporary(session, token, now, lock=True)
    address = address_of(mailbox)
    check_new_password(env, new_password, address)
    actor = f"mailbox:{address}"
    before = audit.snapshot(row)
    row.state = ResetState.COMPLETED
    row.completed_at = now
    set_mailbox_password(
        session,
        actor=actor,
        now=now,
        mailbox=mailbox,
        password_hash=hash_password(new_password),
        action="mailbox.password.set",
        reason=f"helpdesk reset {row.id}",
    )
    codes = issue_codes(session, actor=actor, now=now, mailbox=mailbox)
    _record(session, row, actor=actor, action="reset.complete", now=now, before=before)
    return CompletedReset(mailbox, address, codes)


def cancel_reset(
    session: Session, *, operator: Operator, now: datetime, request_id: int, reason: str
) -> ResetRequest:
    row, mailbox = _load(session, request_id)
    verdict = authorize_cancel(facts(row, mailbox), operator_facts(session, operator))
    if not verdict:
        raise Forbidden(verdict.reason)
    before = audit.snapshot(row)
    row.state = ResetState.CANCELLED
    row.cancelled_by = operator.username
    row.cancelled_at = now
    _record(
        session,
        row,
        actor=actor_of(operator),
        action="reset.cancel",
        now=now,
        before=before,
        reason=reason,
    )
    return row


def reset_view(session: Session, row: ResetRequest, now: datetime) -> dict[str, Any]:
    mailbox = session.get(Mailbox, row.mailbox_id)
    state = row.state
    if state == ResetState.EXECUTED and row.expires_at is not None and row.expires_at <= now:
        state = "expired"
    return {
        "id": row.id,
        "mailbox": address_of(mailbox) if mailbox else None,
        "state": state,
        "reason": row.reason,
        "requested_by": row.requested_by,
        "requested_at": row.requested_at,
        "approved_by": row.approved_by,
        "approved_at": row.approved_at,
        "executed_by": row.executed_by,
        "executed_at": row.executed_at,
        "expires_at": row.expires_at,
        "completed_at": row.completed_at,
        "sent_to": row.sent_to,
    }


def list_resets(
    session: Session, *, now: datetime, mailbox: Mailbox | None = None, open_only: bool = False
) -> list[dict[str, Any]]:
    stmt = select(ResetRequest).order_by(ResetRequest.id)
    if mailbox is not None:
        stmt = stmt.where(ResetRequest.mailbox_id == mailbox.id)
    if open_only:
        stmt = stmt.where(ResetRequest.state.in_(list(OPEN_STATES)))
    return [reset_view(session, row, now) for row in session.scalars(stmt)]
