"""SQLite connection settings: what each kind of connection runs with."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from storage.db import READER_CACHE_KIB, Database, sqlite_url

SQLITE_DEFAULT_CACHE = -2000  # KiB, SQLite's compile-time default


def _pragma(conn, name: str) -> int | str:
    return conn.exec_driver_sql(f"PRAGMA {name}").scalar()


def test_the_writer_syncs_every_commit_and_keeps_the_default_cache(tmp_path: Path) -> None:
    db = Database(sqlite_url(tmp_path))
    try:
        with db.engine.connect() as conn:
            assert _pragma(conn, "journal_mode") == "wal"
            assert _pragma(conn, "synchronous") == 2  # FULL: the WAL is fsynced at commit
            assert _pragma(conn, "cache_size") == SQLITE_DEFAULT_CACHE
    finally:
        db.dispose()


def test_readers_keep_a_small_cache_of_their_own(tmp_path: Path) -> None:
    db = Database(sqlite_url(tmp_path))
    try:
        with db.reader() as session:
            assert session.execute(text("PRAGMA cache_size")).scalar() == -READER_CACHE_KIB
        # read_value's per-thread connection is a reader too.
        raw = db._open_reader()
        try:
            cursor = raw.cursor()
            cursor.execute("PRAGMA cache_size")
            assert cursor.fetchone()[0] == -READER_CACHE_KIB
        finally:
            db._close_reader(raw)
    finally:
        db.dispose()
