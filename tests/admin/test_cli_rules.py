"""Governed persistence through the CLI: forwards, aliases and catch-alls (hard rule 5)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from admin.cli import main

Mailward = Callable[..., tuple[int, Any, str]]
EXTERNAL = "alice.away@example.com"
DOCUMENTED = ("--owner", "Alice Martin", "--purpose", "vacation cover until January")


@pytest.fixture
def mw(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Mailward:
    """Run the CLI on a demo data folder; returns (exit code, parsed JSON or text, stderr)."""
    data = str(tmp_path / "var")
    assert main(["init", "--demo", "--data", data]) == 0
    capsys.readouterr()

    def run(*argv: str) -> tuple[int, Any, str]:
        code = main(["--data", data, *argv])
        out, err = capsys.readouterr()
        return code, json.loads(out) if "--json" in argv and code == 0 else out, err

    return run


def _allow_external(mw: Mailward) -> None:
    code, _, err = mw(
        "domain", "policy", "acme.test", "--external-forwarding", "on", "--as", "admin"
    )
    assert code == 0, err


def test_forward_refused_without_purpose(mw: Mailward) -> None:
    """Ensure a forward without a purpose is refused with the service's reason."""
    _allow_external(mw)
    code, _, err = mw(
        "forward",
        "add",
        "alice@acme.test",
        EXTERNAL,
        "--owner",
        "Alice Martin",
        "--days",
        "7",
        "--as",
        "admin",
    )
    assert code == 2 and "purpose" in err


def test_forward_refused_without_expiry(mw: Mailward) -> None:
    """Ensure a forward without --expires or --days is refused."""
    _allow_external(mw)
    code, _, err = mw("forward", "add", "alice@acme.test", EXTERNAL, *DOCUMENTED, "--as", "admin")
    assert code == 2 and "expiry" in err


def test_forward_refused_beyond_the_domain_cap(mw: Mailward) -> None:
    """Ensure an expiry past the domain's max rule days is refused, and the cap itself passes."""
    _allow_external(mw)
    code, _, err = mw(
        "forward", "add", "alice@acme.test", EXTERNAL, *DOCUMENTED, "--days", "91", "--as", "admin"
    )
    assert code == 2 and "cap of 90 days" in err
    code, _, err = mw(
        "forward", "add", "alice@acme.test", EXTERNAL, *DOCUMENTED, "--days", "90", "--as", "admin"
    )
    assert code == 0, err


def test_external_forward_follows_the_domain_policy(mw: Mailward) -> None:
    """Ensure an external forward is refused while the domain disallows it, then accepted."""
    argv = (
        "forward",
        "add",
        "alice@acme.test",
        EXTERNAL,
        *DOCUMENTED,
        "--days",
        "14",
        "--as",
        "admin",
        "--json",
    )
    code, _, err = mw(*argv)
    assert code == 2 and "external forwarding is disabled" in err
    assert mw("forward", "list", "--json")[1] == []
    _allow_external(mw)
    code, rule, err = mw(*argv)
    assert code == 0, err
    assert rule["external"] is True and rule["status"] == "active"
    assert rule["created_by"] == "operator:admin" and rule["owner"] == "Alice Martin"
    listed = mw("forward", "list", "--mailbox", "alice@acme.test", "--json")[1]
    assert [r["id"] for r in listed] == [rule["id"]]
    shown = mw("mailbox", "show", "alice@acme.test", "--json")[1]
    assert shown["rules"][0]["to"] == EXTERNAL
    assert shown["last_change"]["action"] == "forward.create"


