"""`mailward queue` and `mailward dkim` over a demo data folder."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import dkim

from admin.cli import main
from admin.config import load_settings
from storage.db import Database
from storage.spool import Spool


def _queue_one(data: Path) -> str:
    settings = load_settings(data)
    db = Database(settings.db_url)
    spool = Spool(settings.spool_root)
    spooled = spool.write("ABCDEF0123456789", b"Subject: out\r\n\r\nhi\r\n")
    with db.session() as s:
        spool.record(s, spooled, "alice@acme.test", ["x@remote.example"], datetime.now(UTC))
    db.dispose()
    return spooled.queue_id


def test_queue_commands_are_audited(tmp_path: Path, capsys) -> None:
    """Ensure queue list/show/hold/release/delete work, need --as and are audited."""
    data = str(tmp_path / "var")
    assert main(["init", "--demo", "--data", data]) == 0
    qid = _queue_one(tmp_path / "var")
    capsys.readouterr()
    assert main(["queue", "list", "--json", "--data", data]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["queue_id"] == qid and row["state"] == "queued"
    assert main(["queue", "hold", qid, "--data", data]) == 2
    for verb in ("hold", "release", "retry"):
        assert main(["queue", verb, qid, "--as", "admin", "--data", data]) == 0
    capsys.readouterr()
    assert main(["queue", "show", qid, "--json", "--data", data]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["state"] == "queued" and shown["details"][0]["address"] == "x@remote.example"
    assert main(["queue", "delete", qid, "--as", "admin", "--reason", "spam", "--data", data]) == 0
    assert not (tmp_path / "var/queue" / f"{qid}.eml").exists()
    capsys.readouterr()
    assert main(["log", "audit", "--action", "queue.*", "--json", "--data", data]) == 0
    actions = [e["action"] for e in json.loads(capsys.readouterr().out)]
    assert actions == ["queue.hold", "queue.release", "queue.retry", "queue.delete"]


def test_dkim_rotate_publishes_before_signing(tmp_path: Path, capsys) -> None:
    """Ensure rotate stages new keys (published, not signing) and a second rotate activates them."""
    data = str(tmp_path / "var")
    assert main(["init", "--demo", "--data", data]) == 0
    capsys.readouterr()
    assert main(["dkim", "rotate", "acme.test", "--as", "admin", "--json", "--data", data]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["action"] == "activated" and len(first["records"]) == 2
    assert main(["dkim", "rotate", "acme.test", "--as", "admin", "--json", "--data", data]) == 0
    staged = json.loads(capsys.readouterr().out)
    assert staged["action"] == "staged" and len(staged["records"]) == 4
    assert main(["dkim", "show", "acme.test", "--json", "--data", data]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["active"] == first["generation"] and shown["next"] == staged["generation"]
    assert all("PRIVATE" not in r["value"] for r in shown["records"])
    rsa = next(r for r in shown["records"] if "k=rsa" in r["value"] or "p=MII" in r["value"])
    assert dkim.util.parse_tag_value(rsa["value"].encode())[b"p"]
    keyfiles = list((tmp_path / "var/dkim/acme.test").glob("*.key"))
    assert keyfiles and all(f.stat().st_mode & 0o077 == 0 for f in keyfiles)
