"""``mailward log``: reading the audit and routing logs and verifying their hash chains."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from admin.cli import main
from storage import chain
from storage.db import Database, sqlite_url
from storage.models import RoutingEntry

Mailward = Callable[..., tuple[int, Any, str]]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "var"


@pytest.fixture
def mw(data: Path, capsys: pytest.CaptureFixture[str]) -> Mailward:
    """Run the CLI on a demo data folder; returns (exit code, parsed JSON or text, stderr)."""
    assert main(["init", "--demo", "--data", str(data)]) == 0
    capsys.readouterr()

    def run(*argv: str) -> tuple[int, Any, str]:
        code = main(["--data", str(data), *argv])
        out, err = capsys.readouterr()
        return code, json.loads(out) if "--json" in argv and out else out, err

    return run


def _route(data: Path, recipient: str, decision: str, at: datetime) -> None:
    db = Database(sqlite_url(data))
    try:
        with db.session() as session:
            entry = RoutingEntry(
                at=at,
                session="s1",
                client_ip="192.0.2.1",
                helo="mx.example",
                mail_from="sender@example.net",
                recipient=recipient,
                decision=decision,
                reason="deliver-mailbox",
                rule_ids="",
                reply="250 2.1.5 OK",
                trace="[]",
            )
            chain.append(session, chain.ROUTING, [entry])
    finally:
        db.dispose()


def test_audit_entries_name_the_operator(mw: Mailward) -> None:
    """Ensure each change is logged with operator:<username> and filters by actor and action."""
    assert mw("mailbox", "suspend", "bob@acme.test", "--reason", "left", "--as", "helpdesk")[0] == 0
    assert mw("--as", "admin", "mailbox", "activate", "bob@acme.test", "--reason", "back")[0] == 0
    code, entries, _ = mw("log", "audit", "--target", "mailbox:bob@acme.test", "--json")
    assert code == 0
    assert [(e["action"], e["actor"], e["reason"]) for e in entries] == [
        ("mailbox.create", "system:init", None),
        ("mailbox.state", "operator:helpdesk", "left"),
        ("mailbox.state", "operator:admin", "back"),
    ]
    by_name = mw("log", "audit", "--actor", "helpdesk", "--json")[1]
    assert [e["actor"] for e in by_name] == ["operator:helpdesk"]
    by_action = mw("log", "audit", "--action", "mailbox.*", "--limit", "2", "--json")[1]
    assert [e["id"] for e in by_action] == [e["id"] for e in entries[1:]]
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert mw("log", "audit", "--since", future, "--json")[1] == []
    text = mw("log", "audit", "--actor", "admin")[1]
    assert text.splitlines()[0].split() == ["ID", "AT", "ACTOR", "ACTION", "TARGET", "REASON"]


def test_routing_log_filters(mw: Mailward, data: Path) -> None:
    """Ensure log routing filters by recipient (exact or glob), decision and time."""
    now = datetime.now(UTC)
    _route(data, "alice@acme.test", "deliver", now - timedelta(days=2))
    _route(data, "nobody@acme.test", "reject", now)
    _route(data, "grace@globex.test", "deliver", now)
    everything = mw("log", "routing", "--json")[1]
    assert [e["recipient"] for e in everything] == [
        "alice@acme.test",
        "nobody@acme.test",
        "grace@globex.test",
    ]
    assert [
        e["recipient"] for e in mw("log", "routing", "--recipient", "*@acme.test", "--json")[1]
    ] == ["alice@acme.test", "nobody@acme.test"]
    rejected = mw("log", "routing", "--decision", "reject", "--json")[1]
    assert [e["recipient"] for e in rejected] == ["nobody@acme.test"]
    recent = mw("log", "routing", "--since", "1d", "--json")[1]
    assert {e["recipient"] for e in recent} == {"nobody@acme.test", "grace@globex.test"}
    assert len(mw("log", "routing", "--limit", "1", "--json")[1]) == 1
    assert mw("log", "routing", "--limit", "0")[0] == 2


def test_log_verify_detects_an_edited_audit_row(mw: Mailward, data: Path) -> None:
    """Ensure log verify exits 0 on intact chains and 1 after a row is edited with SQL."""
    _route(data, "alice@acme.test", "deliver", datetime.now(UTC))
    code, report, _ = mw("log", "verify", "--json")
    assert code == 0
    assert report["ok"] is True
    assert [(c["chain"], c["ok"]) for c in report["chains"]] == [("audit", True), ("routing", True)]
    with closing(sqlite3.connect(data / "mailward.db")) as conn:
        conn.execute("UPDATE audit_log SET actor = 'operator:nobody' WHERE id = 3")
        conn.commit()
    code, text, err = mw("log", "verify")
    assert code == 1, err
    assert "BROKEN at entry 3" in text and "routing log: ok" in text
    code, report, _ = mw("log", "verify", "--json")
    assert code == 1 and report["ok"] is False
    assert report["chains"][0]["broken_at"] == 3


def test_log_verify_detects_a_deleted_routing_row(mw: Mailward, data: Path) -> None:
    """Ensure deleting the last routing entry is reported as a broken chain."""
    for _ in range(2):
        _route(data, "alice@acme.test", "deliver", datetime.now(UTC))
    with closing(sqlite3.connect(data / "mailward.db")) as conn:
        conn.execute("DELETE FROM routing_log WHERE id = 2")
        conn.commit()
    code, report, _ = mw("log", "verify", "--json")
    assert code == 1
    assert [c["ok"] for c in report["chains"]] == [True, False]