def test_forward_disable_needs_a_reason_and_is_audited(mw: Mailward) -> None:
    """Ensure disabling a forward keeps the row, shows it disabled, and records the reason."""
    code, rule, err = mw(
        "forward",
        "add",
        "alice@acme.test",
        "bob@acme.test",
        *DOCUMENTED,
        "--expires",
        "2099-01-01",
        "--as",
        "admin",
        "--json",
    )
    assert code == 2 and "cap" in err  # 2099 is far beyond the 90-day cap
    code, rule, err = mw(
        "forward",
        "add",
        "alice@acme.test",
        "bob@acme.test",
        *DOCUMENTED,
        "--days",
        "5",
        "--no-keep-copy",
        "--as",
        "admin",
        "--json",
    )
    assert code == 0, err
    assert rule["external"] is False and rule["keep_copy"] is False
    assert mw("forward", "disable", str(rule["id"]), "--as", "admin")[0] == 2  # no --reason
    code, disabled, err = mw(
        "forward",
        "disable",
        str(rule["id"]),
        "--reason",
        "back early",
        "--as",
        "admin",
        "--json",
    )
    assert code == 0, err
    assert disabled["enabled"] is False and disabled["status"] == "rule-disabled"
    entries = mw("log", "audit", "--target", f"forward:{rule['id']}", "--json")[1]
    assert [(e["action"], e["actor"]) for e in entries] == [
        ("forward.create", "operator:admin"),
        ("forward.disable", "operator:admin"),
    ]
    assert entries[-1]["reason"] == "back early"
    assert entries[-1]["before"]["enabled"] is True and entries[-1]["after"]["enabled"] is False


def test_alias_and_catchall_are_documented_and_owned(mw: Mailward) -> None:
    """Ensure aliases and catch-alls need an owner and purpose, and catch-alls an expiry."""
    code, _, err = mw("alias", "add", "sales@acme.test", "bob@acme.test", "--as", "admin")
    assert code == 2 and "owner" in err and "purpose" in err
    code, alias, err = mw(
        "alias",
        "add",
        "sales@acme.test",
        "bob@acme.test",
        "--owner",
        "Bob Chen",
        "--purpose",
        "sales enquiries from the website",
        "--as",
        "admin",
        "--json",
    )
    assert code == 0, err
    assert alias["status"] == "active" and alias["expires_at"] is None
    catch = (
        "catchall",
        "set",
        "globex.test",
        "grace@globex.test",
        "--owner",
        "Grace Liu",
        "--purpose",
        "domain migration: catch mistyped addresses",
    )
    code, _, err = mw(*catch, "--as", "globex-admin")
    assert code == 2 and "expiry" in err
    code, rule, err = mw(*catch, "--days", "30", "--as", "globex-admin", "--json")
    assert code == 0, err
    assert rule["domain"] == "globex.test" and rule["status"] == "active"
    assert [c["id"] for c in mw("catchall", "list", "--json")[1]] == [rule["id"]]
    code, _, err = mw(
        "catchall", "disable", str(rule["id"]), "--reason", "migration done", "--as", "globex-admin"
    )
    assert code == 0, err
    assert mw("catchall", "list", "--json")[1][0]["status"] == "rule-disabled"


def test_rule_listings_print_tables(mw: Mailward) -> None:
    """Ensure the text listings show the governance columns."""
    assert mw("forward", "list")[1].strip() == "no forwarding rules"
    header = mw("alias", "list")[1].splitlines()[0].split()
    assert header[:4] == ["ID", "ADDRESS", "TARGET", "OWNER"] and header[-1] == "STATUS"


def test_rule_status_matches_the_delivery_path(mw: Mailward) -> None:
    """Ensure listings flag a rule the router would skip: suspended target or suspended domain."""
    code, _, err = mw(
        "forward",
        "add",
        "alice@acme.test",
        "bob@acme.test",
        *DOCUMENTED,
        "--days",
        "5",
        "--as",
        "admin",
        "--json",
    )
    assert code == 0, err
    assert mw("mailbox", "suspend", "bob@acme.test", "--reason", "left", "--as", "admin")[0] == 0
    assert mw("forward", "list", "--json")[1][0]["status"] == "target-unavailable"
    assert mw("domain", "suspend", "acme.test", "--reason", "incident", "--as", "admin")[0] == 0
    assert mw("alias", "list", "--json")[1][0]["status"] == "domain-suspended"
