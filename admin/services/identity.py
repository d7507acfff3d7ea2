"""What every identity service shares: the environment, role checks, credentials.

The identity services (``invites``, ``recovery``, ``resets``,
``app_passwords``, ``operators``, ``offboarding``) follow the pattern of
``admin.services``: an open session, the actor, ``now``, the rule from
``policy.identity``, rows changed and the audit entry written in one
transaction. Besides that they need an ``IdentityEnv``: the notifier that
reaches people out of band, the public URL links point to, the bundled list
of common passwords and the box that seals TOTP seeds.

Secrets handled here (passwords, recovery codes, temporary credentials,
tokens) are hashed before anything is stored, and only ever returned to the
caller that shows them once to their owner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from admin.notify import Delivery, Notification, Notifier, Recipient
from admin.services import ServiceError
from admin.services.totp import SecretBox
from policy.identity import (
    OperatorFacts,
    PasswordCheck,
    check_password,
    may,
    parse_common_passwords,
)
from storage import audit
from storage.models import (
    AppPassword,
    Domain,
    Mailbox,
    Operator,
    OperatorRole,
    Organization,
    Person,
    RoleMember,
)
from storage.models_identity import IdentityPolicy, MailboxCredential, MailboxSession

COMMON_PASSWORDS_FILE = "common-passwords.txt"


class Forbidden(ServiceError):
    """The acting operator lacks the role the change needs."""


class LinkClosed(ServiceError):
    """A one-time link that cannot be used (any more); the message says why."""


@cache
def common_passwords() -> frozenset[str]:
    """The bundled list ``admin/data/common-passwords.txt``, loaded once."""
    text = resources.files("admin").joinpath("data", COMMON_PASSWORDS_FILE).read_text()
    return parse_common_passwords(text.splitlines())


@dataclass(frozen=True)
class IdentityEnv:
    notifier: Notifier
    public_url: str  # where links point, e.g. https://mail.example.net:8025
    box: SecretBox | None = None  # needed only for operator TOTP
    common: frozenset[str] = field(default_factory=common_passwords, repr=False)

    def link(self, path: str) -> str:
        return self.public_url.rstrip("/") + path


# -- operators and roles ---------------------------------------------------------


def actor_of(operator: Operator) -> str:
    return f"operator:{operator.username}"


def operator_facts(session: Session, operator: Operator) -> OperatorFacts:
    roles = session.execute(
        select(OperatorRole.role, OperatorRole.domain_id).where(
            OperatorRole.operator_id == operator.id
        )
    ).all()
    return OperatorFacts(operator.username, operator.active, frozenset((r, d) for r, d in roles))


def require(
    session: Session, operator: Operator, roles: tuple[str, ...], domain_id: int | None, what: str
) -> OperatorFacts:
    facts = operator_facts(session, operator)
    permission = may(facts, roles, domain_id, what)
    if not permission:
        raise Forbidden(permission.reason)
    return facts


def organization_of(session: Session, domain: Domain) -> Organization:
    return domain.client.organization


def identity_policy(session: Session, organization_id: int) -> IdentityPolicy:
    """The organization's identity policy row (the defaults when none was saved)."""
    row = session.get(IdentityPolicy, organization_id)
    if row is None:
        return IdentityPolicy(
            organization_id=organization_id,
            invite_link_to_creator=False,
            operator_totp_required=False,
        )
    return row


def set_identity_policy(
    session: Session,
    *,
    operator: Operator,
    now: datetime,
    organization: Organization,
    invite_link_to_creator: bool | None = None,
    operator_totp_required: bool | None = None,
) -> IdentityPolicy:
    require(session, operator, ("owner",), None, "changing the identity policy")
    row = session.get(IdentityPolicy, organization.id)
    before = audit.snapshot(row)
    if row is None:
        row = IdentityPolicy(
            organization_id=organization.id,
            invite_link_to_creator=False,
            operator_totp_required=False,
            updated_at=now,
        )
        session.add(row)
    if invite_link_to_creator is not None:
        row.invite_link_to_creator = invite_link_to_creator
    if operator_totp_required is not None:
        row.operator_totp_required = operator_totp_required
    row.updated_at = now
    audit.record(
        session,
        actor=actor_of(operator),
        action="identity.policy",
        target=f"organization:{organization.name}",
        now=now,
        before=before,
        after=audit.snapshot(row),
    )
    return row


# -- mailboxes and their credentials -------------------------------------------------


