"""A running Mailward stack on loopback port 0, seeded with a small directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from admin.config import DNSOptions, Listen, Settings, SMTPLimits
from admin.runtime import Running, running
from admin.services import directory as d
from storage.db import Database

ACTOR = "system:test"


@dataclass
class World:
    """Ids of what the seed created, and the running stack."""

    stack: Running
    db: Database
    settings: Settings
    owner_id: int
    now: datetime

    @property
    def smtp_port(self) -> int:
        return self.stack.port("smtp")

    def maildir(self, address: str) -> Path:
        local, domain = address.split("@")
        return self.settings.mail_root / domain / local

    def new_files(self, address: str) -> list[Path]:
        new = self.maildir(address) / "new"
        return sorted(new.iterdir()) if new.exists() else []


def seed(db: Database, now: datetime, *, pool_bytes: int | None = None) -> int:
    with db.session() as s:
        org = d.create_organization(s, actor=ACTOR, now=now, name="Agency", quota_bytes=pool_bytes)
        client = d.create_client(s, actor=ACTOR, now=now, organization=org, name="Acme")
        acme = d.create_domain(s, actor=ACTOR, now=now, client=client, name="acme.test")
        d.create_domain(s, actor=ACTOR, now=now, client=client, name="other.test")
        owner = d.create_person(s, actor=ACTOR, now=now, organization=org, name="Alice Owner",
                                contact_email="alice@example.org")  # fmt: skip
        for local in ("alice", "bob", "carol"):
            d.create_mailbox(s, actor=ACTOR, now=now, domain=acme, local_part=local,
                             owner=d.Owner(person_id=owner.id))  # fmt: skip
        return owner.id


TEST_LISTEN = Listen(smtp_port=0, submission_port=0, submissions_port=0, imap_port=0,
                     imaps_port=0, admin_port=0)  # fmt: skip


# No DNS traffic leaves loopback in tests: sender checks have their own tests
# with a local DNS server; here nothing listens on the named port.
TEST_SMTP = SMTPLimits(verify_senders=False)
TEST_DNS = DNSOptions(nameservers=["127.0.0.1"], port=9)


async def _world(tmp_path: Path, db: Database) -> AsyncIterator[World]:
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    owner_id = seed(db, now)
    settings = Settings(data_dir=tmp_path, listen=TEST_LISTEN, smtp=TEST_SMTP, dns=TEST_DNS)
    async with running(settings, db=db) as stack:
        yield World(stack, db, settings, owner_id, now)


@pytest.fixture
async def world(tmp_path: Path, sqlite_db: Database) -> AsyncIterator[World]:
    """The stack on SQLite with alice, bob and carol at acme.test."""
    async for w in _world(tmp_path, sqlite_db):
        yield w


@pytest.fixture
async def any_world(tmp_path: Path, db: Database) -> AsyncIterator[World]:
    """The same stack on each database backend."""
    async for w in _world(tmp_path, db):
        yield w
