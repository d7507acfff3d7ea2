"""`mailward reindex` over a demo data folder."""

from __future__ import annotations

import json
from pathlib import Path

from admin.cli import main


def test_reindex_picks_up_files_on_disk(tmp_path: Path, capsys) -> None:
    """Ensure reindex indexes Maildir files found on disk, needs --as and is audited."""
    data = str(tmp_path / "var")
    assert main(["init", "--demo", "--data", data]) == 0
    inbox = tmp_path / "var/mail/acme.test/alice"
    for sub in ("cur", "new", "tmp"):
        (inbox / sub).mkdir(parents=True)
    (inbox / "new" / "1700000000.M1P1.host,S=16").write_bytes(b"Subject: a\n\nbody\n")
    capsys.readouterr()
    assert main(["reindex", "alice@acme.test", "--data", data]) == 2
    assert main(["reindex", "alice@acme.test", "--data", data, "--as", "admin", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row == {"mailbox": "alice@acme.test", "folders": 1, "messages": 1}
    assert main(["log", "audit", "--action", "mailbox.reindex", "--json", "--data", data]) == 0
    [entry] = json.loads(capsys.readouterr().out)
    assert entry["actor"] == "operator:admin"
