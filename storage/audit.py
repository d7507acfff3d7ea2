"""Writing the audit log: every change, with actor, before and after.

``snapshot`` captures a row's columns as plain JSON-able values so that the
entry shows exactly what changed and a revert can restore it. Secrets never
reach the log: columns that hold hashes of secrets are masked.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.orm import Session

from storage import chain
from storage.models import AuditEntry, Base

SECRET_COLUMNS = frozenset(
    {"password_hash", "token_sha256", "totp_secret_hash",
     # storage.models_identity
     "code_hash", "temp_credential_sha256", "verification_hash", "secret_encrypted"}
)  # fmt: skip


def snapshot(row: Base | None) -> dict[str, Any] | None:
    if row is None:
        return None
    values: dict[str, Any] = {}
    for column in inspect(row).mapper.column_attrs:
        value = getattr(row, column.key)
        if column.key in SECRET_COLUMNS:
            value = "<set>" if value else None
        elif isinstance(value, datetime):
            value = value.isoformat()
        values[column.key] = value
    return values


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str,
    now: datetime,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        at=now,
        actor=actor,
        action=action,
        target=target,
        before=None if before is None else chain.canonical(before),
        after=None if after is None else chain.canonical(after),
        reason=reason,
    )
    session.flush()  # the row being audited must have its id before we describe it
    chain.append(session, chain.AUDIT, [entry])
    return entry
