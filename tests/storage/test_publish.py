"""Copies renamed into new/ without an fsync per message: rows, background sync, recovery."""

from __future__ import annotations

import shutil
import smtplib
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, insert, select

from admin.config import Settings
from admin.runtime import running
from storage.db import Database
from storage.maildir import Maildir, unique_name
from storage.models import UnpublishedCopy
from storage.publish import node_id, recover

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
BODY = b"Subject: recovered\n\nstill here\n"


def _row(db: Database, name: str, maildir: str, node: str) -> None:
    with db.session() as s:
        s.execute(insert(UnpublishedCopy).values(name=name, node=node, maildir=maildir, at=NOW))


def _rows(db: Database) -> list[tuple[str, str]]:
    with db.session() as s:
        return [tuple(r) for r in s.execute(select(UnpublishedCopy.name, UnpublishedCopy.node))]


def test_recover_publishes_complete_copies_and_removes_torn_ones(
    db: Database, tmp_path: Path
) -> None:
    """Ensure a crash's leftovers end up published, or removed when never fully written."""
    root = tmp_path / "mail"
    box = Maildir(root / "acme.test" / "alice")
    complete = box.stage(BODY)  # on record, fsynced in tmp/, rename lost
    _row(db, complete.tmp_path.name, "acme.test/alice", "node-a")
    torn_name = unique_name(BODY)  # on record, the write cut short by the crash
    (box.path / "tmp" / torn_name).write_bytes(BODY[:7])
    _row(db, torn_name, "acme.test/alice", "node-a")
    done = box.stage(BODY)  # renamed and durable, its row not yet forgotten
    done.tmp_path.rename(done.new_path)
    _row(db, done.new_path.name, "acme.test/alice", "node-a")
    _row(db, unique_name(BODY), "acme.test/alice", "node-a")  # since expunged by a client
    theirs = box.stage(BODY)  # another node's delivery in flight: not ours to touch
    _row(db, theirs.tmp_path.name, "acme.test/alice", "node-b")

    report = recover(db, root, "node-a")

    assert (report.published, report.already, report.absent, report.incomplete) == (1, 1, 1, 1)
    assert complete.new_path.read_bytes() == BODY
    assert not complete.tmp_path.exists()
    assert not (box.path / "tmp" / torn_name).exists()
    assert not (box.path / "new" / torn_name).exists()
    assert theirs.tmp_path.exists()
    assert _rows(db) == [(theirs.tmp_path.name, "node-b")]
    assert recover(db, root, "node-a").published == 0  # nothing left to do


def test_node_id_is_made_once(tmp_path: Path) -> None:
    first = node_id(tmp_path)
    assert len(first) == 16
    assert node_id(tmp_path) == first


async def test_delivery_forgets_its_rows_once_new_is_synced(tmp_path: Path, db: Database) -> None:
    """Ensure a 250 leaves the copy in new/ and its row is deleted by the background sync."""
    from tests.mta.conftest import seed

    seed(db, NOW)
    settings = _settings(tmp_path)
    async with running(settings, db=db) as stack:
        import asyncio

        def send() -> None:
            with smtplib.SMTP("127.0.0.1", stack.port("smtp"), timeout=10) as client:
                client.sendmail("s@remote.example", ["alice@acme.test", "bob@acme.test"], BODY)

        await asyncio.to_thread(send)
        for name in ("alice", "bob"):
            assert len(list((settings.mail_root / "acme.test" / name / "new").iterdir())) == 1
        deadline = time.monotonic() + 10
        while _count(db) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert _count(db) == 0


async def test_running_publishes_what_a_crash_left_before_serving(
    tmp_path: Path, db: Database
) -> None:
    """Ensure the stack finishes a recorded delivery at start, before any client sees the box."""
    from tests.mta.conftest import seed

    seed(db, NOW)
    box = Maildir(tmp_path / "mail" / "acme.test" / "alice")
    staged = box.stage(BODY)
    _row(db, staged.tmp_path.name, "acme.test/alice", node_id(tmp_path))
    settings = _settings(tmp_path)
    async with running(settings, db=db):
        assert staged.new_path.read_bytes() == BODY
        assert _count(db) == 0


def _settings(data: Path) -> Settings:
    """The stack on loopback port 0, no DNS traffic."""
    from tests.mta.conftest import TEST_DNS, TEST_LISTEN, TEST_SMTP

    return Settings(data_dir=data, smtp=TEST_SMTP, listen=TEST_LISTEN, dns=TEST_DNS)


def _count(db: Database) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(UnpublishedCopy)) or 0)


def test_publisher_forgets_synced_copies_and_keeps_the_rest(
    tmp_path: Path, sqlite_db: Database
) -> None:
    """Ensure a Maildir that cannot be fsynced (removed with its mailbox) keeps only its own
    rows for recovery, while the other directories' rows are forgotten."""
    from storage.committer import GroupCommitter
    from storage.publish import Publisher

    root = tmp_path / "mail"
    kept, gone = Maildir(root / "acme.test" / "alice"), Maildir(root / "acme.test" / "bob")
    staged = [kept.stage(BODY), gone.stage(BODY)]
    for msg, box in zip(staged, ("acme.test/alice", "acme.test/bob"), strict=True):
        _row(sqlite_db, msg.tmp_path.name, box, "node-a")
        msg.tmp_path.rename(msg.new_path)
    shutil.rmtree(gone.path)
    committer = GroupCommitter(sqlite_db)
    publisher = Publisher(committer, interval=3600)  # synced by hand below
    try:
        publisher.renamed(staged)
        publisher.sync()
        assert _rows(sqlite_db) == [(staged[1].new_path.name, "node-a")]
    finally:
        publisher.close()
        committer.close()
