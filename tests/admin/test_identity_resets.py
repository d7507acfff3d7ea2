"""Helpdesk resets over real HTTP: two operators, a one-time credential only the owner receives."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import select

from admin.services import app_passwords as ap
from admin.services import directory as d
from storage.identity import has_only_temporary_credential
from storage.models import AppPassword, AuditEntry, Mailbox
from tests.admin.conftest import (
    OWNER_EMAIL,
    PASSWORD,
    IdentityWorld,
    codes_in,
    csrf_of,
    imap_login,
    imap_server,
    provision,
)

NEW_PASSWORD = "amber lantern coast 41"
ADDRESS = "erin@acme.test"


async def open_reset(world: IdentityWorld, api: httpx.AsyncClient) -> dict[str, Any]:
    response = await api.post(
        "/api/resets", json={"mailbox": ADDRESS, "reason": "owner lost phone and codes"}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def approved_and_executed(world: IdentityWorld) -> dict[str, Any]:
    async with world.api("helpdesk") as helpdesk, world.api("approver") as approver:
        request = await open_reset(world, helpdesk)
        assert (await approver.post(f"/api/resets/{request['id']}/approve")).status_code == 200
        executed = await helpdesk.post(f"/api/resets/{request['id']}/execute")
        assert executed.status_code == 200, executed.text
        return dict(executed.json())


def mailbox_id(world: IdentityWorld) -> int:
    return world.tx(lambda s: d.get_mailbox(s, ADDRESS).id)


async def set_password_with(world: IdentityWorld, link: str, password: str) -> httpx.Response:
    async with world.client() as browser:
        page = await browser.get(link)
        if page.status_code != 200:
            return page
        return await browser.post(
            link, data={"password": password, "confirm": password, "csrf": csrf_of(page.text)}
        )


async def test_requester_cannot_approve_their_own_reset(identity_world: IdentityWorld) -> None:
    """Ensure the operator who requested a reset cannot approve it, even holding approver."""
    world = identity_world
    await provision(world)
    async with world.api("helpdesk") as helpdesk, world.api("other-approver") as elsewhere:
        request = await open_reset(world, helpdesk)
        own = await helpdesk.post(f"/api/resets/{request['id']}/approve")
        assert own.status_code == 403 and "cannot approve" in own.json()["error"]
        scoped = await elsewhere.post(f"/api/resets/{request['id']}/approve")
        assert scoped.status_code == 403 and "approver role" in scoped.json()["error"]
        early = await helpdesk.post(f"/api/resets/{request['id']}/execute")
        assert early.status_code == 403 and "approved" in early.json()["error"]
    async with world.api("auditor") as auditor:
        refused = await auditor.post("/api/resets", json={"mailbox": ADDRESS, "reason": "curious"})
        assert refused.status_code == 403
    listed = await _list(world)
    assert listed[0]["state"] == "requested" and listed[0]["approved_by"] is None


async def _list(world: IdentityWorld) -> list[dict[str, Any]]:
    async with world.api("admin") as api:
        return list((await api.get("/api/resets")).json())


async def test_temporary_credential_only_sets_a_new_password_once(
    identity_world: IdentityWorld,
) -> None:
    """Ensure the temporary credential never logs in, sets a password once, and revokes access."""
    world = identity_world
    await provision(world)
    box = mailbox_id(world)
    app = world.tx(
        lambda s: ap.create_app_password(
            s,
            mailbox=s.get(Mailbox, box),
            now=world.clock(),
            name="phone",
            scopes=["imap"],
            expires_at=None,
        )
    )
    executed = await approved_and_executed(world)
    assert executed["state"] == "executed" and executed["sent_to"] == OWNER_EMAIL
    assert (executed["requested_by"], executed["approved_by"], executed["executed_by"]) == (
        "helpdesk",
        "approver",
        "helpdesk",
    )
    link = world.last_link("reset-credential")
    credential = link.rsplit("/", 1)[1]
    assert credential not in str(executed)
    assert world.tx(lambda s: has_only_temporary_credential(s, box, world.clock()))
    assert world.tx(lambda s: s.get(AppPassword, app.row.id).revoked_at) is not None

    async with imap_server(world) as port:
        for secret in (credential, PASSWORD, app.password):
            assert await asyncio.to_thread(imap_login, port, ADDRESS, secret) != "OK"
        async with world.client() as browser:
            page = await browser.get("/login")
            web_login = await browser.post(
                "/login",
                data={"address": ADDRESS, "password": credential, "csrf": csrf_of(page.text)},
            )
            assert web_login.status_code == 400

        weak = await set_password_with(world, link, "password1234")
        assert weak.status_code == 400 and "commonly used" in weak.text
        done = await set_password_with(world, link, NEW_PASSWORD)
        assert done.status_code == 200 and len(codes_in(done.text)) == 10
        assert not world.tx(lambda s: has_only_temporary_credential(s, box, world.clock()))
        assert await asyncio.to_thread(imap_login, port, ADDRESS, NEW_PASSWORD) == "OK"

    again = await set_password_with(world, link, "another fine password 7")
    assert again.status_code == 410 and "already been used" in again.text
    actions = world.tx(
        lambda s: [
            (e.action, e.actor)
            for e in s.scalars(select(AuditEntry).where(AuditEntry.target.like("reset:%")))
        ]
    )
    assert [a for a in actions if a[0].startswith("reset.")] == [
        ("reset.request", "operator:helpdesk"),
        ("reset.approve", "operator:approver"),
        ("reset.execute", "operator:helpdesk"),
        ("reset.complete", f"mailbox:{ADDRESS}"),
    ]


async def test_temporary_credential_expires(identity_world: IdentityWorld) -> None:
    """Ensure a temporary credential older than an hour is refused as expired."""
    world = identity_world
    await provision(world)
    await approved_and_executed(world)
    link = world.last_link("reset-credential")
    world.clock.advance(hours=1, seconds=1)
    late = await set_password_with(world, link, NEW_PASSWORD)
    assert late.status_code == 410 and "expired" in late.text
    listed = await _list(world)
    assert listed[-1]["state"] == "expired"


async def test_approver_may_execute_and_others_may_not(identity_world: IdentityWorld) -> None:
    """Ensure only the requester or the approver executes an approved reset."""
    world = identity_world
    await provision(world)
    async with world.api("helpdesk") as helpdesk, world.api("approver") as approver:
        request = await open_reset(world, helpdesk)
        assert (await approver.post(f"/api/resets/{request['id']}/approve")).status_code == 200
        async with world.api("admin") as admin:
            stranger = await admin.post(f"/api/resets/{request['id']}/execute")
            assert stranger.status_code == 403
        executed = await approver.post(f"/api/resets/{request['id']}/execute")
        assert executed.status_code == 200
        assert executed.json()["executed_by"] == "approver"
        assert executed.json()["requested_by"] == "helpdesk"
