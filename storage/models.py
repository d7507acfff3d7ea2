"""The control-plane schema (SQLAlchemy 2.x, typed declarative models).

Organization → Client → Domain → Mailbox, with people (owners, reachable out
of band) and operators (people with a login and scoped roles). Persistence
features (aliases, forwarding rules, catch-all, delegations, app passwords,
API tokens) each carry owner, purpose, created-by, created-at and expiry so
that policy can refuse the undocumented ones. The audit and routing logs are
append-only and hash-chained (see ``storage.chain``).

Secrets are never stored: only argon2id hashes of passwords and SHA-256 hashes
of high-entropy tokens.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python, naive UTC in the database (SQLite has no zones)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; pass an aware UTC time")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, int: Integer, str: String(255)}


class Organization(Base):
    __tablename__ = "organization"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(unique=True)
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger)
    used_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime]


class Client(Base):
    __tablename__ = "client"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
    name: Mapped[str]
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger)
    used_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime]
    organization: Mapped[Organization] = relationship()


class Domain(Base):
    __tablename__ = "domain"
    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id"), index=True)
    name: Mapped[str] = mapped_column(unique=True)
    state: Mapped[str] = mapped_column(String(16), default="active")
    external_forwarding: Mapped[bool] = mapped_column(Boolean, default=False)
    max_rule_days: Mapped[int] = mapped_column(default=90)
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger)
    used_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime]
    client: Mapped[Client] = relationship()


class Person(Base):
    __tablename__ = "person"
    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
    name: Mapped[str]
    contact_email: Mapped[str | None]  # out of band: never on a hosted domain
    contact_phone: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime]


class Role(Base):
    """A named function ("billing", "support") that owns mailboxes through its members."""

    __tablename__ = "owner_role"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
    name: Mapped[str]
    created_at: Mapped[datetime]


class RoleMember(Base):
    __tablename__ = "owner_role_member"
    role_id: Mapped[int] = mapped_column(ForeignKey("owner_role.id"), primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), primary_key=True)


class Operator(Base):
    __tablename__ = "operator"
    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str | None]  # argon2id; None until set through the setup link
    totp_secret_hash: Mapped[str | None]
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    person: Mapped[Person] = relationship()


class OperatorRole(Base):
    __tablename__ = "operator_role"
    __table_args__ = (UniqueConstraint("operator_id", "role", "domain_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operator.id"), index=True)
    # owner, domain-admin, helpdesk, approver, auditor; domain None means organization-wide
    role: Mapped[str] = mapped_column(String(32))
    domain_id: Mapped[int | None] = mapped_column(ForeignKey("domain.id"))


# An owner is exactly one of a person or a role (hard rule 1).
def _one_owner(table: str) -> CheckConstraint:
    return CheckConstraint(
        "(owner_person_id IS NULL) <> (owner_role_id IS NULL)", name=f"ck_{table}_one_owner"
    )


class Mailbox(Base):
    __tablename__ = "mailbox"
    __table_args__ = (UniqueConstraint("domain_id", "local_part"), _one_owner("mailbox"))
    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domain.id"), index=True)
    local_part: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="active")
    owner_person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    owner_role_id: Mapped[int | None] = mapped_column(ForeignKey("owner_role.id"))
    password_hash: Mapped[str | None]
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger)
    used_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime]
    domain: Mapped[Domain] = relationship()


class _Governed:
    """Columns every persistence feature carries."""

    owner_person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    owner_role_id: Mapped[int | None] = mapped_column(ForeignKey("owner_role.id"))
    purpose: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class Alias(_Governed, Base):
    __tablename__ = "alias"
    __table_args__ = (
        UniqueConstraint("domain_id", "local_part", "target"),
        _one_owner("alias"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domain.id"), index=True)
    local_part: Mapped[str] = mapped_column(String(64))
    target: Mapped[str]
    external: Mapped[bool] = mapped_column(Boolean, default=False)


class ForwardingRule(_Governed, Base):
    __tablename__ = "forwarding_rule"
    __table_args__ = (_one_owner("forwarding_rule"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailbox.id"), index=True)
    target: Mapped[str]
    external: Mapped[bool] = mapped_column(Boolean, default=True)
    keep_copy: Mapped[bool] = mapped_column(Boolean, default=True)


class CatchAll(_Governed, Base):
    __tablename__ = "catch_all"
    __table_args__ = (_one_owner("catch_all"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domain.id"), index=True)
    target: Mapped[str]


class Delegation(_Governed, Base):
    __tablename__ = "delegation"
    __table_args__ = (_one_owner("delegation"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailbox.id"), index=True)
    delegate_mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailbox.id"))


class AppPassword(Base):
    __tablename__ = "app_password"
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailbox.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str]
    scopes: Mapped[str] = mapped_column(String(64), default="imap,smtp")
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class ApiToken(Base):
    __tablename__ = "api_token"
    id: Mapped[int] = mapped_column(primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operator.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class OutboundMessage(Base):
    """A message waiting in the durable spool for remote delivery."""

    __tablename__ = "outbound_message"
    id: Mapped[int] = mapped_column(primary_key=True)
    queue_id: Mapped[str] = mapped_column(String(32), unique=True)
    mail_from: Mapped[str]
    recipients: Mapped[str] = mapped_column(Text)  # JSON list
    spool_path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)


class ChainHead(Base):
    """The last entry of each hash chain; locked while appending so entries serialize."""

    __tablename__ = "chain_head"
    name: Mapped[str] = mapped_column(String(16), primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger, default=0)
    last_hash: Mapped[str] = mapped_column(String(64))


class AuditEntry(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(index=True)
    before: Mapped[str | None] = mapped_column(Text)  # canonical JSON
    after: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class RoutingEntry(Base):
    __tablename__ = "routing_log"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    session: Mapped[str] = mapped_column(String(32))
    client_ip: Mapped[str | None] = mapped_column(String(64))
    helo: Mapped[str | None]
    mail_from: Mapped[str | None]
    recipient: Mapped[str] = mapped_column(index=True)
    decision: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(48))
    rule_ids: Mapped[str] = mapped_column(Text, default="")
    reply: Mapped[str] = mapped_column(String(255))
    message_id: Mapped[str | None] = mapped_column(Text)
    queue_id: Mapped[str | None] = mapped_column(String(32), index=True)
    trace: Mapped[str] = mapped_column(Text, default="[]")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class MailFolder(Base):
    """One IMAP folder of a mailbox; its Maildir++ directory is the source of truth.

    ``uid_validity``/``uid_next`` and ``highest_modseq`` (RFC 7162) live here so
    UIDs stay persistent and strictly ascending; the rows below are a cache of
    the files on disk that ``storage.mailindex.sync`` rebuilds.
    """

    __tablename__ = "mail_folder"
    __table_args__ = (UniqueConstraint("mailbox_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailbox.id"), index=True)
    name: Mapped[str] = mapped_column(String(512))  # IMAP name, Unicode, "." as delimiter
    uid_validity: Mapped[int] = mapped_column(BigInteger)
    uid_next: Mapped[int] = mapped_column(BigInteger, default=1)
    highest_modseq: Mapped[int] = mapped_column(BigInteger, default=1)
    subscribed: Mapped[bool] = mapped_column(Boolean, default=True)
    special_use: Mapped[str | None] = mapped_column(String(16))


class MailMessage(Base):
    __tablename__ = "mail_message"
    __table_args__ = (UniqueConstraint("folder_id", "uid"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    folder_id: Mapped[int] = mapped_column(ForeignKey("mail_folder.id", ondelete="CASCADE"))
    uid: Mapped[int] = mapped_column(BigInteger)
    base_name: Mapped[str] = mapped_column(String(255), index=True)  # file name before ":2,"
    flags: Mapped[str] = mapped_column(Text, default="")  # space-separated flags and keywords
    modseq: Mapped[int] = mapped_column(BigInteger, default=1)
    size: Mapped[int] = mapped_column(BigInteger)  # bytes on disk (LF line endings)
    rfc822_size: Mapped[int] = mapped_column(BigInteger)  # as served over IMAP (CRLF)
    internal_date: Mapped[datetime]


class MailSummary(Base):
    """What FETCH and SEARCH derive from a message file, kept across restarts.

    Opaque to storage (``imap.message_cache`` writes and reads it), keyed
    like the index row it belongs to and deleted with it. A table of its own
    rather than a column of ``mail_message``: the rows every folder sync
    reads stay narrow (a column of a kilobyte or two made SQLite's query of
    a folder's changed rows four times slower).
    """

    __tablename__ = "mail_summary"
    __table_args__ = (
        ForeignKeyConstraint(
            ["folder_id", "uid"], ["mail_message.folder_id", "mail_message.uid"], ondelete="CASCADE"
        ),
    )
    folder_id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class UnpublishedCopy(Base):
    """A delivered copy on record whose rename into ``new/`` may not be durable yet.

    Inserted in the delivery's own transaction, deleted once the copy's
    directory has been fsynced (``storage.publish``). After a crash the rows
    of this node say which files in ``tmp/`` were promised to a client and
    must still be published.
    """

    __tablename__ = "unpublished_copy"
    name: Mapped[str] = mapped_column(primary_key=True)  # the Maildir file name: unique
    node: Mapped[str] = mapped_column(String(64), index=True)
    maildir: Mapped[str] = mapped_column(String(1024))  # relative to the mail root
    at: Mapped[datetime]
