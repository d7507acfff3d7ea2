"""The JSON API's role checks over real HTTP: reads need a role, refusals are 403 and inert."""

from __future__ import annotations

import contextlib
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from admin.services import directory as d
from storage.models import AuditEntry, Domain, Mailbox
from tests.admin.conftest import ACTOR, IdentityWorld


def add_staff(world: IdentityWorld) -> None:
    """Mailboxes on both domains, a domain-admin of other.test and an operator with no role."""

    def add(s: Session) -> None:
        now = world.clock()
        org = d.default_organization(s)
        erin = d.Owner(person_id=world.ids["erin"])
        for address in ("bob@acme.test", "kim@other.test"):
            local, _, domain = address.partition("@")
            d.create_mailbox(
                s,
                actor=ACTOR,
                now=now,
                domain=d.get_domain(s, domain),
                local_part=local,
                owner=erin,
            )
        for username, roles in (
            ("other-admin", [("domain-admin", d.get_domain(s, "other.test"))]),
            ("drifter", []),
        ):
            person = d.create_person(
                s,
                actor=ACTOR,
                now=now,
                organization=org,
                name=username,
                contact_email=f"{username}@example.org",
            )
            d.create_operator(
                s, actor=ACTOR, now=now, person=person, username=username, roles=roles
            )

    world.tx(add)


def state(world: IdentityWorld) -> tuple[Any, ...]:
    def read(s: Session) -> tuple[Any, ...]:
        return (
            s.scalar(select(func.max(AuditEntry.id))),
            tuple(s.execute(select(Mailbox.local_part, Mailbox.state).order_by(Mailbox.id))),
            tuple(s.execute(select(Domain.name, Domain.state).order_by(Domain.id))),
        )

    return world.tx(read)


async def test_reads_need_a_role(identity_world: IdentityWorld) -> None:
    """Ensure an auditor reads over the API and an operator without a role gets 403."""
    world = identity_world
    add_staff(world)
    async with world.api("auditor") as api:
        for path in ("/api/invites", "/api/resets", "/api/app-passwords", "/api/sessions"):
            assert (await api.get(path)).status_code == 200, path
    async with world.api("drifter") as api:
        assert (await api.get("/api/whoami")).json() == {"username": "drifter"}
        listed = await api.get("/api/invites")
        assert listed.status_code == 403
        assert listed.json()["error"].startswith("operator drifter (no role) may not read")


async def test_refused_changes_are_403_and_change_nothing(identity_world: IdentityWorld) -> None:
    """Ensure auditor, helpdesk and a domain-admin elsewhere are refused with 403 and no trace."""
    world = identity_world
    add_staff(world)
    attempts = [
        ("auditor", "/api/mailboxes/bob@acme.test/suspend"),
        ("auditor", "/api/domains/acme.test/suspend"),
        ("helpdesk", "/api/domains/acme.test/suspend"),
        ("other-admin", "/api/mailboxes/bob@acme.test/suspend"),
        ("other-admin", "/api/domains/acme.test/suspend"),
        ("drifter", "/api/mailboxes/kim@other.test/suspend"),
    ]
    async with contextlib.AsyncExitStack() as stack:
        # Tokens first: issuing one is itself audited.
        names = dict.fromkeys(name for name, _ in attempts)
        clients = {name: await stack.enter_async_context(world.api(name)) for name in names}
        before = state(world)
        for username, path in attempts:
            response = await clients[username].post(path, json={"reason": "testing the guard"})
            assert response.status_code == 403, (username, path, response.text)
    assert state(world) == before


async def test_allowed_changes_follow_the_scope(identity_world: IdentityWorld) -> None:
    """Ensure a domain-admin suspends on its own domain, the helpdesk a mailbox, the owner all."""
    world = identity_world
    add_staff(world)
    allowed = [
        ("other-admin", "/api/mailboxes/kim@other.test/suspend"),
        ("helpdesk", "/api/mailboxes/bob@acme.test/suspend"),
        ("other-admin", "/api/domains/other.test/suspend"),
        ("admin", "/api/domains/acme.test/suspend"),
    ]
    for username, path in allowed:
        async with world.api(username) as api:
            response = await api.post(path, json={"reason": "offboarding the client"})
            assert response.status_code == 200, (username, path, response.text)
    _, mailboxes, domains = state(world)
    assert dict(mailboxes) == {"bob": "suspended", "kim": "suspended"}
    assert dict(domains) == {"acme.test": "suspended", "other.test": "suspended"}
