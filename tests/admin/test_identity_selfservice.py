"""Owner self-service over real HTTP: recovery codes, password change, app passwords, endpoints."""

from __future__ import annotations

import asyncio
import re

import httpx
from sqlalchemy import select

from admin.services import directory as d
from storage.models import AppPassword
from storage.models_identity import RecoveryEndpoint
from storage.secrets import verify_password
from tests.admin.conftest import (
    PASSWORD,
    IdentityWorld,
    codes_in,
    csrf_of,
    imap_login,
    imap_server,
    provision,
    sign_in,
)

ADDRESS = "erin@acme.test"
NEW_PASSWORD = "amber lantern coast 41"


async def self_reset(
    world: IdentityWorld,
    client: httpx.AsyncClient,
    *,
    code: str = "",
    current: str = "",
    password: str = NEW_PASSWORD,
    address: str = ADDRESS,
) -> httpx.Response:
    return await world.form_post(
        client,
        "/reset",
        {
            "address": address,
            "code": code,
            "current": current,
            "password": password,
            "confirm": password,
        },
    )


def password_hash(world: IdentityWorld) -> str | None:
    return world.tx(lambda s: d.get_mailbox(s, ADDRESS).password_hash)


async def test_recovery_code_is_burned_after_use(identity_world: IdentityWorld) -> None:
    """Ensure a recovery code resets the password once and is refused the second time."""
    world = identity_world
    codes = await provision(world)
    async with world.client() as browser:
        done = await self_reset(world, browser, code=codes[0].upper().replace("-", " "))
        assert done.status_code == 200 and "9 unused recovery codes" in done.text
        assert verify_password(password_hash(world), NEW_PASSWORD)
        assert (await browser.get("/account")).status_code == 200  # signed in by the reset
        again = await self_reset(world, browser, code=codes[0], password="third strong password 3")
        assert again.status_code == 400 and "not right" in again.text
        assert verify_password(password_hash(world), NEW_PASSWORD)


async def test_unknown_address_and_wrong_code_look_the_same(identity_world: IdentityWorld) -> None:
    """Ensure a wrong code and an unknown address get the same answer, and guessing is throttled."""
    world = identity_world
    await provision(world)
    async with world.client() as browser:
        wrong = await self_reset(world, browser, code="aaaaa-bbbbb")
        unknown = await self_reset(world, browser, code="aaaaa-bbbbb", address="nobody@acme.test")
        message = "The address, recovery code or password is not right."
        assert wrong.status_code == unknown.status_code == 400
        assert message in wrong.text and message in unknown.text
        for _ in range(4):  # five failures for the address in all
            await self_reset(world, browser, code="aaaaa-bbbbb")
        blocked = await self_reset(world, browser, current=PASSWORD)
        assert blocked.status_code == 429


async def test_few_codes_left_asks_for_a_fresh_set(identity_world: IdentityWorld) -> None:
    """Ensure the owner is asked to regenerate below three codes and old codes then stop working."""
    world = identity_world
    codes = await provision(world)
    async with world.client() as browser:
        for code in codes[:7]:
            done = await self_reset(world, browser, code=code)
            assert done.status_code == 200, done.text
            assert "Generate new recovery codes" not in done.text
        low = await self_reset(world, browser, code=codes[7])
        assert "Fewer than three recovery codes remain" in low.text
        fresh = await browser.post("/account/codes", data={"csrf": csrf_of(low.text)})
        assert fresh.status_code == 200
        new_codes = codes_in(fresh.text)
        assert len(new_codes) == 10 and not set(new_codes) & set(codes)
        old = await self_reset(world, browser, code=codes[8], password="a different pass 99")
        assert old.status_code == 400
        assert (await self_reset(world, browser, code=new_codes[0])).status_code == 200


async def test_reset_with_current_password_and_password_change(
    identity_world: IdentityWorld,
) -> None:
    """Ensure the current password can reset and, signed in, change the password."""
    world = identity_world
    await provision(world)
    async with world.client() as browser:
        assert (await self_reset(world, browser, current=PASSWORD)).status_code == 200
        assert verify_password(password_hash(world), NEW_PASSWORD)
        page = await browser.get("/account")
        wrong = await browser.post(
            "/account/password",
            data={
                "current": PASSWORD,
                "password": "final pass phrase 5",
                "confirm": "final pass phrase 5",
                "csrf": csrf_of(page.text),
            },
        )
        assert wrong.status_code == 400 and "current password is not right" in wrong.text
        changed = await browser.post(
            "/account/password",
            data={
                "current": NEW_PASSWORD,
                "password": "final pass phrase 5",
                "confirm": "final pass phrase 5",
                "csrf": csrf_of(page.text),
            },
        )
        assert changed.status_code == 200 and "password is changed" in changed.text
        assert verify_password(password_hash(world), "final pass phrase 5")


