"""Organizations, clients, domains, people, roles, operators and mailboxes.

Each change starts with ``authorize``: the acting operator's roles are
checked against ``policy.permissions`` before anything is touched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from admin.services import NotFound, ServiceError
from admin.services.permissions import authorize
from policy.addresses import Address, AddressError, normalize_domain
from policy.governance import DEFAULT_MAX_RULE_DAYS
from policy.permissions import Action
from policy.routing import DomainState, MailboxState
from storage import audit
from storage.models import (
    Client,
    Domain,
    Mailbox,
    Operator,
    OperatorRole,
    Organization,
    Person,
    Role,
    RoleMember,
)

OPERATOR_ROLES = frozenset({"owner", "domain-admin", "helpdesk", "approver", "auditor"})
# RFC 2142 mailbox names and names that phishers love; never handed to a user.
RESERVED_LOCAL_PARTS = frozenset(
    {"postmaster", "abuse", "hostmaster", "webmaster", "security", "noc", "mailer-daemon",
     "root", "admin", "administrator", "ssl-admin"}
)  # fmt: skip
_LOCAL_PART = re.compile(r"^[a-z0-9](?:[a-z0-9._+-]{0,62}[a-z0-9])?$")
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")


@dataclass(frozen=True, slots=True)
class Owner:
    """Who owns a mailbox or rule: exactly one of a person or a role."""

    person_id: int | None = None
    role_id: int | None = None

    def __post_init__(self) -> None:
        if (self.person_id is None) == (self.role_id is None):
            raise ServiceError("an owner is required: name exactly one person or one role")


def _flush(session: Session, what: str) -> None:
    try:
        session.flush()
    except IntegrityError as exc:
        raise ServiceError(f"{what} already exists or conflicts with an existing record") from exc


def get_organization(session: Session, name: str) -> Organization:
    org = session.scalars(select(Organization).where(Organization.name == name)).first()
    if org is None:
        raise NotFound(f"no organization named {name!r}")
    return org


def default_organization(session: Session) -> Organization:
    orgs = session.scalars(select(Organization).order_by(Organization.id).limit(2)).all()
    if len(orgs) != 1:
        raise ServiceError("name the organization (--org): there is not exactly one")
    return orgs[0]


def create_organization(
    session: Session, *, actor: str, now: datetime, name: str, quota_bytes: int | None = None
) -> Organization:
    authorize(session, actor, Action.ORGANIZATION_CREATE)
    org = Organization(name=name, quota_bytes=quota_bytes, used_bytes=0, created_at=now)
    session.add(org)
    _flush(session, f"organization {name!r}")
    audit.record(session, actor=actor, action="organization.create", target=f"organization:{name}",
                 now=now, after=audit.snapshot(org))  # fmt: skip
    return org


def set_quota(
    session: Session,
    *,
    actor: str,
    now: datetime,
    row: Organization | Client | Domain | Mailbox,
    quota_bytes: int | None,
) -> None:
    kind = type(row).__tablename__
    domain = row if isinstance(row, Domain) else row.domain if isinstance(row, Mailbox) else None
    authorize(session, actor, Action(f"{kind}.quota"), domain)
    if quota_bytes is not None and quota_bytes < 0:
        raise ServiceError("a quota cannot be negative")
    before = audit.snapshot(row)
    row.quota_bytes = quota_bytes
    # Name the target the way its create entry does, so one query finds its history.
    name = f"{row.local_part}@{row.domain.name}" if isinstance(row, Mailbox) else row.name
    audit.record(session, actor=actor, action=f"{kind}.quota", target=f"{kind}:{name}",
                 now=now, before=before, after=audit.snapshot(row))  # fmt: skip


def get_client(session: Session, name: str) -> Client:
    client = session.scalars(select(Client).where(Client.name == name)).first()
    if client is None:
        raise NotFound(f"no client named {name!r}")
    return client


def create_client(
    session: Session,
    *,
    actor: str,
    now: datetime,
    organization: Organization,
    name: str,
    quota_bytes: int | None = None,
) -> Client:
    authorize(session, actor, Action.CLIENT_CREATE)
    client = Client(organization_id=organization.id, name=name, quota_bytes=quota_bytes,
                    used_bytes=0, created_at=now)  # fmt: skip
    session.add(client)
    _flush(session, f"client {name!r}")
    audit.record(session, actor=actor, action="client.create", target=f"client:{name}",
                 now=now, after=audit.snapshot(client))  # fmt: skip
    return client


def get_domain(session: Session, name: str) -> Domain:
    try:
        name = normalize_domain(name)
    except AddressError as exc:
        raise ServiceError(str(exc)) from exc
    domain = session.scalars(select(Domain).where(Domain.name == name)).first()
    if domain is None:
        raise NotFound(f"no domain named {name!r}")
    return domain


def create_domain(
    session: Session,
    *,
    actor: str,
    now: datetime,
    client: Client,
    name: str,
    quota_bytes: int | None = None,
) -> Domain:
    authorize(session, actor, Action.DOMAIN_CREATE)
    try:
        name = normalize_domain(name)
    except AddressError as exc:
        raise ServiceError(str(exc)) from exc
    domain = Domain(client_id=client.id, name=name, state=DomainState.ACTIVE.value,
                    external_forwarding=False, max_rule_days=DEFAULT_MAX_RULE_DAYS,
                    quota_bytes=quota_bytes, used_bytes=0, created_at=now)  # fmt: skip
    session.add(domain)
    _flush(session, f"domain {name!r}")
    audit.record(session, actor=actor, action="domain.create", target=f"domain:{name}",
                 now=now, after=audit.snapshot(domain))  # fmt: skip
    return domain


def set_domain_policy(
    session: Session,
    *,
    actor: str,
    now: datetime,
    domain: Domain,
    external_forwarding: bool | None = None,
    max_rule_days: int | None = None,
) -> Domain:
    authorize(session, actor, Action.DOMAIN_POLICY, domain)
    before = audit.snapshot(domain)
    if external_forwarding is not None:
        domain.external_forwarding = external_forwarding
    if max_rule_days is not None:
        if not 1 <= max_rule_days <= 365:
            raise ServiceError("the maximum rule lifetime must be between 1 and 365 days")
        domain.max_rule_days = max_rule_days
    audit.record(session, actor=actor, action="domain.policy", target=f"domain:{domain.name}",
                 now=now, before=before, after=audit.snapshot(domain))  # fmt: skip
    return domain


def set_domain_state(
    session: Session, *, actor: str, now: datetime, domain: Domain, state: str, reason: str
) -> Domain:
    # Suspending only takes access away (an offboarding step a domain-admin
    # may take); activating or freezing is the agency's call.
    suspend = state == DomainState.SUSPENDED
    authorize(session, actor, Action.DOMAIN_SUSPEND if suspend else Action.DOMAIN_STATE, domain)
    try:
        DomainState(state)
    except ValueError as exc:
        raise ServiceError(f"unknown domain state {state!r}") from exc
    if not reason.strip():
        raise ServiceError("a reason is required to change a domain's state")
    before = audit.snapshot(domain)
    domain.state = state
    audit.record(session, actor=actor, action="domain.state", target=f"domain:{domain.name}",
                 now=now, before=before, after=audit.snapshot(domain), reason=reason)  # fmt: skip
    return domain


def hosted_domain_names(session: Session) -> set[str]:
    return set(session.scalars(select(Domain.name)))


def create_person(
    session: Session,
    *,
    actor: str,
    now: datetime,
    organization: Organization,
    name: str,
    contact_email: str | None = None,
    contact_phone: str | None = None,
) -> Person:
    authorize(session, actor, Action.PERSON_CREATE)
    if not name.strip():
        raise ServiceError("a person needs a name")
    if contact_email:
        try:
            contact = Address.parse(contact_email)
        except AddressError as exc:
            raise ServiceError(f"invalid contact email: {exc}") from exc
        if contact.domain in hosted_domain_names(session):
            # Out-of-band means out of our hands: a contact on a domain we host
            # is reachable by whoever controls that domain (DESIGN hard rule 4).
            raise ServiceError("the contact email must be outside the domains hosted here")
        contact_email = str(contact)
    if not contact_email and not contact_phone:
        raise ServiceError("a person needs an out-of-band contact (email or phone)")
    person = Person(organization_id=organization.id, name=name.strip(),
                    contact_email=contact_email, contact_phone=contact_phone,
                    created_at=now)  # fmt: skip
    session.add(person)
    _flush(session, f"person {name!r}")
    audit.record(session, actor=actor, action="person.create", target=f"person:{person.id}",
                 now=now, after=audit.snapshot(person))  # fmt: skip
    return person


def find_person(session: Session, ref: str) -> Person:
    """A person by id or exact name (names need not be unique; ids are)."""
    if ref.isdigit():
        person = session.get(Person, int(ref))
        if person is not None:
            return person
    people = session.scalars(select(Person).where(Person.name == ref)).all()
    if len(people) == 1:
        return people[0]
    if not people:
        raise NotFound(f"no person {ref!r}")
    raise ServiceError(f"{len(people)} people are named {ref!r}; use the id")


def create_role(
    session: Session, *, actor: str, now: datetime, organization: Organization, name: str,
    members: list[Person],
) -> Role:  # fmt: skip
    authorize(session, actor, Action.ROLE_CREATE)
    if not members:
        raise ServiceError("a role that owns mail needs at least one assigned person")
    role = Role(organization_id=organization.id, name=name, created_at=now)
    session.add(role)
    _flush(session, f"role {name!r}")
    for person in members:
        session.add(RoleMember(role_id=role.id, person_id=person.id))
    after = audit.snapshot(role) or {}
    after["members"] = [p.id for p in members]
    audit.record(session, actor=actor, action="role.create", target=f"role:{name}", now=now,
                 after=after)  # fmt: skip
    return role


def find_role(session: Session, name: str) -> Role:
    role = session.scalars(select(Role).where(Role.name == name)).first()
    if role is None:
        raise NotFound(f"no role named {name!r}")
    return role


def create_operator(
    session: Session,
    *,
    actor: str,
    now: datetime,
    person: Person,
    username: str,
    roles: list[tuple[str, Domain | None]],
) -> Operator:
    authorize(session, actor, Action.OPERATOR_CREATE)
    if not _USERNAME.match(username):
        raise ServiceError("operator usernames are 2-63 characters of a-z 0-9 . _ -")
    for role, domain in roles:
        if role not in OPERATOR_ROLES:
            raise ServiceError(f"unknown role {role!r}; one of {', '.join(sorted(OPERATOR_ROLES))}")
        if role == "domain-admin" and domain is None:
            raise ServiceError("the domain-admin role is scoped: name its domain")
    operator = Operator(person_id=person.id, username=username, active=True, created_at=now)
    session.add(operator)
    _flush(session, f"operator {username!r}")
    for role, domain in roles:
        session.add(OperatorRole(operator_id=operator.id, role=role,
                                 domain_id=domain.id if domain else None))  # fmt: skip
    after = audit.snapshot(operator) or {}
    after["roles"] = [f"{r}@{d.name}" if d else r for r, d in roles]
    audit.record(session, actor=actor, action="operator.create", target=f"operator:{username}",
                 now=now, after=after)  # fmt: skip
    return operator


def find_operator(session: Session, username: str) -> Operator:
    operator = session.scalars(select(Operator).where(Operator.username == username)).first()
    if operator is None or not operator.active:
        raise NotFound(f"no active operator {username!r}")
    return operator


def validate_local_part(local_part: str) -> str:
    local_part = local_part.strip().lower()
    if not _LOCAL_PART.match(local_part) or ".." in local_part:
        raise ServiceError(
            "a local part is 1-64 characters of a-z 0-9 . _ + -, starting and ending "
            "with a letter or digit"
        )
    return local_part


def create_mailbox(
    session: Session,
    *,
    actor: str,
    now: datetime,
    domain: Domain,
    local_part: str,
    owner: Owner,
    quota_bytes: int | None = None,
    state: MailboxState = MailboxState.ACTIVE,
    allow_reserved: bool = False,
) -> Mailbox:
    authorize(session, actor, Action.MAILBOX_CREATE, domain)
    local_part = validate_local_part(local_part)
    if local_part in RESERVED_LOCAL_PARTS and not allow_reserved:
        raise ServiceError(f"{local_part!r} is a reserved name (RFC 2142); use --allow-reserved")
    mailbox = Mailbox(domain_id=domain.id, local_part=local_part, state=state.value,
                      owner_person_id=owner.person_id, owner_role_id=owner.role_id,
                      quota_bytes=quota_bytes, used_bytes=0, created_at=now)  # fmt: skip
    session.add(mailbox)
    _flush(session, f"mailbox {local_part}@{domain.name}")
    audit.record(session, actor=actor, action="mailbox.create",
                 target=f"mailbox:{local_part}@{domain.name}", now=now,
                 after=audit.snapshot(mailbox))  # fmt: skip
    return mailbox


def get_mailbox(session: Session, address: str) -> Mailbox:
    try:
        addr = Address.parse(address)
    except AddressError as exc:
        raise ServiceError(str(exc)) from exc
    mailbox = session.scalars(
        select(Mailbox).join(Domain, Mailbox.domain_id == Domain.id)
        .where(Domain.name == addr.domain, Mailbox.local_part == addr.local)
    ).first()  # fmt: skip
    if mailbox is None:
        raise NotFound(f"no mailbox {address!r}")
    return mailbox


def set_mailbox_state(
    session: Session, *, actor: str, now: datetime, mailbox: Mailbox, state: str, reason: str
) -> Mailbox:
    # Suspending only takes access away, so the helpdesk may; giving it back may not.
    suspend = state == MailboxState.SUSPENDED
    action = Action.MAILBOX_SUSPEND if suspend else Action.MAILBOX_ACTIVATE
    authorize(session, actor, action, mailbox.domain)
    try:
        MailboxState(state)
    except ValueError as exc:
        raise ServiceError(f"unknown mailbox state {state!r}") from exc
    if not reason.strip():
        raise ServiceError("a reason is required to change a mailbox's state")
    before = audit.snapshot(mailbox)
    mailbox.state = state
    audit.record(session, actor=actor, action="mailbox.state",
                 target=f"mailbox:{mailbox.local_part}@{mailbox.domain.name}", now=now,
                 before=before, after=audit.snapshot(mailbox), reason=reason)  # fmt: skip
    return mailbox