def address_of(mailbox: Mailbox) -> str:
    return f"{mailbox.local_part}@{mailbox.domain.name}"


def mailbox_target(mailbox: Mailbox) -> str:
    return f"mailbox:{address_of(mailbox)}"


def check_new_password(env: IdentityEnv, password: str, address: str) -> None:
    verdict: PasswordCheck = check_password(password, address=address, common=env.common)
    if not verdict.allowed:
        raise ServiceError(str(verdict))


def _credential_row(session: Session, mailbox_id: int) -> MailboxCredential:
    row = session.get(MailboxCredential, mailbox_id)
    if row is None:
        row = MailboxCredential(mailbox_id=mailbox_id)
        session.add(row)
    return row


def set_mailbox_password(
    session: Session,
    *,
    actor: str,
    now: datetime,
    mailbox: Mailbox,
    password_hash: str | None,
    action: str,
    reason: str | None = None,
) -> None:
    """Store a new lasting password hash (None clears it); the audit shows only "<set>"."""
    before = audit.snapshot(mailbox)
    mailbox.password_hash = password_hash
    _credential_row(session, mailbox.id).password_changed_at = now
    audit.record(
        session,
        actor=actor,
        action=action,
        target=mailbox_target(mailbox),
        now=now,
        before=before,
        after=audit.snapshot(mailbox),
        reason=reason,
    )


def revoke_access(
    session: Session,
    *,
    actor: str,
    now: datetime,
    mailbox: Mailbox,
    reason: str,
    app_passwords: bool = True,
    keep_session_id: int | None = None,
) -> dict[str, Any]:
    """End every web session (and, by default, every app password) of a mailbox."""
    sessions = update(MailboxSession).where(
        MailboxSession.mailbox_id == mailbox.id, MailboxSession.revoked_at.is_(None)
    )
    if keep_session_id is not None:
        sessions = sessions.where(MailboxSession.id != keep_session_id)
    ended = session.execute(sessions.values(revoked_at=now)).rowcount  # type: ignore[attr-defined]
    revoked: list[int] = []
    if app_passwords:
        revoked = list(
            session.scalars(
                select(AppPassword.id).where(
                    AppPassword.mailbox_id == mailbox.id, AppPassword.revoked_at.is_(None)
                )
            )
        )
        if revoked:
            session.execute(
                update(AppPassword).where(AppPassword.id.in_(revoked)).values(revoked_at=now)
            )
    _credential_row(session, mailbox.id).sessions_revoked_at = now
    summary = {"sessions_ended": ended, "app_passwords_revoked": revoked}
    if ended or revoked:  # an entry for what was actually taken away, not for a no-op
        audit.record(
            session,
            actor=actor,
            action="mailbox.revoke-access",
            target=mailbox_target(mailbox),
            now=now,
            after=summary,
            reason=reason,
        )
    return summary


# -- reaching people out of band --------------------------------------------------


def recipient(person: Person) -> Recipient:
    return Recipient(person.name, person.contact_email, person.contact_phone)


def owner_recipients(session: Session, mailbox: Mailbox) -> list[Recipient]:
    """Every person behind the mailbox's owner (a person, or the members of a role)."""
    if mailbox.owner_person_id is not None:
        person = session.get(Person, mailbox.owner_person_id)
        return [recipient(person)] if person else []
    people = session.scalars(
        select(Person)
        .join(RoleMember, RoleMember.person_id == Person.id)
        .where(RoleMember.role_id == mailbox.owner_role_id)
        .order_by(Person.id)
    )
    return [recipient(p) for p in people]


def hosted_domains(session: Session) -> frozenset[str]:
    return frozenset(session.scalars(select(Domain.name)))


def notify(
    session: Session,
    env: IdentityEnv,
    *,
    actor: str,
    now: datetime,
    kind: str,
    to: Recipient,
    subject: str,
    body: str,
    about: str,
) -> list[Delivery]:
    """Send a notification and audit where it went (never what it said)."""
    note = Notification(
        kind=kind,
        recipient=to,
        subject=subject,
        body=body,
        about=about,
        forbidden_domains=hosted_domains(session),
    )
    deliveries = env.notifier.send(note, session)
    audit.record(
        session,
        actor=actor,
        action=f"notify.{kind}",
        target=about,
        now=now,
        after={"to": str(to), "via": [f"{d.channel}:{d.reference}" for d in deliveries]},
    )
    return deliveries
