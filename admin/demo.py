"""A small, fully governed demo agency for ``mailward init --demo``, tests and benchmarks.

Everything goes through the same service functions as the CLI, so the demo is
audited like any other change and cannot break a rule the services enforce:
every mailbox and alias has an owner, people are reachable out of band on
domains Mailward does not host (``example.org``, RFC 2606), and the only
persistence feature is one documented internal alias.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

from sqlalchemy import select

from admin.notify import Delivery
from admin.services import ServiceError
from admin.services import directory as d
from admin.services.identity import IdentityEnv
from admin.services.invites import create_invite
from admin.services.operators import create_setup_link
from admin.services.rules import add_alias
from storage.db import Database
from storage.models import Organization

DEMO_ORGANIZATION = "Demo Agency"
INIT_ACTOR = "system:init"
GIB = 1024**3
MIB = 1024**2

# name -> (contact email, contact phone); all out of band.
_PEOPLE = {
    "Olivia Park": ("olivia.park@example.org", "+1 555 0100"),
    "Alice Martin": ("alice.martin@example.org", "+1 555 0101"),
    "Bob Chen": ("bob.chen@example.org", None),
    "Carol Diaz": ("carol.diaz@example.org", "+1 555 0103"),
    "Dan Evans": ("dan.evans@example.net", "+1 555 0104"),
    "Grace Liu": ("grace.liu@example.org", None),
}
_SUPPORT_ROLE = "Support desk"
# username -> (person, [(role, domain name or None)])
_OPERATORS = {
    "admin": ("Olivia Park", [("owner", None)]),
    "helpdesk": ("Carol Diaz", [("helpdesk", None)]),
    "approver": ("Dan Evans", [("approver", None)]),
    "globex-admin": ("Grace Liu", [("domain-admin", "globex.test")]),
}
# address -> (owner person or None, owner role or None)
_MAILBOXES = {
    "alice@acme.test": ("Alice Martin", None),
    "bob@acme.test": ("Bob Chen", None),
    "support@acme.test": (None, _SUPPORT_ROLE),
    "grace@globex.test": ("Grace Liu", None),
}


@dataclass(frozen=True, slots=True)
class DemoSummary:
    organization: str
    clients: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)
    people: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    operators: list[str] = field(default_factory=list)
    mailboxes: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


# The newcomer of the demo: invited, not yet set up. ``mailward init --demo``
# leaves the invite in the outbox so that they can be set up in the browser.
DEMO_INVITEE = ("Erin Ford", "erin.ford@example.org", "erin")
DEMO_INVITE_DOMAIN = "acme.test"
DEMO_OPERATOR = "admin"


@dataclass(frozen=True, slots=True)
class DemoLinks:
    invite: str  # the outbox file holding the invite (its name, not the link)
    operator_setup: str


def seed_demo_identity(db: Database, env: IdentityEnv, now: datetime) -> DemoLinks:
    """A pending invite for the demo newcomer and a setup link for the demo owner operator.

    Both go through the notification channels like any other (the file sink
    in a fresh data folder); nothing secret is returned, only where it went.
    """
    name, email, local_part = DEMO_INVITEE
    with db.session() as session:
        org = session.scalars(
            select(Organization).where(Organization.name == DEMO_ORGANIZATION)
        ).one()
        person = d.create_person(session, actor=INIT_ACTOR, now=now, organization=org, name=name,
                                 contact_email=email)  # fmt: skip
        issued = create_invite(session, env, operator=None, system_actor=INIT_ACTOR, now=now,
                               domain=d.get_domain(session, DEMO_INVITE_DOMAIN), owner=person,
                               local_part=local_part)  # fmt: skip
        setup = create_setup_link(session, env, actor=INIT_ACTOR, now=now,
                                  operator=d.find_operator(session, DEMO_OPERATOR))  # fmt: skip
    return DemoLinks(invite=_where(issued.deliveries), operator_setup=_where(setup.deliveries))


def _where(deliveries: list[Delivery]) -> str:
    return ", ".join(f"{x.channel}:{x.reference}" for x in deliveries)


def is_seeded(db: Database) -> bool:
    with db.session() as session:
        return (
            session.scalars(
                select(Organization.id).where(Organization.name == DEMO_ORGANIZATION)
            ).first()
            is not None
        )


def seed_demo(db: Database, now: datetime, *, actor: str = INIT_ACTOR) -> DemoSummary:
    """Create the demo agency in one transaction; refused unless the control plane is empty."""
    with db.session() as session:
        existing = session.scalars(select(Organization.name).limit(1)).first()
        if existing is not None:
            raise ServiceError(
                f"the demo is seeded only into an empty control plane (found {existing!r})"
            )
        org = d.create_organization(
            session, actor=actor, now=now, name=DEMO_ORGANIZATION, quota_bytes=GIB
        )
        acme = d.create_client(
            session, actor=actor, now=now, organization=org, name="Acme", quota_bytes=512 * MIB
        )
        globex = d.create_client(session, actor=actor, now=now, organization=org, name="Globex")
        domains = {
            "acme.test": d.create_domain(
                session, actor=actor, now=now, client=acme, name="acme.test"
            ),
            "globex.test": d.create_domain(
                session, actor=actor, now=now, client=globex, name="globex.test"
            ),
        }
        # People after domains: their contacts are checked against the hosted domains.
        people = {
            name: d.create_person(
                session,
                actor=actor,
                now=now,
                organization=org,
                name=name,
                contact_email=email,
                contact_phone=phone,
            )
            for name, (email, phone) in _PEOPLE.items()
        }
        support = d.create_role(
            session,
            actor=actor,
            now=now,
            organization=org,
            name=_SUPPORT_ROLE,
            members=[people["Carol Diaz"], people["Dan Evans"]],
        )
        for username, (person, roles) in _OPERATORS.items():
            d.create_operator(
                session,
                actor=actor,
                now=now,
                person=people[person],
                username=username,
                roles=[(r, domains[n] if n else None) for r, n in roles],
            )
        for address, (person, _role) in _MAILBOXES.items():
            local, _, domain = address.partition("@")
            owner = d.Owner(person_id=people[person].id) if person else d.Owner(role_id=support.id)
            d.create_mailbox(
                session, actor=actor, now=now, domain=domains[domain], local_part=local, owner=owner
            )
        add_alias(
            session,
            actor=actor,
            now=now,
            domain=domains["acme.test"],
            local_part="info",
            target="support@acme.test",
            owner=d.Owner(role_id=support.id),
            purpose="Public contact address on the Acme website, read by the support desk",
            expires_at=None,
        )
    return DemoSummary(
        organization=DEMO_ORGANIZATION,
        clients=["Acme", "Globex"],
        domains=list(domains),
        people=[f"{name} <{email or phone}>" for name, (email, phone) in _PEOPLE.items()],
        roles=[f"{_SUPPORT_ROLE} (Carol Diaz, Dan Evans)"],
        operators=[
            f"{u} ({', '.join(f'{r}@{n}' if n else r for r, n in roles)})"
            for u, (_, roles) in _OPERATORS.items()
        ],
        mailboxes=[f"{a} (owner {p or r})" for a, (p, r) in _MAILBOXES.items()],
        aliases=["info@acme.test -> support@acme.test (owner Support desk)"],
    )
