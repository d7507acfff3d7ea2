"""The ``mailward`` CLI, run in-process through ``admin.cli.main`` (one test runs the script)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from admin.cli import main
from admin.demo import DEMO_ORGANIZATION, seed_demo
from admin.services import ServiceError
from storage.db import Database
from storage.models import Alias, AuditEntry, Mailbox, Operator, Organization, Person


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
def mw(data: Path, capsys: pytest.CaptureFixture[str]) -> Mailward:
    def run(*argv: str) -> Run:
        code = main(["--data", str(data), *argv])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


@pytest.fixture
def demo(mw: Mailward) -> Mailward:
    assert mw("init", "--demo").code == 0
    return mw


def _counts(data: Path) -> dict[str, int]:
    db = Database(f"sqlite:///{data / 'mailward.db'}")
    try:
        with db.session() as session:
            return {
                model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
                for model in (Organization, Person, Operator, Mailbox, Alias, AuditEntry)
            }
    finally:
        db.dispose()


def test_init_is_idempotent(mw: Mailward, data: Path) -> None:
    """Ensure running init --demo twice succeeds and adds nothing the second time."""
    first = mw("init", "--demo")
    assert first.code == 0, first.err
    assert str(data.resolve()) in first.out
    counts = _counts(data)
    assert counts["mailbox"] >= 3 and counts["organization"] == 1
    second = mw("init", "--demo")
    assert second.code == 0, second.err
    assert "already" in second.out
    assert _counts(data) == counts
    assert mw("init").code == 0
    assert _counts(data) == counts


def test_init_without_demo_creates_an_empty_control_plane(mw: Mailward, data: Path) -> None:
    """Ensure plain init creates the folder and schema and nothing else."""
    result = mw("init", "--json")
    assert result.code == 0, result.err
    assert result.json()["created"] is True
    assert (data / "mailward.db").exists()
    assert set(_counts(data).values()) == {0}
    assert mw("--json", "init").json()["created"] is False


def test_demo_is_fully_owned_and_reachable_out_of_band(sqlite_db: Database, now: datetime) -> None:
    """Ensure seed_demo creates owned mailboxes, a documented alias and off-domain contacts."""
    summary = seed_demo(sqlite_db, now)
    assert summary.organization == DEMO_ORGANIZATION
    assert {"acme.test", "globex.test"} <= set(summary.domains)
    with sqlite_db.session() as session:
        mailboxes = session.scalars(select(Mailbox)).all()
        assert {f"{m.local_part}@{m.domain.name}" for m in mailboxes} >= {
            "alice@acme.test",
            "bob@acme.test",
            "support@acme.test",
        }
        assert all((m.owner_person_id is None) != (m.owner_role_id is None) for m in mailboxes)
        aliases = session.scalars(select(Alias)).all()
        assert aliases and all(a.purpose and not a.external for a in aliases)
        assert all(a.owner_person_id or a.owner_role_id for a in aliases)
        hosted = {m.domain.name for m in mailboxes}
        for person in session.scalars(select(Person)):
            assert person.contact_email or person.contact_phone
            if person.contact_email:
                assert person.contact_email.rpartition("@")[2] not in hosted
        usernames = set(session.scalars(select(Operator.username)))
        assert {"admin", "helpdesk", "approver"} <= usernames
        actors = set(session.scalars(select(AuditEntry.actor)))
        assert actors == {"system:init"}
    with pytest.raises(ServiceError):
        seed_demo(sqlite_db, now)


def test_global_options_before_and_after_the_command(
    demo: Mailward, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ensure --data and --json work before the command, after it, and between noun and verb."""
    outputs = []
    for argv in (
        ["--json", "--data", str(data), "domain", "list"],
        ["domain", "list", "--json", "--data", str(data)],
        ["domain", "--data", str(data), "list", "--json"],
        ["--data", "elsewhere", "domain", "list", "--data", str(data), "--json"],
    ):
        assert main(argv) == 0, argv
        outputs.append(json.loads(capsys.readouterr().out))
    assert all(output == outputs[0] for output in outputs)
    assert {d["name"] for d in outputs[0]} == {"acme.test", "globex.test"}
    assert not demo("domain", "list").out.startswith("[")  # text unless --json is given


