"""Read side of the identity lifecycle for the IMAP and SMTP servers.

The servers check passwords themselves (``mailbox.password_hash`` and
``app_password``); these two questions are what they add:

- ``has_only_temporary_credential``: the mailbox's password was reset by the
  helpdesk and the owner has not yet set a new one. A login then fails like
  any other, and the server may say why (IMAP ``NO [ALERT]``, RFC 3501
  §7.1) without revealing anything a guesser could use: the temporary
  credential itself never logs in anywhere.
- ``sessions_revoked_at``: a reset, suspension or transfer revoked every
  session of the mailbox at that time; a connection authenticated before it
  must end.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Mailbox
from storage.models_identity import MailboxCredential, ResetRequest
from storage.secrets import token_digest

EXECUTED = "executed"  # policy.identity.ResetState.EXECUTED


def has_only_temporary_credential(
    session: Session, mailbox_id: int, now: datetime | None = None
) -> bool:
    """True when the mailbox has no lasting password, only a pending temporary credential."""
    now = now or datetime.now(UTC)
    password_hash = session.scalar(select(Mailbox.password_hash).where(Mailbox.id == mailbox_id))
    if password_hash:
        return False
    pending = session.scalars(
        select(ResetRequest.id).where(
            ResetRequest.mailbox_id == mailbox_id,
            ResetRequest.state == EXECUTED,
            ResetRequest.expires_at > now,
        )
    ).first()
    return pending is not None


def sessions_revoked_at(session: Session, mailbox_id: int) -> datetime | None:
    return session.scalar(
        select(MailboxCredential.sessions_revoked_at).where(
            MailboxCredential.mailbox_id == mailbox_id
        )
    )


def is_temporary_credential(
    session: Session, mailbox_id: int, secret: str, now: datetime | None = None
) -> bool:
    """True when ``secret`` is the mailbox's pending, unexpired temporary reset credential.

    Mail servers use it to tell the user, instead of a bare failure, that this
    credential only sets a new password (it is compared by its SHA-256 digest,
    the only form stored).
    """
    now = now or datetime.now(UTC)
    found = session.scalars(
        select(ResetRequest.id).where(
            ResetRequest.mailbox_id == mailbox_id,
            ResetRequest.state == EXECUTED,
            ResetRequest.expires_at > now,
            ResetRequest.temp_credential_sha256 == token_digest(secret),
        )
    ).first()
    return found is not None