async def test_forms_without_the_csrf_token_are_refused(identity_world: IdentityWorld) -> None:
    """Ensure a form post whose CSRF token is missing or differs from the cookie is refused."""
    world = identity_world
    await provision(world)
    async with world.client() as browser:
        await browser.get("/reset")
        forged = await browser.post(
            "/reset",
            data={
                "address": ADDRESS,
                "current": PASSWORD,
                "password": NEW_PASSWORD,
                "confirm": NEW_PASSWORD,
                "csrf": "x" * 32,
            },
        )
        assert forged.status_code == 403
        assert verify_password(password_hash(world), PASSWORD)
        response = await browser.get("/login")
        cookie = response.headers.get("set-cookie", "") or str(browser.cookies)
        assert "mw_csrf" in cookie
    async with world.client() as browser:
        await sign_in(world, browser, ADDRESS)
        session_cookie = next(c for c in browser.cookies.jar if c.name == "mw_session")
        assert session_cookie.has_nonstandard_attr("HttpOnly")
        assert session_cookie.get_nonstandard_attr("SameSite", "").lower() == "strict"


async def test_app_password_is_shown_once_and_revoked_at_once(
    identity_world: IdentityWorld,
) -> None:
    """Ensure an app password logs in to IMAP until the owner revokes it, then fails at once."""
    world = identity_world
    await provision(world)
    async with world.client() as browser, imap_server(world) as port:
        signed_in = await sign_in(world, browser, ADDRESS)
        assert signed_in.status_code == 200 and ADDRESS in signed_in.text
        created = await browser.post(
            "/account/app-passwords",
            data={"name": "Thunderbird", "scope_imap": "1", "csrf": csrf_of(signed_in.text)},
        )
        assert created.status_code == 200
        secret = re.search(r'class="secret">([a-z-]+)<', created.text)
        assert secret is not None
        app_password = secret.group(1)
        account = await browser.get("/account")
        assert "Thunderbird" in account.text and app_password not in account.text
        assert await asyncio.to_thread(imap_login, port, ADDRESS, app_password) == "OK"
        row_id = world.tx(lambda s: s.scalars(select(AppPassword.id)).one())
        revoked = await browser.post(
            f"/account/app-passwords/{row_id}/revoke", data={"csrf": csrf_of(account.text)}
        )
        assert revoked.status_code == 200 and "revoked" in revoked.text
        assert await asyncio.to_thread(imap_login, port, ADDRESS, app_password) != "OK"
    async with world.api("admin") as api:
        listed = (await api.get("/api/app-passwords", params={"mailbox": ADDRESS})).json()
        assert listed[0]["state"] == "revoked" and "password" not in str(listed[0]).replace(
            "app-password", ""
        )


async def test_operator_revokes_an_app_password(identity_world: IdentityWorld) -> None:
    """Ensure the persistence audit lists active app passwords and an operator can revoke one."""
    world = identity_world
    await provision(world)
    async with world.client() as browser:
        signed_in = await sign_in(world, browser, ADDRESS)
        await browser.post(
            "/account/app-passwords",
            data={
                "name": "phone",
                "scope_imap": "1",
                "scope_smtp": "1",
                "days": "30",
                "csrf": csrf_of(signed_in.text),
            },
        )
    async with world.api("helpdesk") as api:
        active = (await api.get("/api/app-passwords", params={"active": "1"})).json()
        assert [(r["name"], r["scopes"], r["state"]) for r in active] == [
            ("phone", "imap,smtp", "active")
        ]
        revoked = await api.post(
            f"/api/app-passwords/{active[0]['id']}/revoke", json={"reason": "lost phone"}
        )
        assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"


async def test_recovery_endpoints_are_verified_and_kept_off_hosted_domains(
    identity_world: IdentityWorld,
) -> None:
    """Ensure recovery emails on hosted domains are refused and others verify with the sent code."""
    world = identity_world
    await provision(world)
    async with world.client() as browser:
        page = await sign_in(world, browser, ADDRESS)
        for value in ("me@acme.test", "me@other.test"):
            refused = await browser.post(
                "/account/endpoints",
                data={"kind": "email", "value": value, "csrf": csrf_of(page.text)},
            )
            assert refused.status_code == 400 and "cannot be on" in refused.text
        added = await browser.post(
            "/account/endpoints",
            data={"kind": "email", "value": "erin.backup@example.net", "csrf": csrf_of(page.text)},
        )
        assert added.status_code == 200
        note = world.notes("endpoint-verification")[-1]
        assert note.startswith("To: Erin Ford <erin.backup@example.net>")
        code = re.search(r"is (\d{6})\.", note)
        assert code is not None
        endpoint_id = world.tx(lambda s: s.scalars(select(RecoveryEndpoint.id)).one())
        wrong = await browser.post(
            f"/account/endpoints/{endpoint_id}/verify",
            data={"code": "000000", "csrf": csrf_of(page.text)},
        )
        assert wrong.status_code == 400
        right = await browser.post(
            f"/account/endpoints/{endpoint_id}/verify",
            data={"code": code.group(1), "csrf": csrf_of(page.text)},
        )
        assert right.status_code == 200 and "verified" in right.text
        endpoint = world.tx(lambda s: s.get(RecoveryEndpoint, endpoint_id))
        assert endpoint.verified_at is not None and endpoint.reviewed_at is not None
        assert endpoint.verification_hash is None
