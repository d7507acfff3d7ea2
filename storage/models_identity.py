"""Schema of the identity lifecycle (migration 0004): invites, recovery, resets, sessions.

Secrets never appear here. One-time links and session tokens carry at least
128 bits of entropy and are stored as SHA-256 (``token_sha256``), so a link
is found by one indexed lookup; what a person chose or can type (recovery
codes, verification codes) is stored as an argon2id hash. An operator's TOTP
seed must be readable to check codes, so it is stored encrypted with a key
that lives in the data folder, not in the database (``secret_encrypted``).

Credential semantics the IMAP and SMTP servers rely on:

- ``mailbox.password_hash`` is the lasting password; ``app_password`` rows
  are the app passwords (``storage.models``).
- A helpdesk temporary credential lives only in ``reset_request`` and lets
  its holder set a new password on the web page, never log in over IMAP or
  SMTP (``storage.identity.has_only_temporary_credential``).
- ``mailbox_credential.sessions_revoked_at`` moves forward whenever a reset,
  a suspension or an ownership transfer revokes access; a session that
  logged in before it must end.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base


class IdentityPolicy(Base):
    """Per-organization choices; no row means the defaults (the safe ones)."""

    __tablename__ = "identity_policy"
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), primary_key=True)
    # Whether the operator who creates an invite may see its link. Off: only
    # the owner, through their out-of-band contact, can set the password.
    invite_link_to_creator: Mapped[bool] = mapped_column(Boolean, default=False)
    operator_totp_required: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime]


class Invite(Base):
    __tablename__ = "invite"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domain.id"), index=True)
    owner_person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    suggested_local_part: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    mailbox_id: Mapped[int | None] = mapped_column(ForeignKey("mailbox.id"))  # set when used
    sent_to: Mapped[str | None]  # where the link went (an out-of-band address), for the record


class RecoveryCode(Base):
    __tablename__ = "recovery_code"
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailbox.id"), index=True)
    code_hash: Mapped[str]  # argon2id
    created_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]  # replaced by a fresh set


class ResetRequest(Base):
    """A helpdesk reset: requested, approved by another operator, executed, completed."""

    __tablename__ = "reset_request"
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailbox.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), default="requested")
    reason: Mapped[str] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[datetime]
    approved_by: Mapped[str | None] = mapped_column(String(64))
    approved_at: Mapped[datetime | None]
    executed_by: Mapped[str | None] = mapped_column(String(64))
    executed_at: Mapped[datetime | None]
    # The one-time temporary credential (SHA-256; 192 random bits) and its expiry.
    temp_credential_sha256: Mapped[str | None] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    cancelled_by: Mapped[str | None] = mapped_column(String(64))
    cancelled_at: Mapped[datetime | None]
    sent_to: Mapped[str | None]  # the out-of-band address the credential went to


class RecoveryEndpoint(Base):
    __tablename__ = "recovery_endpoint"
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailbox.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # email or phone
    value: Mapped[str]
    created_at: Mapped[datetime]
    verification_hash: Mapped[str | None]  # argon2id of the code sent to the endpoint
    verification_expires_at: Mapped[datetime | None]
    verification_attempts: Mapped[int] = mapped_column(default=0)
    verified_at: Mapped[datetime | None]
    reviewed_at: Mapped[datetime | None]
    removed_at: Mapped[datetime | None]


class MailboxCredential(Base):
    """When the credentials of a mailbox last changed or were revoked."""

    __tablename__ = "mailbox_credential"
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailbox.id"), primary_key=True)
    password_changed_at: Mapped[datetime | None]
    sessions_revoked_at: Mapped[datetime | None]


class MailboxSession(Base):
    """A mailbox owner's session on the self-service pages."""

    __tablename__ = "mailbox_session"
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailbox.id"), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    client: Mapped[str | None] = mapped_column(String(64))


class OperatorSession(Base):
    __tablename__ = "operator_session"
    id: Mapped[int] = mapped_column(primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operator.id"), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    last_seen_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    client: Mapped[str | None] = mapped_column(String(64))


class OperatorSetupLink(Base):
    """A one-time link through which an operator sets their own password (and TOTP)."""

    __tablename__ = "operator_setup_link"
    id: Mapped[int] = mapped_column(primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operator.id"), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class OperatorTOTP(Base):
    """An operator's RFC 6238 second factor; the seed encrypted with the data-folder key."""

    __tablename__ = "operator_totp"
    operator_id: Mapped[int] = mapped_column(ForeignKey("operator.id"), primary_key=True)
    secret_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    # The last time step accepted: a code is never accepted twice (RFC 6238 §5.2).
    last_step: Mapped[int] = mapped_column(BigInteger, default=0)


class MailboxExport(Base):
    """A Maildir tarball or mbox archive of a mailbox, made before deletion."""

    __tablename__ = "mailbox_export"
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int]  # no foreign key: the record outlives the purged mailbox
    address: Mapped[str]
    format: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class MailboxDeletion(Base):
    """A deletion with a grace period: the mailbox is suspended now and purged later."""

    __tablename__ = "mailbox_deletion"
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(index=True)  # no foreign key, as above
    address: Mapped[str]
    reason: Mapped[str] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[datetime]
    purge_after: Mapped[datetime]
    cancelled_by: Mapped[str | None] = mapped_column(String(64))
    cancelled_at: Mapped[datetime | None]
    purged_at: Mapped[datetime | None]
