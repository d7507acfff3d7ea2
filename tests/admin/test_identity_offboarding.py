"""Offboarding over the JSON API: suspension stops every login, transfer revokes, export, delete."""

from __future__ import annotations

import asyncio
import tarfile

from admin.services import app_passwords as ap
from admin.services import directory as d
from storage import maildir
from storage.models import AppPassword, Mailbox
from storage.models_identity import MailboxDeletion, MailboxExport, MailboxSession
from tests.admin.conftest import (
    PASSWORD,
    IdentityWorld,
    imap_login,
    imap_server,
    provision,
    sign_in,
)

ADDRESS = "erin@acme.test"


def mailbox(world: IdentityWorld) -> Mailbox:
    return world.tx(lambda s: d.get_mailbox(s, ADDRESS))


async def test_suspended_mailbox_cannot_log_in_anywhere(identity_world: IdentityWorld) -> None:
    """Ensure suspension refuses IMAP and web logins and revokes sessions and app passwords."""
    world = identity_world
    await provision(world)
    box = mailbox(world)
    app = world.tx(
        lambda s: ap.create_app_password(
            s,
            mailbox=s.get(Mailbox, box.id),
            now=world.clock(),
            name="laptop",
            scopes=["imap", "smtp"],
            expires_at=None,
        )
    )
    async with world.client() as browser, imap_server(world) as port:
        assert (await sign_in(world, browser, ADDRESS)).status_code == 200
        assert await asyncio.to_thread(imap_login, port, ADDRESS, PASSWORD) == "OK"
        async with world.api("helpdesk") as api:
            done = await api.post(f"/api/mailboxes/{ADDRESS}/suspend", json={"reason": "left"})
            assert done.status_code == 200 and done.json()["state"] == "suspended"
        assert (await browser.get("/account")).url.path == "/login"  # the session ended
        assert (await sign_in(world, browser, ADDRESS)).status_code == 400
        for secret in (PASSWORD, app.password):
            assert await asyncio.to_thread(imap_login, port, ADDRESS, secret) != "OK"
    assert world.tx(lambda s: s.get(AppPassword, app.row.id).revoked_at) is not None
    from mta.smtp_auth import AuthLimits, AuthRefusal, SMTPAuthenticator

    submission = SMTPAuthenticator(world.db, limits=AuthLimits(failure_delay=0.0))
    refused = await submission.authenticate(ADDRESS, PASSWORD, "127.0.0.1")
    assert refused.principal is None and refused.refusal is AuthRefusal.DISABLED
    sessions = world.tx(lambda s: s.query(MailboxSession).all())
    assert sessions and all(row.revoked_at is not None for row in sessions)


async def test_transfer_revokes_the_old_owners_credentials(identity_world: IdentityWorld) -> None:
    """Ensure a transfer names the new owner and clears the password unless credentials are kept."""
    world = identity_world
    await provision(world)
    async with world.api("approver") as approver:
        refused = await approver.post(
            f"/api/mailboxes/{ADDRESS}/transfer", json={"owner": "Dan", "reason": "handover"}
        )
        assert refused.status_code == 403
    async with world.api("admin") as api:
        kept = await api.post(
            f"/api/mailboxes/{ADDRESS}/transfer",
            json={"owner": "Dan", "reason": "same person, new record", "keep_credentials": True},
        )
        assert kept.status_code == 200
        assert mailbox(world).password_hash is not None
        moved = await api.post(
            f"/api/mailboxes/{ADDRESS}/transfer", json={"owner": "Carol", "reason": "Dan left"}
        )
        assert moved.status_code == 200
    row = mailbox(world)
    assert row.password_hash is None
    assert row.owner_person_id == world.tx(lambda s: d.find_person(s, "Carol").id)


async def test_export_then_delete_with_grace(identity_world: IdentityWorld) -> None:
    """Ensure deletion needs an export first, suspends the mailbox and waits out a grace period."""
    world = identity_world
    await provision(world)
    box = maildir.Maildir(world.data / "mail" / "acme.test" / "erin")
    maildir.commit([box.stage(b"Subject: keep\n\nkeep me\n")])
    async with world.api("admin") as api:
        early = await api.post(f"/api/mailboxes/{ADDRESS}/delete", json={"reason": "left"})
        assert early.status_code == 400 and "export" in early.json()["error"]
        exported = await api.post(f"/api/mailboxes/{ADDRESS}/export", json={"format": "mbox"})
        assert exported.status_code == 201, exported.text
        with tarfile.open(exported.json()["path"]) as archive:
            member = archive.extractfile(f"{ADDRESS}/INBOX.mbox")
            assert member is not None and b"keep me" in member.read()
        scheduled = await api.post(
            f"/api/mailboxes/{ADDRESS}/delete",
            json={"reason": "left the company", "grace_days": 14},
        )
        assert scheduled.status_code == 200, scheduled.text
        assert scheduled.json()["state"] == "scheduled"
        twice = await api.post(f"/api/mailboxes/{ADDRESS}/delete", json={"reason": "again"})
        assert twice.status_code == 400
        cancelled = await api.post(
            f"/api/mailboxes/{ADDRESS}/cancel-delete", json={"reason": "changed our mind"}
        )
        assert cancelled.json()["state"] == "cancelled"
    assert mailbox(world).state == "suspended"
    assert world.tx(lambda s: s.query(MailboxExport).count()) == 1
    assert world.tx(lambda s: s.query(MailboxDeletion).one().cancelled_at) is not None


async def test_domain_suspension_over_the_api(identity_world: IdentityWorld) -> None:
    """Ensure a domain is suspended by an owner, its mailboxes listed, and helpdesk refused."""
    world = identity_world
    await provision(world)
    async with world.api("helpdesk") as helpdesk:
        refused = await helpdesk.post("/api/domains/acme.test/suspend", json={"reason": "gone"})
        assert refused.status_code == 403
    async with world.api("admin") as api:
        done = await api.post("/api/domains/acme.test/suspend", json={"reason": "client left"})
        assert done.status_code == 200 and done.json()["mailboxes"] == [ADDRESS]
        invite = await api.post("/api/invites", json={"domain": "acme.test", "owner": "Erin Ford"})
        assert invite.status_code == 400 and "suspended" in invite.json()["error"]
