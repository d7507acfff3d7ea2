"""The identity commands of the ``mailward`` CLI, run in-process like ``test_cli``."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from admin.cli import main
from admin.web.context import build_services
from admin.web.server import bind, start_admin
from storage import maildir
from storage.db import Database, sqlite_url
from storage.models import Mailbox
from tests.admin.conftest import PASSWORD, codes_in, csrf_of, links_in


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Mailward = Callable[..., Run]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "var"


@pytest.fixture
def mw(data: Path, capsys: pytest.CaptureFixture[str], cheap_argon2: None) -> Mailward:
    def run(*argv: str) -> Run:
        code = main(["--data", str(data), *argv])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


@pytest.fixture
def demo(mw: Mailward) -> Mailward:
    result = mw("init", "--demo")
    assert result.code == 0, result.err
    return mw


def notes(data: Path, kind: str) -> list[str]:
    return [p.read_text() for p in sorted((data / "outbox").glob(f"*-{kind}-*.txt"))]


async def test_init_demo_leaves_an_invite_a_newcomer_can_use(demo: Mailward, data: Path) -> None:
    """Ensure init --demo leaves a pending invite in the outbox that sets up a mailbox."""
    invite_note = notes(data, "invite")[-1]
    assert "Erin Ford" in invite_note
    pending = demo("invite", "list", "--pending", "--json").json()
    assert [(i["owner"], i["suggested_local_part"]) for i in pending] == [("Erin Ford", "erin")]
    path = httpx.URL(links_in(invite_note)[-1]).path
    db = Database(sqlite_url(data))
    sock = bind("127.0.0.1", 0)
    services = build_services(
        db, data_dir=data, mail_root=data / "mail", url=f"http://127.0.0.1:{sock.getsockname()[1]}"
    )
    server = await start_admin(services, sock=sock)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as browser:
            page = await browser.get(path)
            assert page.status_code == 200 and 'value="erin"' in page.text
            done = await browser.post(
                path,
                data={
                    "local_part": "erin",
                    "password": PASSWORD,
                    "confirm": PASSWORD,
                    "csrf": csrf_of(page.text),
                },
            )
            assert done.status_code == 200 and len(codes_in(done.text)) == 10
    finally:
        await server.stop()
        db.dispose()
    card = demo("mailbox", "show", "erin@acme.test", "--json").json()
    assert card["owner"]["name"] == "Erin Ford" and card["password_set"] is True
    assert "operator-setup" in " ".join(p.name for p in (data / "outbox").iterdir())


def test_first_operator_gets_a_setup_link_not_a_password(mw: Mailward, data: Path) -> None:
    """Ensure init sends the first operator a one-time setup link and prints no secret."""
    result = mw(
        "init",
        "--org",
        "Agency",
        "--operator",
        "bill",
        "--person",
        "Bill L",
        "--email",
        "bill@example.org",
    )
    assert result.code == 0, result.err
    note = notes(data, "operator-setup")[-1]
    link = links_in(note)[-1]
    assert note.startswith("To: Bill L <bill@example.org>")
    token = link.rsplit("/", 1)[1]
    assert token not in result.out and "setup link" in result.out
    listed = mw("operator", "list", "--json").json()
    assert listed[0]["password_set"] is False


def test_invite_commands(demo: Mailward, data: Path, tmp_path: Path) -> None:
    """Ensure invites are created, listed, revoked and bulk-loaded from CSV, with roles checked."""
    created = demo(
        "invite",
        "create",
        "acme.test",
        "--owner",
        "Bob Chen",
        "--local-part",
        "bobby",
        "--days",
        "3",
        "--as",
        "admin",
        "--json",
    )
    assert created.code == 0, created.err
    view = created.json()
    assert view["state"] == "pending" and "link" not in view
    assert "invite" not in created.out.lower().split("link")[-1] or "http" not in created.out
    refused = demo("invite", "create", "acme.test", "--owner", "Bob Chen", "--as", "helpdesk")
    assert refused.code == 2 and "roles" in refused.err
    reserved = demo(
        "invite",
        "create",
        "acme.test",
        "--owner",
        "Bob Chen",
        "--local-part",
        "postmaster",
        "--as",
        "admin",
    )
    assert reserved.code == 2 and "reserved" in reserved.err
    assert demo("invite", "revoke", str(view["id"]), "--as", "admin").code == 0
    again = demo("invite", "revoke", str(view["id"]), "--as", "admin")
    assert again.code == 2 and "already revoked" in again.err

    csv_file = tmp_path / "invites.csv"
    csv_file.write_text(
        "domain,owner,local_part,owner_email\n"
        "acme.test,Hana Ito,hana,hana@example.org\n"
        "globex.test,Grace Liu,,\n"
    )
    bulk = demo("invite", "bulk", str(csv_file), "--as", "admin", "--json")
    assert bulk.code == 0, bulk.err
    assert [(r["domain"], r["owner"]) for r in bulk.json()] == [
        ("acme.test", "Hana Ito"),
        ("globex.test", "Grace Liu"),
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text("domain,owner\nacme.test,Nobody Known\n")
    refused_bulk = demo("invite", "bulk", str(bad), "--as", "admin")
    assert refused_bulk.code == 2 and "line 2" in refused_bulk.err
    states = [i["state"] for i in demo("invite", "list", "--json").json()]
    assert states.count("pending") == 3 and states.count("revoked") == 1


def test_reset_commands_need_two_operators(demo: Mailward, data: Path) -> None:
    """Ensure a CLI reset is requested, refused to its requester, approved by another, executed."""
    requested = demo(
        "reset",
        "request",
        "alice@acme.test",
        "--reason",
        "lost her phone",
        "--as",
        "helpdesk",
        "--json",
    )
    assert requested.code == 0, requested.err
    ident = str(requested.json()["id"])
    own = demo("reset", "approve", ident, "--as", "helpdesk")
    assert own.code == 2 and ("cannot approve" in own.err or "approver role" in own.err)
    assert demo("reset", "approve", ident, "--as", "approver").code == 0
    executed = demo("reset", "execute", ident, "--as", "helpdesk")
    assert executed.code == 0, executed.err
    note = notes(data, "reset-credential")[-1]
    assert note.startswith("To: Alice Martin <alice.martin@example.org>")
    assert links_in(note)[-1].rsplit("/", 1)[1] not in executed.out
    listed = demo("reset", "list", "--json").json()
    assert (
        listed[0]["state"],
        listed[0]["requested_by"],
        listed[0]["approved_by"],
        listed[0]["executed_by"],
    ) == ("executed", "helpdesk", "approver", "helpdesk")


def test_offboarding_commands(demo: Mailward, data: Path) -> None:
    """Ensure a mailbox is suspended, transferred, exported, scheduled for deletion and purged."""
    box = maildir.Maildir(data / "mail" / "acme.test" / "bob")
    maildir.commit([box.stage(b"Subject: hello\n\nkeep me\n")])
    maildir.commit([box.folder("Archive").stage(b"Subject: old\n\nold mail\n")])
    assert (
        demo("mailbox", "suspend", "bob@acme.test", "--reason", "left", "--as", "helpdesk").code
        == 0
    )
    moved = demo(
        "mailbox",
        "transfer",
        "bob@acme.test",
        "--owner",
        "Alice Martin",
        "--reason",
        "bob left; alice takes over",
        "--as",
        "admin",
        "--json",
    )
    assert moved.code == 0, moved.err and moved.json()["owner"] == "Alice Martin"
    card = demo("mailbox", "show", "bob@acme.test", "--json").json()
    assert card["owner"]["name"] == "Alice Martin" and card["password_set"] is False

    early = demo("mailbox", "delete", "bob@acme.test", "--reason", "offboarded", "--as", "admin")
    assert early.code == 2 and "export" in early.err
    for fmt in ("maildir", "mbox"):
        exported = demo(
            "mailbox", "export", "bob@acme.test", "--format", fmt, "--as", "admin", "--json"
        )
        assert exported.code == 0, exported.err
        with tarfile.open(exported.json()["path"]) as archive:
            names = archive.getnames()
            blob = b"".join(
                archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()
            )  # type: ignore[union-attr]
        assert b"keep me" in blob and b"old mail" in blob, names
    scheduled = demo(
        "mailbox",
        "delete",
        "bob@acme.test",
        "--reason",
        "offboarded",
        "--grace-days",
        "1",
        "--as",
        "admin",
        "--json",
    )
    assert scheduled.code == 0 and scheduled.json()["state"] == "scheduled"
    assert demo("mailbox", "purge", "--as", "admin", "--json").json() == []  # not yet due
    assert (
        demo("mailbox", "restore", "bob@acme.test", "--reason", "oops", "--as", "admin").code == 0
    )
    assert (
        demo(
            "mailbox",
            "delete",
            "bob@acme.test",
            "--reason",
            "offboarded",
            "--grace-days",
            "1",
            "--as",
            "admin",
        ).code
        == 0
    )

    db = Database(sqlite_url(data))
    try:
        from datetime import UTC, datetime, timedelta

        from admin.services import offboarding

        later = datetime.now(UTC) + timedelta(days=2)
        with db.session() as session:
            purged = offboarding.purge_due(
                session, actor="operator:admin", now=later, mail_root=data / "mail"
            )
        offboarding.remove_purged_files(purged)
        assert [p.address for p in purged] == ["bob@acme.test"]
        with db.session() as session:
            assert (
                session.scalars(select(Mailbox).where(Mailbox.local_part == "bob")).first() is None
            )
    finally:
        db.dispose()
    assert not (data / "mail" / "acme.test" / "bob").exists()
    history = demo(
        "log", "audit", "--target", "mailbox:bob@acme.test", "--limit", "100", "--json"
    ).json()
    assert history[-1]["action"] == "mailbox.purge" and history[-1]["before"]["local_part"] == "bob"
    assert demo("log", "verify").code == 0


def test_domain_suspend_revokes_everything_and_withdraws_invites(demo: Mailward) -> None:
    """Ensure suspending a domain withdraws pending invites and needs an owner or domain admin."""
    assert (
        demo("domain", "suspend", "acme.test", "--reason", "client left", "--as", "helpdesk").code
        == 2
    )
    done = demo(
        "domain", "suspend", "acme.test", "--reason", "client left", "--as", "admin", "--json"
    )
    assert done.code == 0, done.err
    assert "alice@acme.test" in done.json()["mailboxes"]
    assert [i["state"] for i in demo("invite", "list", "--json").json()] == ["revoked"]


def test_operator_account_commands(demo: Mailward, data: Path) -> None:
    """Ensure setup links, API tokens and session listings work from the CLI, owner-gated."""
    refused = demo("operator", "setup-link", "helpdesk", "--as", "approver")
    assert refused.code == 2 and "owner" in refused.err
    sent = demo("operator", "setup-link", "helpdesk", "--as", "admin")
    assert sent.code == 0 and "carol.diaz@example.org" in sent.out
    argv = ("operator", "api-token", "--name", "ci", "--days", "30", "--as", "approver", "--json")
    token = demo(*argv)
    assert token.code == 0 and token.json()["token"].startswith("mw_")
    assert demo("operator", "sessions", "--as", "approver", "--json").json() == []
    assert demo("operator", "sessions", "admin", "--as", "approver").code == 2
    assert demo("app-password", "list", "--json").json() == []
    policy = demo("identity", "set", "--require-totp", "on", "--as", "admin", "--json")
    assert policy.code == 0 and policy.json()["require_totp"] is True
