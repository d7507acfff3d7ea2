"""Engines and sessions for the control plane.

SQLite is the embedded default: WAL so readers never block the writer, a busy
timeout so concurrent writers queue instead of failing, and ``BEGIN
IMMEDIATE`` so a transaction that will write takes the write lock up front
(a deferred transaction that upgrades later can deadlock and fail with
"database is locked"). PostgreSQL runs the same code and migrations.

Database errors are translated at this boundary into ``StorageUnavailable``,
which the servers answer with ``451 4.3.0`` or ``NO [UNAVAILABLE]``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from storage.filelock import ProcessLock
from storage.ledger import Statement

SQLITE_BUSY_TIMEOUT_MS = 30_000
# SQLite's own page cache, per connection, of a reader (SQLite's default is
# 2,000 KiB). Readers are many (the pool, and one per thread for
# ``read_value``) and read pages the kernel's page cache holds anyway, so at
# the default each kept its own copy of the hot index: under 50 IMAP sessions
# that was 5 MiB of the process's peak (``bench/``), and a smaller cache
# changed no rate. The writer keeps the default: its B-tree pages are
# modified in place batch after batch.
READER_CACHE_KIB = 256


class StorageUnavailable(RuntimeError):
    """The control plane cannot be read or written right now (temporary)."""


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'mailward.db').resolve()}"


def make_engine(url: str, *, reader: bool = False) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        _configure_sqlite(engine, reader=reader)
        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _configure_sqlite(engine: Engine, *, reader: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL: the WAL is fsynced at every commit, so what a reply reports is
        # on disk (NORMAL would only sync at checkpoints and could lose the
        # last transactions on power loss). Group commit keeps this cheap.
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if reader:
            cur.execute(f"PRAGMA cache_size=-{READER_CACHE_KIB}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Readers take a snapshot (WAL: never blocked by the writer); writers
        # take the write lock up front.
        conn.exec_driver_sql("BEGIN" if reader else "BEGIN IMMEDIATE")


class Database:
    """An engine and its session factory; the one handle the servers share."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.read_engine = make_engine(url, reader=True) if self.is_sqlite else self.engine
        self.read_sessions = sessionmaker(self.read_engine, expire_on_commit=False)
        # SQLite has one writer. Letting writers contend for it means
        # busy-timeout sleeps of whole milliseconds; queueing them on a lock
        # (threads, and the other processes on this file) hands it over at once.
        self._write_lock = self._writer_lock() if self.is_sqlite else None
        self._readers = threading.local()  # see read_value
        self._readers_lock = threading.Lock()
        self._reader_conns: list[Any] = []
        self._reader_generation = 0

    def _writer_lock(self) -> AbstractContextManager[Any]:
        path = self.engine.url.database
        if not path or path == ":memory:" or path.startswith("file:"):
            return threading.Lock()  # private to this process anyway
        return ProcessLock(f"{path}-writer.lock")

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        try:
            with self._write_lock or nullcontext(), self.sessions.begin() as session:
                yield session
        except SQLAlchemyError as exc:
            raise StorageUnavailable(str(exc)) from exc

    def write_lock(self) -> AbstractContextManager[Any]:
        """Held around every write transaction on SQLite (see ``__init__``)."""
        return self._write_lock or nullcontext()

    @contextmanager
    def reader(self) -> Iterator[Session]:
        """A read-only snapshot that never waits for writers (nothing is committed)."""
        try:
            with self.read_sessions() as session, session.begin():
                yield session
                session.rollback()
        except SQLAlchemyError as exc:
            raise StorageUnavailable(str(exc)) from exc

    def read_value(self, statement: Statement, values: Mapping[str, Any] | None = None) -> Any:
        """One value of committed state, read on this thread's own driver connection.

        For the reads made once per message (the directory's version): a
        pooled SQLAlchemy connection costs a checkout, a BEGIN and a ROLLBACK
        around the one SELECT; this connection runs in autocommit, so each
        read is a single statement on a fresh snapshot.
        """
        conn = getattr(self._readers, "conn", None)
        if getattr(self._readers, "generation", None) != self._reader_generation:
            conn = None  # disposed since: its connection is gone
        try:
            if conn is None:
                conn = self._readers.conn = self._open_reader()
                self._readers.generation = self._reader_generation
            compiled = statement.compiled(self.read_engine.dialect)
            cursor = conn.cursor()
            try:
                cursor.execute(compiled.sql, compiled.params(values or {}))
                row = cursor.fetchone()
            finally:
                cursor.close()
        except Exception as exc:  # the driver's own errors: start over on a new connection
            self._readers.conn = None
            if conn is not None:
                self._close_reader(conn)
            raise StorageUnavailable(str(exc)) from exc
        return None if row is None else row[0]

    def _open_reader(self) -> Any:
        conn = self.read_engine.raw_connection()  # checked out for the thread's life
        if not self.is_sqlite:
            conn.driver_connection.autocommit = True  # type: ignore[union-attr]
        with self._readers_lock:
            self._reader_conns.append(conn)
        return conn

    def _close_reader(self, conn: Any) -> None:
        with self._readers_lock:
            if conn in self._reader_conns:
                self._reader_conns.remove(conn)
        with suppress(Exception):
            conn.invalidate()

    def migrate(self) -> None:
        from storage.migrate import upgrade

        upgrade(self.engine)

    def dispose(self) -> None:
        with self._readers_lock:
            readers, self._reader_conns = self._reader_conns, []
            self._reader_generation += 1
        for conn in readers:
            with suppress(Exception):
                conn.invalidate()
        self.engine.dispose()
        self.read_engine.dispose()
        if isinstance(self._write_lock, ProcessLock):
            self._write_lock.close()