def test_json_output_parses_for_lists_shows_and_creates(demo: Mailward) -> None:
    """Ensure --json prints one document: a list for list commands, an object otherwise."""
    for noun in ("org", "client", "domain", "person", "role", "operator", "mailbox", "alias"):
        listing = demo(noun, "list", "--json")
        assert listing.code == 0, listing.err
        assert isinstance(listing.json(), list) and listing.json(), noun
    shown = demo("domain", "show", "acme.test", "--json").json()
    assert shown["name"] == "acme.test" and isinstance(shown["operators"], list)
    created = demo("client", "create", "Initech", "--quota", "100M", "--as", "admin", "--json")
    assert created.code == 0, created.err
    assert created.json()["quota_bytes"] == 100 * 1024**2


def test_text_output_is_an_aligned_table(demo: Mailward) -> None:
    """Ensure list commands print a header row and columns that line up."""
    lines = demo("mailbox", "list").out.splitlines()
    assert lines[0].startswith("ADDRESS")
    column = lines[0].index("OWNER")
    assert all(line[column - 2 : column] == "  " for line in lines[1:])
    assert any(line.startswith("alice@acme.test") for line in lines)


def test_changes_are_refused_without_an_acting_operator(demo: Mailward, data: Path) -> None:
    """Ensure a change without --as, or with an unknown operator, exits 2 and writes nothing."""
    counts = _counts(data)
    refused = demo("domain", "create", "initech.test", "--client", "Acme")
    assert refused.code == 2
    assert "--as" in refused.err and refused.err.startswith("error:")
    assert "Traceback" not in refused.err
    unknown = demo("domain", "create", "initech.test", "--client", "Acme", "--as", "mallory")
    assert unknown.code == 2 and "mallory" in unknown.err
    assert _counts(data) == counts
    accepted = demo("--as", "admin", "domain", "create", "initech.test", "--client", "Acme")
    assert accepted.code == 0, accepted.err


def test_user_errors_exit_2_without_a_traceback(demo: Mailward, tmp_path: Path) -> None:
    """Ensure unknown names, bad sizes and an uninitialized folder print one error line."""
    for argv in (
        ("mailbox", "show", "nobody@acme.test"),
        ("quota", "set", "domain", "acme.test", "lots", "--as", "admin"),
        ("mailbox", "create", "carl@acme.test", "--as", "admin"),
        ("person", "create", "Eve", "--email", "eve@acme.test", "--as", "admin"),
        ("domain", "list", "--data", str(tmp_path / "missing")),
    ):
        result = demo(*argv)
        assert result.code == 2, argv
        assert result.err.startswith("error: ") and len(result.err.splitlines()) == 1, argv
    assert "init" in demo("domain", "list", "--data", str(tmp_path / "missing")).err


def test_mailbox_show_answers_owner_reset_and_last_change(demo: Mailward) -> None:
    """Ensure mailbox show names the owner with contacts, who can reset, and the last change."""
    suspended = demo("mailbox", "suspend", "bob@acme.test", "--reason", "left", "--as", "admin")
    assert suspended.code == 0, suspended.err
    card = demo("mailbox", "show", "bob@acme.test", "--json").json()
    assert card["state"] == "suspended"
    assert card["owner"]["name"] == "Bob Chen"
    assert card["owner"]["people"][0]["email"] == "bob.chen@example.org"
    resetters = {entry["operator"] for entry in card["can_reset"]}
    assert {"admin", "helpdesk", "approver"} <= resetters
    assert "globex-admin" not in resetters  # scoped to another domain
    assert card["last_change"]["action"] == "mailbox.state"
    assert card["last_change"]["actor"] == "operator:admin"
    assert card["recent_changes"][0]["before"]["state"] == "active"

    role_owned = demo("mailbox", "show", "support@acme.test", "--json").json()
    assert role_owned["owner"]["kind"] == "role"
    assert {p["name"] for p in role_owned["owner"]["people"]} == {"Carol Diaz", "Dan Evans"}
    assert [r["kind"] for r in role_owned["rules"]] == ["alias"]

    text = demo("mailbox", "show", "bob@acme.test").out
    assert "Bob Chen" in text and "can reset" in text and "mailbox.state" in text


