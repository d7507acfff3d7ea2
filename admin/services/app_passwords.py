"""App passwords: named, scoped, optionally expiring credentials for mail clients.

The owner creates one per client (``imap``, ``smtp`` or both); Mailward
generates it (about 94 bits), shows it once and stores its argon2id hash in
``app_password``, where the IMAP and SMTP servers check it. Revoking one takes
effect at the next login attempt; the servers re-read the row every time.
Operators see app passwords in the persistence audit and may revoke them, but
never create one: that would hand them a credential to the mailbox.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from admin.services import NotFound, ServiceError
from admin.services.identity import address_of
from policy.identity import check_app_password
from storage import audit
from storage.models import AppPassword, Mailbox
from storage.secrets import hash_password

# Four groups of five letters: easy to type on a phone, 4 * 5 * log2(26) ≈ 94 bits.
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
GROUPS, GROUP_LENGTH = 4, 5


@dataclass(frozen=True, slots=True)
class NewAppPassword:
    row: AppPassword
    password: str  # shown once to the owner


def generate() -> str:
    return "-".join(
        "".join(secrets.choice(_LETTERS) for _ in range(GROUP_LENGTH)) for _ in range(GROUPS)
    )


def create_app_password(
    session: Session,
    *,
    mailbox: Mailbox,
    now: datetime,
    name: str,
    scopes: list[str],
    expires_at: datetime | None,
) -> NewAppPassword:
    problems = check_app_password(name=name, scopes=scopes, expires_at=expires_at, now=now)
    if problems:
        raise ServiceError("; ".join(problems))
    password = generate()
    row = AppPassword(
        mailbox_id=mailbox.id,
        name=name.strip(),
        password_hash=hash_password(password),
        scopes=",".join(sorted(set(scopes))),
        created_at=now,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=f"mailbox:{address_of(mailbox)}",
        action="app-password.create",
        target=f"app-password:{row.id}",
        now=now,
        after=audit.snapshot(row),
    )
    return NewAppPassword(row, password)


def state_of(row: AppPassword, now: datetime) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "active"


def view(row: AppPassword, mailbox: Mailbox, now: datetime) -> dict[str, Any]:
    return {
        "id": row.id,
        "mailbox": address_of(mailbox),
        "name": row.name,
        "scopes": row.scopes,
        "state": state_of(row, now),
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "revoked_at": row.revoked_at,
    }


def list_app_passwords(
    session: Session, *, now: datetime, mailbox: Mailbox | None = None, active_only: bool = False
) -> list[dict[str, Any]]:
    stmt = select(AppPassword, Mailbox).join(Mailbox, AppPassword.mailbox_id == Mailbox.id)
    if mailbox is not None:
        stmt = stmt.where(AppPassword.mailbox_id == mailbox.id)
    rows = [view(row, box, now) for row, box in session.execute(stmt.order_by(AppPassword.id))]
    return [r for r in rows if r["state"] == "active"] if active_only else rows


def revoke_app_password(
    session: Session,
    *,
    actor: str,
    now: datetime,
    app_password_id: int,
    mailbox: Mailbox | None = None,
    reason: str | None = None,
) -> AppPassword:
    """Revoke one app password; with ``mailbox``, only one of that mailbox (the owner's view)."""
    row = session.get(AppPassword, app_password_id)
    if row is None or (mailbox is not None and row.mailbox_id != mailbox.id):
        raise NotFound(f"no app password {app_password_id}")
    if row.revoked_at is not None:
        return row
    before = audit.snapshot(row)
    row.revoked_at = now
    audit.record(
        session,
        actor=actor,
        action="app-password.revoke",
        target=f"app-password:{row.id}",
        now=now,
        before=before,
        after=audit.snapshot(row),
        reason=reason,
    )
    return row
