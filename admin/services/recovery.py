"""Recovery codes and recovery endpoints (hard rule 4).

Recovery codes: ten at a time, 50 random bits each, stored as argon2id
hashes; a code works once and is burned in the transaction that uses it.
Issuing a fresh set revokes the unused rest. When fewer than three remain
the owner is asked to generate a fresh set.

Recovery endpoints: an email address or phone number per mailbox, verified by
a code sent to it (argon2id-hashed, 30 minutes, five attempts), with
verified-at and reviewed-at dates for the pre-incident audit. An email on the
mailbox's own domain, or on any domain hosted here, is refused: whoever holds
that domain would hold the recovery.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from admin.notify import Recipient
from admin.services import NotFound, ServiceError
from admin.services.identity import (
    IdentityEnv,
    hosted_domains,
    mailbox_target,
    notify,
    owner_recipients,
)
from policy.identity import (
    MAX_VERIFICATION_ATTEMPTS,
    RECOVERY_ALPHABET,
    RECOVERY_CODE_COUNT,
    RECOVERY_CODE_LENGTH,
    VERIFICATION_TTL,
    check_recovery_endpoint,
    endpoint_findings,
    format_recovery_code,
    normalize_recovery_code,
)
from storage import audit
from storage.models import Mailbox
from storage.models_identity import RecoveryCode, RecoveryEndpoint
from storage.secrets import hash_password, verify_password

VERIFICATION_DIGITS = 6


def generate_code() -> str:
    return "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH))


def issue_codes(session: Session, *, actor: str, now: datetime, mailbox: Mailbox) -> list[str]:
    """A fresh set of recovery codes; the unused old ones stop working. Returns them once."""
    revoked = session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.mailbox_id == mailbox.id,
            RecoveryCode.used_at.is_(None),
            RecoveryCode.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    ).rowcount  # type: ignore[attr-defined]
    codes = [generate_code() for _ in range(RECOVERY_CODE_COUNT)]
    for code in codes:
        session.add(
            RecoveryCode(mailbox_id=mailbox.id, code_hash=hash_password(code), created_at=now)
        )
    audit.record(
        session,
        actor=actor,
        action="recovery-codes.issue",
        target=mailbox_target(mailbox),
        now=now,
        after={"issued": len(codes), "revoked_unused": revoked},
    )
    return [format_recovery_code(c) for c in codes]


def remaining_codes(session: Session, mailbox_id: int) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(RecoveryCode)
            .where(
                RecoveryCode.mailbox_id == mailbox_id,
                RecoveryCode.used_at.is_(None),
                RecoveryCode.revoked_at.is_(None),
            )
        )
        or 0
    )


def burn_code(session: Session, *, actor: str, now: datetime, mailbox: Mailbox, code: str) -> bool:
    """Use one recovery code: True (and the code is spent) if it is one of the unused ones."""
    normalized = normalize_recovery_code(code)
    if normalized is None:
        return False
    candidates = session.scalars(
        select(RecoveryCode)
        .where(
            RecoveryCode.mailbox_id == mailbox.id,
            RecoveryCode.used_at.is_(None),
            RecoveryCode.revoked_at.is_(None),
        )
        .with_for_update()
    ).all()
    for row in candidates:
        if verify_password(row.code_hash, normalized):
            row.used_at = now
            audit.record(
                session,
                actor=actor,
                action="recovery-code.use",
                target=mailbox_target(mailbox),
                now=now,
                after={"code_id": row.id, "remaining": len(candidates) - 1},
            )
            return True
    return False


# -- endpoints ----------------------------------------------------------------------


def _verification_code() -> str:
    return "".join(secrets.choice("0123456789") for _ in range(VERIFICATION_DIGITS))


def add_endpoint(
    session: Session,
    env: IdentityEnv,
    *,
    actor: str,
    now: datetime,
    mailbox: Mailbox,
    kind: str,
    value: str,
) -> RecoveryEndpoint:
    value = value.strip().lower() if kind == "email" else value.strip()
    verdict = check_recovery_endpoint(
        kind, value, mailbox_domain=mailbox.domain.name, hosted_domains=hosted_domains(session)
    )
    if not verdict.allowed:
        raise ServiceError(str(verdict))
    code = _verification_code()
    endpoint = RecoveryEndpoint(
        mailbox_id=mailbox.id,
        kind=kind,
        value=value,
        created_at=now,
        verification_hash=hash_password(code),
        verification_expires_at=now + VERIFICATION_TTL,
        verification_attempts=0,
    )
    session.add(endpoint)
    session.flush()
    target = f"recovery-endpoint:{endpoint.id}"
    audit.record(
        session,
        actor=actor,
        action="recovery-endpoint.add",
        target=target,
        now=now,
        after=audit.snapshot(endpoint),
    )
    owners = owner_recipients(session, mailbox)
    name = owners[0].name if owners else mailbox.local_part
    to = Recipient(name, value if kind == "email" else None, value if kind == "phone" else None)
    body = (
        f"Your verification code for the recovery {kind} of {mailbox.local_part}@"
        f"{mailbox.domain.name} is {code}. It is valid for "
        f"{int(VERIFICATION_TTL.total_seconds() // 60)} minutes. If you did not ask for "
        "this, ignore this message.\n"
    )
    notify(
        session,
        env,
        actor=actor,
        now=now,
        kind="endpoint-verification",
        to=to,
        subject="Verify your recovery contact",
        body=body,
        about=target,
    )
    return endpoint


def _endpoint(session: Session, mailbox: Mailbox, endpoint_id: int) -> RecoveryEndpoint:
    endpoint = session.get(RecoveryEndpoint, endpoint_id)
    if endpoint is None or endpoint.mailbox_id != mailbox.id or endpoint.removed_at is not None:
        raise NotFound(f"no recovery endpoint {endpoint_id} on this mailbox")
    return endpoint


def verify_endpoint(
    session: Session, *, actor: str, now: datetime, mailbox: Mailbox, endpoint_id: int, code: str
) -> RecoveryEndpoint:
    endpoint = _endpoint(session, mailbox, endpoint_id)
    if endpoint.verified_at is not None:
        return endpoint
    expired = endpoint.verification_expires_at is None or endpoint.verification_expires_at <= now
    if expired or endpoint.verification_attempts >= MAX_VERIFICATION_ATTEMPTS:
        raise ServiceError(
            "this verification code is no longer valid; remove the endpoint "
            "and add it again for a new code"
        )
    if not verify_password(endpoint.verification_hash, code.strip()):
        endpoint.verification_attempts += 1
        # The failed attempt must count even though the request fails: commit
        # it by returning normally and let the caller report the failure.
        return endpoint
    before = audit.snapshot(endpoint)
    endpoint.verified_at = now
    endpoint.reviewed_at = now
    endpoint.verification_hash = None
    endpoint.verification_expires_at = None
    audit.record(
        session,
        actor=actor,
        action="recovery-endpoint.verify",
        target=f"recovery-endpoint:{endpoint.id}",
        now=now,
        before=before,
        after=audit.snapshot(endpoint),
    )
    return endpoint


def review_endpoint(
    session: Session, *, actor: str, now: datetime, mailbox: Mailbox, endpoint_id: int
) -> RecoveryEndpoint:
    """The owner confirms the endpoint is still theirs (resets the 90-day review clock)."""
    endpoint = _endpoint(session, mailbox, endpoint_id)
    if endpoint.verified_at is None:
        raise ServiceError("verify the endpoint first")
    before = audit.snapshot(endpoint)
    endpoint.reviewed_at = now
    audit.record(
        session,
        actor=actor,
        action="recovery-endpoint.review",
        target=f"recovery-endpoint:{endpoint.id}",
        now=now,
        before=before,
        after=audit.snapshot(endpoint),
    )
    return endpoint


def remove_endpoint(
    session: Session, *, actor: str, now: datetime, mailbox: Mailbox, endpoint_id: int
) -> RecoveryEndpoint:
    endpoint = _endpoint(session, mailbox, endpoint_id)
    before = audit.snapshot(endpoint)
    endpoint.removed_at = now
    endpoint.verification_hash = None
    audit.record(
        session,
        actor=actor,
        action="recovery-endpoint.remove",
        target=f"recovery-endpoint:{endpoint.id}",
        now=now,
        before=before,
        after=audit.snapshot(endpoint),
    )
    return endpoint


def list_endpoints(session: Session, mailbox: Mailbox, now: datetime) -> list[dict[str, Any]]:
    hosted = hosted_domains(session)
    rows = session.scalars(
        select(RecoveryEndpoint)
        .where(RecoveryEndpoint.mailbox_id == mailbox.id, RecoveryEndpoint.removed_at.is_(None))
        .order_by(RecoveryEndpoint.id)
    )
    return [
        {
            "id": e.id,
            "kind": e.kind,
            "value": e.value,
            "verified_at": e.verified_at,
            "reviewed_at": e.reviewed_at,
            "findings": [
                f.value
                for f in endpoint_findings(
                    kind=e.kind,
                    value=e.value,
                    verified_at=e.verified_at,
                    reviewed_at=e.reviewed_at,
                    mailbox_domain=mailbox.domain.name,
                    hosted_domains=hosted,
                    now=now,
                )
            ],
        }
        for e in rows
    ]