def test_quota_set_and_show_per_level(demo: Mailward) -> None:
    """Ensure quotas accept K/M/G sizes and none, and show reports used/limit up to the pool."""
    assert demo("quota", "set", "mailbox", "alice@acme.test", "500M", "--as", "admin").code == 0
    chain = demo("quota", "show", "mailbox", "alice@acme.test", "--json").json()
    assert [row["level"] for row in chain] == ["mailbox", "domain", "client", "organization"]
    assert chain[0]["quota_bytes"] == 500 * 1024**2
    assert chain[-1]["quota_bytes"] == 1024**3
    assert demo("quota", "set", "mailbox", "alice@acme.test", "none", "--as", "admin").code == 0
    assert (
        demo("quota", "show", "mailbox", "alice@acme.test", "--json").json()[0]["quota_bytes"]
        is None
    )
    history = demo("log", "audit", "--target", "mailbox:alice@acme.test", "--json").json()
    assert [e["action"] for e in history][-2:] == ["mailbox.quota", "mailbox.quota"]
    overview = demo("quota", "show", "--json").json()
    assert {row["level"] for row in overview} == {"organization", "client", "domain"}


def test_tenancy_commands_from_an_empty_installation(mw: Mailward) -> None:
    """Ensure init bootstraps the first owner, who then builds the tree with --as."""
    boot = (
        "init",
        "--org",
        "Agency",
        "--operator",
        "bill",
        "--person",
        "Bill Lumbergh",
        "--email",
        "bill@example.org",
    )
    assert mw(*boot).code == 0
    assert mw(*boot).code == 0  # idempotent: the operator is already present
    steps = [
        ("quota", "set", "org", "Agency", "2G"),
        ("client", "create", "Initech"),
        ("domain", "create", "initech.test", "--client", "Initech", "--quota", "1G"),
        ("person", "create", "Peter Gibbons", "--email", "peter@example.org"),
        ("person", "create", "Milton W", "--phone", "+1 555 0199"),
        ("role", "create", "Facilities", "--member", "Peter Gibbons", "--member", "Milton W"),
        (
            "operator",
            "create",
            "peter",
            "--person",
            "Peter Gibbons",
            "--role",
            "domain-admin@initech.test",
            "--role",
            "helpdesk",
        ),
        ("mailbox", "create", "peter@initech.test", "--owner", "Peter Gibbons"),
        ("mailbox", "create", "stapler@initech.test", "--owner-role", "Facilities"),
        ("domain", "policy", "initech.test", "--max-rule-days", "30"),
        ("domain", "suspend", "initech.test", "--reason", "unpaid invoice"),
        ("domain", "activate", "initech.test", "--reason", "paid"),
    ]
    for step in steps:
        result = mw(*step, "--as", "bill")
        assert result.code == 0, (step, result.err)
    operators = {o["username"]: o for o in mw("operator", "list", "--json").json()}
    assert operators["bill"]["roles"] == ["owner"]
    assert operators["peter"]["roles"] == ["domain-admin@initech.test", "helpdesk"]
    domain = mw("domain", "show", "initech.test", "--json").json()
    assert domain["max_rule_days"] == 30 and domain["state"] == "active"
    assert domain["quota_bytes"] == 1024**3 and domain["mailboxes"] == 2
    roles = mw("role", "list", "--json").json()
    assert roles[0]["members"] == ["Milton W", "Peter Gibbons"]
    actors = {e["actor"] for e in mw("log", "audit", "--limit", "500", "--json").json()}
    assert actors == {"system:init", "operator:bill"}
    # A second bootstrap with another name is refused: operators now exist.
    other = (
        "init",
        "--org",
        "Agency",
        "--operator",
        "eve",
        "--person",
        "Eve",
        "--email",
        "eve@example.org",
    )
    assert mw(*other).code == 2


def test_entry_point_runs_as_a_program(tmp_path: Path) -> None:
    """Ensure the installed mailward script (or python -m admin.cli) runs and exits 0."""
    script = Path(sys.executable).with_name("mailward")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "admin.cli"]
    data = tmp_path / "var"
    init = subprocess.run(
        [*command, "--data", str(data), "init", "--demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert init.returncode == 0, init.stderr
    listed = subprocess.run(
        [*command, "mailbox", "list", "--json", "--data", str(data)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert "alice@acme.test" in {m["address"] for m in json.loads(listed.stdout)}
    refused = subprocess.run(
        [*command, "--data", str(data), "org", "create", "X"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
