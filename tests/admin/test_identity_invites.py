"""Invite-based provisioning over real HTTP: the operator never holds the owner's secrets."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.orm import Session

from admin.services import directory as d
from admin.services import invites
from admin.services.identity import set_identity_policy
from policy.identity import RECOVERY_CODE_COUNT
from storage.models import AuditEntry, Base, Mailbox, Organization
from storage.models_identity import Invite
from storage.secrets import verify_password
from tests.admin.conftest import (
    OWNER_EMAIL,
    OWNER_NAME,
    PASSWORD,
    IdentityWorld,
    accept_invite,
    codes_in,
    create_invite,
    csrf_of,
    imap_login,
    imap_server,
)


async def accept(world: IdentityWorld, link: str, local_part: str, password: str = PASSWORD) -> Any:
    return await accept_invite(world, link, local_part, password)


async def invite(world: IdentityWorld, **body: Any) -> dict[str, Any]:
    return await create_invite(world, **body)


async def test_full_invite_flow_ends_with_an_imap_login(identity_world: IdentityWorld) -> None:
    """Ensure an invite to the owner ends with a mailbox whose chosen password logs in to IMAP."""
    world = identity_world
    created = await invite(world, local_part="erin")
    assert "link" not in created and created["sent_to"] == OWNER_EMAIL
    assert created["state"] == "pending"
    note = world.notes("invite")[-1]
    assert note.startswith(f"To: {OWNER_NAME} <{OWNER_EMAIL}>")
    done = await accept(world, world.last_link("invite"), "erin")
    assert done.status_code == 200, done.text
    codes = codes_in(done.text)
    assert len(codes) == RECOVERY_CODE_COUNT == len(set(codes))
    assert "erin@acme.test" in done.text
    mailbox = world.tx(
        lambda s: s.scalars(select(Mailbox).where(Mailbox.local_part == "erin")).one()
    )
    assert mailbox.owner_person_id == world.ids["erin"] and mailbox.state == "active"
    assert verify_password(mailbox.password_hash, PASSWORD)
    async with imap_server(world) as port:
        assert await asyncio.to_thread(imap_login, port, "erin@acme.test", PASSWORD) == "OK"
        assert await asyncio.to_thread(imap_login, port, "erin@acme.test", "wrong") != "OK"


async def test_nothing_but_the_one_time_page_shows_the_secrets(
    identity_world: IdentityWorld, caplog: pytest.LogCaptureFixture
) -> None:
    """Ensure the password and codes show only on the one-time page: no response, log, row, file."""
    world = identity_world
    caplog.set_level(logging.DEBUG)
    await invite(world)
    link = world.last_link("invite")
    done = await accept(world, link, "erin")
    codes = codes_in(done.text)
    assert len(codes) == RECOVERY_CODE_COUNT
    secrets = [PASSWORD, *codes, *(c.replace("-", "") for c in codes)]
    # Browse afterwards as the owner and as operators, so that there is more to scan.
    async with world.client() as browser:
        page = await browser.get("/login")
        await browser.post(
            "/login",
            data={"address": "erin@acme.test", "password": PASSWORD, "csrf": csrf_of(page.text)},
        )
        await browser.get("/account")
        await browser.get(link)  # the used link
    async with world.api("admin") as api:
        for path in ("/api/invites", "/api/resets", "/api/app-passwords", "/api/sessions"):
            assert (await api.get(path)).status_code == 200

    one_time = [body for _url, body in world.seen if codes[0] in body]
    assert len(one_time) == 1 and one_time[0] == done.text
    assert PASSWORD not in done.text
    for url, body in world.seen:
        if body is done.text:
            continue
        for secret in secrets:
            assert secret not in body, f"a secret in the response of {url}"

    def all_cells(session: Any) -> list[str]:
        cells = []
        for table in Base.metadata.sorted_tables:
            if not inspect(session.connection()).has_table(table.name):
                continue
            for row in session.execute(text(f'SELECT * FROM "{table.name}"')):
                cells += [str(v) for v in row if v is not None]
        return cells

    cells = world.tx(all_cells)
    assert any("erin" in c for c in cells)  # the scan does see the data
    audit_rows = world.tx(
        lambda s: [(e.before, e.after, e.reason) for e in s.scalars(select(AuditEntry))]
    )
    outbox = [p.read_text() for p in world.outbox.iterdir()]
    logs = [record.getMessage() for record in caplog.records]
    for secret in secrets:
        assert not any(secret in c for c in cells), "a secret in the database"
        assert not any(secret in str(a) for a in audit_rows), "a secret in the audit log"
        assert not any(secret in note for note in outbox), "a secret in the outbox"
        assert not any(secret in line for line in logs), "a secret in a log line"


async def test_used_expired_and_revoked_invites_say_so(identity_world: IdentityWorld) -> None:
    """Ensure reused, expired and revoked invite links are refused with a message naming why."""
    world = identity_world
    await invite(world)
    used = world.last_link("invite")
    assert (await accept(world, used, "erin")).status_code == 200
    again = await accept_page(world, used)
    assert again.status_code == 410 and "already been used" in again.text

    await invite(world, days=1)
    expiring = world.last_link("invite")
    world.clock.advance(days=1, seconds=1)
    expired = await accept_page(world, expiring)
    assert expired.status_code == 410 and "expired" in expired.text

    revoked = await invite(world)
    link = world.last_link("invite")
    async with world.api("admin") as api:
        response = await api.post(f"/api/invites/{revoked['id']}/revoke", json={"reason": "typo"})
        assert response.status_code == 200 and response.json()["state"] == "revoked"
    page = await accept_page(world, link)
    assert page.status_code == 410 and "withdrawn" in page.text

    bogus = await accept_page(world, link[:-4] + "AAAA")
    assert bogus.status_code == 410 and "not valid" in bogus.text


async def accept_page(world: IdentityWorld, link: str) -> Any:
    async with world.client() as browser:
        return await browser.get(link)


@pytest.mark.parametrize(
    ("local_part", "password", "message"),
    [
        ("erin", "short pw 1", "at least 12 characters"),
        ("erin", "Password2024!", "commonly used"),
        ("erin", "P@ssw0rd123456", "commonly used"),
        ("erin", "erin is the best 42", "address or its local part"),
        ("postmaster", PASSWORD, "reserved"),
        ("abuse", PASSWORD, "reserved"),
        ("no-reply", PASSWORD, "reserved"),
        ("Erin+x", PASSWORD, "letters a-z"),
    ],
)
async def test_weak_passwords_and_reserved_local_parts_are_refused(
    identity_world: IdentityWorld, local_part: str, password: str, message: str
) -> None:
    """Ensure weak passwords and reserved or invalid local parts are refused; the link survives."""
    world = identity_world
    await invite(world)
    link = world.last_link("invite")
    refused = await accept(world, link, local_part, password)
    assert refused.status_code == 400 and message in refused.text
    assert password not in refused.text
    assert (await accept(world, link, "erin")).status_code == 200


async def test_taken_local_part_is_refused(identity_world: IdentityWorld) -> None:
    """Ensure a local part already used by a mailbox is refused on the invite page."""
    world = identity_world
    await invite(world)
    assert (await accept(world, world.last_link("invite"), "erin")).status_code == 200
    await invite(world)
    taken = await accept(world, world.last_link("invite"), "erin")
    assert taken.status_code == 400 and "already in use" in taken.text


async def test_creator_sees_no_link_and_roles_are_checked(identity_world: IdentityWorld) -> None:
    """Ensure only owners and domain admins invite, and the link reaches nobody but the owner."""
    world = identity_world
    async with world.api("helpdesk") as api:
        refused = await api.post("/api/invites", json={"domain": "acme.test", "owner": OWNER_NAME})
        assert refused.status_code == 403
    created = await invite(world)
    token = world.last_link("invite").rsplit("/", 1)[1]
    invite_row = world.tx(lambda s: s.get(Invite, created["id"]))
    assert invite_row.token_sha256 != token and token not in str(created)
    assert world.tx(lambda s: invites.find_invite(s, token)).id == created["id"]


async def test_organization_may_let_the_creator_see_the_link(identity_world: IdentityWorld) -> None:
    """Ensure the invite link is returned to its creator only when the identity policy allows it."""
    world = identity_world

    def allow(session: Session) -> None:
        set_identity_policy(
            session,
            operator=d.find_operator(session, "admin"),
            now=world.clock(),
            organization=session.get(Organization, world.ids["org"]),
            invite_link_to_creator=True,
        )

    world.tx(allow)
    created = await invite(world)
    assert created["link"] == world.last_link("invite")
