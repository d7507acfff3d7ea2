"""Shared fixtures: a real database on each backend, a clock, a data folder.

The storage tests run on SQLite always and on PostgreSQL when
``MAILWARD_TEST_PG`` names a server (``.ci/run`` sets it). Each test gets its
own PostgreSQL schema, dropped afterwards, so tests never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from storage.db import Database, sqlite_url

PG_ENV = "MAILWARD_TEST_PG"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _postgres_database() -> Iterator[Database]:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"PostgreSQL tests need {PG_ENV}=postgresql+psycopg://user@host:port/db")
    schema = f"mw_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in url else "?"
    db = Database(f"{url}{sep}options=-csearch_path%3D{schema}")
    try:
        db.migrate()
        yield db
    finally:
        db.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated control-plane database on each backend."""
    if request.param == "postgres":
        yield from _postgres_database()
        return
    database = Database(sqlite_url(tmp_path))
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    """A migrated SQLite database, for tests whose subject is not the backend."""
    database = Database(sqlite_url(tmp_path))
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def now() -> datetime:
    return NOW
