"""Operator roles enforced on every control-plane change, through the services and the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from admin.cli import main
from admin.config import load_settings
from admin.services import directory as d
from admin.services import rules as r
from admin.services.identity import Forbidden
from admin.services.permissions import authorize, operator_username
from policy.permissions import Action
from storage.db import Database
from storage.models import (
    Alias,
    AuditEntry,
    CatchAll,
    Client,
    Domain,
    ForwardingRule,
    Mailbox,
    Operator,
    Organization,
    Person,
)

SYSTEM = "system:test"
Mailward = Callable[..., tuple[int, Any, str]]
DOCUMENTED = ("--owner", "Alice Martin", "--purpose", "vacation cover until January", "--days", "7")
GLOBEX_FORWARD = (
    "forward",
    "add",
    "grace@globex.test",
    "grace.away@example.com",
    "--owner",
    "Grace Liu",
    "--purpose",
    "travelling for two weeks",
    "--days",
    "14",
)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "var"


@pytest.fixture
def db(data: Path) -> Iterator[Database]:
    """The demo control plane plus an auditor and an operator whose roles were all withdrawn."""
    assert main(["init", "--demo", "--data", str(data)]) == 0
    database = Database(load_settings(data).db_url)
    now = datetime.now(UTC)
    with database.session() as s:
        org = d.default_organization(s)
        for name, username, roles in (
            ("Ned Audit", "auditor", [("auditor", None)]),
            ("Dora Left", "drifter", []),
        ):
            person = d.create_person(
                s,
                actor=SYSTEM,
                now=now,
                organization=org,
                name=name,
                contact_email=f"{username}@example.org",
            )
            d.create_operator(
                s, actor=SYSTEM, now=now, person=person, username=username, roles=roles
            )
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def mw(db: Database, data: Path, capsys: pytest.CaptureFixture[str]) -> Mailward:
    """Run the CLI; returns (exit code, parsed JSON or text, stderr)."""
    capsys.readouterr()

    def run(*argv: str) -> tuple[int, Any, str]:
        code = main(["--data", str(data), *argv])
        out, err = capsys.readouterr()
        return code, json.loads(out) if "--json" in argv and code == 0 else out, err

    return run


def snapshot(db: Database) -> dict[str, Any]:
    """Everything a refused change could have touched: row counts, states, the audit head."""
    with db.session() as s:
        counts = {
            model.__tablename__: s.scalar(select(func.count()).select_from(model))
            for model in (
                Organization,
                Client,
                Domain,
                Person,
                Operator,
                Mailbox,
                Alias,
                ForwardingRule,
                CatchAll,
                AuditEntry,
            )
        }
        domains = [
            (x.name, x.state, x.external_forwarding, x.max_rule_days, x.quota_bytes)
            for x in s.scalars(select(Domain).order_by(Domain.id))
        ]
        boxes = [
            (m.local_part, m.state, m.quota_bytes)
            for m in s.scalars(select(Mailbox).order_by(Mailbox.id))
        ]
        rules = [(f.id, f.enabled) for f in s.scalars(select(ForwardingRule))]
        last = s.scalar(select(func.max(AuditEntry.id)))
    return {"counts": counts, "domains": domains, "mailboxes": boxes, "rules": rules, "last": last}


def refused(mw: Mailward, db: Database, *argv: str) -> str:
    """Run a change that must be refused: exit 2, ``error: operator …``, nothing changed."""
    before = snapshot(db)
    code, _, err = mw(*argv)
    assert code == 2, (argv, err)
    assert err.startswith("error: operator "), err
    assert snapshot(db) == before, argv
    return err


# -- the service helper -----------------------------------------------------------------


def test_only_operator_actors_are_checked(db: Database) -> None:
    """Ensure system and invitee actors are trusted and an unknown operator is refused."""
    assert operator_username("operator:admin") == "admin"
    assert operator_username("system:init") is None
    with db.session() as s:
        acme = d.get_domain(s, "acme.test")
        authorize(s, "system:test", Action.DOMAIN_CREATE)
        authorize(s, "person:7", Action.MAILBOX_CREATE, acme)  # accepting an invite
        authorize(s, "operator:admin", Action.DOMAIN_CREATE)
        with pytest.raises(Forbidden, match="no operator 'ghost'"):
            authorize(s, "operator:ghost", Action.READ)


def test_services_refuse_before_changing_anything(db: Database) -> None:
    """Ensure a directory or rules service called for a refused operator writes nothing."""
    before = snapshot(db)
    now = datetime.now(UTC)
    with db.session() as s:
        acme = d.get_domain(s, "acme.test")
        alice = d.get_mailbox(s, "alice@acme.test")
        owner = d.Owner(person_id=d.find_person(s, "Alice Martin").id)
        with pytest.raises(Forbidden, match=r"may not change the forwarding policy of acme\.test"):
            d.set_domain_policy(
                s, actor="operator:globex-admin", now=now, domain=acme, external_forwarding=True
            )
        with pytest.raises(Forbidden, match=r"operator helpdesk \(helpdesk\) may not add forwards"):
            r.add_forward(
                s,
                actor="operator:helpdesk",
                now=now,
                mailbox=alice,
                target="bob@acme.test",
                owner=owner,
                purpose="cover for the holidays",
                expires_at=None,
            )
        with pytest.raises(Forbidden, match="may not create operators"):
            d.create_operator(
                s,
                actor="operator:auditor",
                now=now,
                person=d.find_person(s, "Alice Martin"),
                username="mallory",
                roles=[("owner", None)],
            )
    assert snapshot(db) == before


# -- through the CLI ----------------------------------------------------------------------


def test_auditor_reads_everything_and_changes_nothing(mw: Mailward, db: Database) -> None:
    """Ensure an auditor reads lists, shows and both logs but every change exits 2."""
    for read in (
        ("domain", "list"),
        ("mailbox", "show", "alice@acme.test"),
        ("forward", "list"),
        ("log", "audit"),
        ("log", "routing"),
        ("log", "verify"),
        ("queue", "list"),
        ("operator", "list"),
        ("quota", "show"),
    ):
        code, _, err = mw(*read, "--as", "auditor", "--json")
        assert code == 0, (read, err)
    err = refused(mw, db, "domain", "create", "initech.test", "--client", "Acme", "--as", "auditor")
    assert "operator auditor (auditor) may not create domains" in err
    refused(
        mw, db, "forward", "add", "alice@acme.test", "bob@acme.test", *DOCUMENTED, "--as", "auditor"
    )
    refused(mw, db, "quota", "set", "mailbox", "alice@acme.test", "1G", "--as", "auditor")
    refused(mw, db, "mailbox", "activate", "bob@acme.test", "--reason", "back", "--as", "auditor")
    refused(mw, db, "person", "create", "Eve", "--email", "eve@example.org", "--as", "auditor")
    refused(mw, db, "queue", "retry", "ABCDEF0123456789", "--as", "auditor")
    refused(mw, db, "reindex", "--all", "--as", "auditor")


def test_operator_without_a_role_may_not_read(mw: Mailward) -> None:
    """Ensure an operator holding no role is refused a read naming them, exit 2."""
    code, _, err = mw("mailbox", "list", "--as", "drifter")
    assert code == 2
    assert "operator drifter (no role) may not read the control plane" in err
    assert mw("mailbox", "list", "--as", "approver")[0] == 0
    assert mw("mailbox", "list")[0] == 0  # the data folder's own administrator, no --as


def test_domain_admin_runs_its_domain_and_only_its_domain(mw: Mailward, db: Database) -> None:
    """Ensure globex-admin changes routing on globex.test and is refused on acme.test."""
    code, _, err = mw(
        "domain", "policy", "globex.test", "--external-forwarding", "on", "--as", "globex-admin"
    )
    assert code == 0, err
    code, rule, err = mw(*GLOBEX_FORWARD, "--as", "globex-admin", "--json")
    assert code == 0, err
    assert rule["created_by"] == "operator:globex-admin" and rule["status"] == "active"
    assert (
        mw("quota", "set", "mailbox", "grace@globex.test", "100M", "--as", "globex-admin")[0] == 0
    )

    err = refused(
        mw,
        db,
        "forward",
        "add",
        "alice@acme.test",
        "bob@acme.test",
        *DOCUMENTED,
        "--as",
        "globex-admin",
    )
    assert err.strip() == (
        "error: operator globex-admin (domain-admin of globex.test) may not add forwards on "
        "acme.test: that needs owner or domain-admin for acme.test"
    )
    refused(
        mw,
        db,
        "domain",
        "policy",
        "acme.test",
        "--external-forwarding",
        "on",
        "--as",
        "globex-admin",
    )
    refused(mw, db, "alias", "disable", "1", "--reason", "not mine", "--as", "globex-admin")
    refused(
        mw,
        db,
        "mailbox",
        "create",
        "eve@acme.test",
        "--owner",
        "Alice Martin",
        "--as",
        "globex-admin",
    )
    # Nor the organization: domains, operators, clients and the domain's own quota.
    refused(
        mw, db, "domain", "create", "initech.test", "--client", "Globex", "--as", "globex-admin"
    )
    refused(
        mw,
        db,
        "operator",
        "create",
        "eve",
        "--person",
        "Grace Liu",
        "--role",
        "owner",
        "--as",
        "globex-admin",
    )
    refused(mw, db, "client", "create", "Initech", "--as", "globex-admin")
    refused(mw, db, "quota", "set", "domain", "globex.test", "1G", "--as", "globex-admin")
    refused(mw, db, "domain", "activate", "globex.test", "--reason", "mine", "--as", "globex-admin")


def test_helpdesk_may_suspend_but_not_change_routing(mw: Mailward, db: Database) -> None:
    """Ensure the helpdesk suspends a mailbox but is refused routing changes and reactivation."""
    refused(
        mw,
        db,
        "forward",
        "add",
        "alice@acme.test",
        "bob@acme.test",
        *DOCUMENTED,
        "--as",
        "helpdesk",
    )
    refused(
        mw,
        db,
        "alias",
        "add",
        "sales@acme.test",
        "bob@acme.test",
        *DOCUMENTED[:4],
        "--as",
        "helpdesk",
    )
    refused(
        mw, db, "catchall", "set", "acme.test", "bob@acme.test", *DOCUMENTED, "--as", "helpdesk"
    )
    err = refused(
        mw, db, "domain", "policy", "acme.test", "--external-forwarding", "on", "--as", "helpdesk"
    )
    assert "may not change the forwarding policy of acme.test" in err
    refused(mw, db, "alias", "disable", "1", "--reason", "cleanup", "--as", "helpdesk")
    assert (
        mw("mailbox", "suspend", "bob@acme.test", "--reason", "phished", "--as", "helpdesk")[0] == 0
    )
    refused(mw, db, "mailbox", "activate", "bob@acme.test", "--reason", "fine", "--as", "helpdesk")
    code, _, err = mw("mailbox", "activate", "bob@acme.test", "--reason", "fine", "--as", "admin")
    assert code == 0, err


def test_owner_may_change_anything(mw: Mailward) -> None:
    """Ensure the organization-wide owner passes every check, on every domain."""
    for step in (
        ("domain", "create", "initech.test", "--client", "Acme"),
        ("domain", "policy", "acme.test", "--external-forwarding", "on"),
        ("forward", "add", "alice@acme.test", "alice.away@example.com", *DOCUMENTED),
        ("alias", "disable", "1", "--reason", "site relaunched"),
        ("domain", "policy", "globex.test", "--external-forwarding", "on"),
        GLOBEX_FORWARD,
        ("quota", "set", "domain", "globex.test", "100M"),
        ("domain", "activate", "globex.test", "--reason", "routine"),
    ):
        code, _, err = mw(*step, "--as", "admin")
        assert code == 0, (step, err)


def test_dkim_keys_follow_the_domain_scope(mw: Mailward, data: Path, db: Database) -> None:
    """Ensure globex-admin rotates globex.test keys but no key file appears for acme.test."""
    code, _, err = mw("dkim", "rotate", "globex.test", "--as", "globex-admin")
    assert code == 0, err
    refused(mw, db, "dkim", "rotate", "acme.test", "--as", "globex-admin")
    refused(mw, db, "dkim", "rotate", "acme.test", "--as", "auditor")
    assert not list((data / "dkim").glob("acme.test*"))
