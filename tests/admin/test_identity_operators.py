"""Operator accounts over real HTTP: setup links, TOTP sign-in, sessions and the API's guards."""

from __future__ import annotations

import re

import httpx
from sqlalchemy.orm import Session

from admin.services import directory as d
from admin.services import operators as ops
from admin.services.identity import set_identity_policy
from admin.services.totp import from_b32, totp
from storage.models import Organization
from tests.admin.conftest import IdentityWorld, csrf_of

OPERATOR_PASSWORD = "granite willow seven harbor"


def send_setup_link(world: IdentityWorld, username: str = "admin") -> str:
    def send(session: Session) -> None:
        operator = d.find_operator(session, username)
        ops.create_setup_link(
            session, world.services.env, actor="system:test", now=world.clock(), operator=operator
        )

    world.tx(send)
    return world.last_link("operator-setup")


async def set_up(
    world: IdentityWorld, browser: httpx.AsyncClient, link: str, *, enrol: bool = True
) -> tuple[httpx.Response, bytes]:
    page = await browser.get(link)
    assert page.status_code == 200, page.text
    found = re.search(r'name="totp_secret" value="([A-Z2-7]+)"', page.text)
    assert found is not None
    secret = from_b32(found.group(1))
    code = totp(secret, world.clock().timestamp()) if enrol else ""
    response = await browser.post(
        link,
        data={
            "password": OPERATOR_PASSWORD,
            "confirm": OPERATOR_PASSWORD,
            "totp_secret": found.group(1),
            "totp_code": code,
            "csrf": csrf_of(page.text),
        },
    )
    return response, secret


async def operator_login(
    world: IdentityWorld, browser: httpx.AsyncClient, code: str, username: str = "admin"
) -> httpx.Response:
    return await world.form_post(
        browser,
        "/operator/login",
        {"username": username, "password": OPERATOR_PASSWORD, "totp_code": code},
    )


async def test_setup_link_then_totp_sign_in(identity_world: IdentityWorld) -> None:
    """Ensure an operator sets their own password and TOTP by link, then needs both to sign in."""
    world = identity_world
    link = send_setup_link(world)
    note = world.notes("operator-setup")[-1]
    assert note.startswith("To: Olivia <olivia@example.org>")
    async with world.client() as browser:
        done, secret = await set_up(world, browser, link)
        assert done.status_code == 200 and "ready" in done.text
        assert (await browser.get(link)).status_code == 410
        world.clock.advance(seconds=30)
        assert (await operator_login(world, browser, "")).status_code == 400
        code = totp(secret, world.clock().timestamp())
        home = await operator_login(world, browser, code)
        assert home.status_code == 200 and "Signed in as admin" in home.text
        cookie = next(c for c in browser.cookies.jar if c.name == "mw_operator")
        assert cookie.has_nonstandard_attr("HttpOnly")
        assert cookie.get_nonstandard_attr("SameSite", "").lower() == "strict"
        assert not cookie.secure  # plain HTTP on loopback; Secure under TLS
    async with world.client() as other:
        replay = await operator_login(world, other, code)
        assert replay.status_code == 400 and "not right" in replay.text


async def test_sessions_are_listed_and_revoked(identity_world: IdentityWorld) -> None:
    """Ensure an operator's sessions are listed over the API and a revoked one stops working."""
    world = identity_world
    link = send_setup_link(world)
    async with world.client() as browser:
        await set_up(world, browser, link, enrol=False)
        assert (await operator_login(world, browser, "")).status_code == 200
        listed = await browser.get("/api/sessions")
        assert listed.status_code == 200
        sessions = listed.json()
        assert len(sessions) == 1 and sessions[0]["operator"] == "admin"
        assert "token" not in str(sessions)
        no_csrf = await browser.post(f"/api/sessions/{sessions[0]['id']}/revoke")
        assert no_csrf.status_code == 403
        csrf = browser.cookies.get("mw_csrf")
        assert csrf
        revoked = await browser.post(
            f"/api/sessions/{sessions[0]['id']}/revoke", headers={"X-CSRF-Token": csrf}
        )
        assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
        assert (await browser.get("/api/sessions")).status_code == 401
        page = await browser.get("/operator")
        assert "Operator sign-in" in page.text


async def test_api_needs_a_valid_token(identity_world: IdentityWorld) -> None:
    """Ensure the API refuses requests without a token or with an unknown one."""
    world = identity_world
    async with world.client() as anonymous:
        assert (await anonymous.get("/api/invites")).status_code == 401
    async with world.client(authorization="Bearer mw_not-a-token") as forged:
        assert (await forged.get("/api/invites")).status_code == 401
    async with world.api("auditor") as api:
        assert (await api.get("/api/whoami")).json() == {"username": "auditor"}
        created = await api.post("/api/tokens", json={"name": "ci", "days": 7})
        assert created.status_code == 201 and created.json()["token"].startswith("mw_")


async def test_organization_can_require_totp(identity_world: IdentityWorld) -> None:
    """Ensure a TOTP-requiring organization refuses a setup without an authenticator code."""
    world = identity_world

    def require_totp(session: Session) -> None:
        set_identity_policy(
            session,
            operator=d.find_operator(session, "admin"),
            now=world.clock(),
            organization=session.get(Organization, world.ids["org"]),
            operator_totp_required=True,
        )

    world.tx(require_totp)
    link = send_setup_link(world, "helpdesk")
    async with world.client() as browser:
        refused, _ = await set_up(world, browser, link, enrol=False)
        assert refused.status_code == 400 and "requires an authenticator" in refused.text
        done, _ = await set_up(world, browser, link)
        assert done.status_code == 200
