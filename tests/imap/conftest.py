"""A running IMAP server on loopback port 0 over a seeded directory, and clients for it.

``imap_world`` starts ``start_imap`` with alice@acme.test's password set to
:data:`PASSWORD`; ``transcript`` opens a raw connection for byte-level tests
(``send(b"a1 LOGIN ...")``, ``expect(b"a1 OK*")``). The stdlib ``imaplib``
client is used in worker threads through ``world.imaplib()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import re
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import trustme
from argon2 import PasswordHasher
from sqlalchemy import select

from imap.auth import Authenticator
from imap.config import IMAPSettings, LoginLimits
from imap.events import MailboxEvents
from imap.message_cache import encoded_summary
from imap.server import IMAPContext, start_imap
from mta.inbound import listening_port
from storage import maildir
from storage.db import Database
from storage.mailindex import MailStore
from storage.models import Domain, Mailbox
from tests.mta.conftest import seed

PASSWORD = "correct horse battery"
ALICE = "alice@acme.test"
BOB = "bob@acme.test"

TEST_SETTINGS = IMAPSettings(allow_plaintext_on_loopback=True, poll_interval=0.3)
TEST_LIMITS = LoginLimits(failure_delay=0.0)


# argon2id with minimal cost: the hashes verify like production ones, only faster.
_CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def cheap_hash(password: str) -> str:
    return _CHEAP.hash(password)


@cache
def password_hash() -> str:
    return cheap_hash(PASSWORD)


@dataclass
class IMAPWorld:
    db: Database
    store: MailStore
    events: MailboxEvents
    ctx: IMAPContext
    server: asyncio.Server
    mail_root: Path
    now: datetime

    @property
    def port(self) -> int:
        return listening_port(self.server)

    def mailbox_id(self, address: str = ALICE) -> int:
        local, domain = address.split("@")
        with self.db.session() as s:
            return s.scalars(
                select(Mailbox.id).join(Domain).where(
                    Mailbox.local_part == local, Domain.name == domain)
            ).one()  # fmt: skip

    def deliver(self, data: bytes, address: str = ALICE, folder: str = "") -> None:
        """Drop a message into new/ the way the SMTP delivery does."""
        local, domain = address.split("@")
        box = maildir.Maildir(maildir.mailbox_path(self.mail_root, domain, local)).folder(folder)
        maildir.commit([box.stage(data.replace(b"\r\n", b"\n"))])

    def imaplib(self, user: str = ALICE, password: str = PASSWORD) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        client.login(user, password)
        return client

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking client function (imaplib) in a worker thread."""
        return await asyncio.to_thread(fn, *args)


def set_password(db: Database, address: str, pw_hash: str | None) -> None:
    local, domain = address.split("@")
    with db.session() as s:
        mailbox = s.scalars(
            select(Mailbox).join(Domain).where(Mailbox.local_part == local, Domain.name == domain)
        ).one()
        mailbox.password_hash = pw_hash


@contextlib.asynccontextmanager
async def running_imap(
    tmp_path: Path,
    db: Database,
    *,
    settings: IMAPSettings = TEST_SETTINGS,
    limits: LoginLimits = TEST_LIMITS,
    tls_context: ssl.SSLContext | None = None,
    implicit_tls: bool = False,
    pool_bytes: int | None = None,
    seeded: bool = False,
) -> AsyncIterator[IMAPWorld]:
    """A server over ``db``, seeded first unless ``seeded`` (a restart over the same data)."""
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    if not seeded:
        seed(db, now, pool_bytes=pool_bytes)
        set_password(db, ALICE, password_hash())
        set_password(db, BOB, password_hash())
    mail_root = tmp_path / "mail"
    store = MailStore(db, mail_root, encoded_summary)
    events = MailboxEvents(asyncio.get_running_loop())
    ctx = IMAPContext(
        db=db,
        store=store,
        events=events,
        authenticator=Authenticator(db, limits=limits),
        settings=settings,
        hostname="imap.acme.test",
    )
    server = await start_imap(
        ctx, host="127.0.0.1", port=0, tls_context=tls_context, implicit_tls=implicit_tls
    )
    try:
        yield IMAPWorld(db, store, events, ctx, server, mail_root, now)
    finally:
        server.close()
        ctx.close_connections()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 5)


@pytest.fixture
async def world(tmp_path: Path, sqlite_db: Database) -> AsyncIterator[IMAPWorld]:
    """The IMAP server with plaintext login allowed on loopback."""
    async with running_imap(tmp_path, sqlite_db) as w:
        yield w


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_pair(tls_ca: trustme.CA) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context) trusting each other."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("localhost", "127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    tls_ca.configure_trust(client)
    return server, client


def glob(pattern: bytes) -> re.Pattern[bytes]:
    """``*`` matches anything; every other octet, brackets included, stands for itself."""
    return re.compile(b".*".join(re.escape(part) for part in pattern.split(b"*")), re.DOTALL)


class Transcript:
    """A raw IMAP connection: send bytes, expect lines matching a glob."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.lines: list[bytes] = []

    @classmethod
    async def open(cls, port: int, ssl_context: ssl.SSLContext | None = None) -> Transcript:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ssl_context, limit=2**20,
            server_hostname="localhost" if ssl_context else None,
        )  # fmt: skip
        return cls(reader, writer)

    async def send(self, data: bytes, *, end: bytes = b"\r\n") -> None:
        self.writer.write(data + end)
        await self.writer.drain()

    async def line(self, timeout: float = 5.0) -> bytes:
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        if not line:
            raise EOFError("connection closed")
        self.lines.append(line)
        return line

    async def expect(self, pattern: bytes, timeout: float = 5.0) -> list[bytes]:
        """Read lines until one matches ``pattern`` (see :func:`glob`); return all lines read."""
        seen: list[bytes] = []
        while True:
            line = await self.line(timeout)
            seen.append(line)
            if glob(pattern).fullmatch(line.rstrip(b"\r\n")):
                return seen

    async def login(self, user: str = ALICE, password: str = PASSWORD) -> None:
        if not self.lines:
            await self.expect(b"* OK*")  # the greeting
        await self.send(f'L1 LOGIN {user} "{password}"'.encode())
        await self.expect(b"L1 OK*")

    async def closed(self, timeout: float = 5.0) -> bool:
        try:
            data = await asyncio.wait_for(self.reader.read(), timeout)
        except (ConnectionError, TimeoutError):
            return False
        return data == b"" or data.endswith(b"\r\n")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


@pytest.fixture
async def transcript(world: IMAPWorld) -> AsyncIterator[Callable[..., Any]]:
    """A factory of raw connections to ``world``, closed after the test."""
    opened: list[Transcript] = []

    async def connect(ssl_context: ssl.SSLContext | None = None) -> Transcript:
        t = await Transcript.open(world.port, ssl_context)
        opened.append(t)
        return t

    yield connect
    for t in opened:
        await t.close()


def settings(**changes: Any) -> IMAPSettings:
    return replace(TEST_SETTINGS, **changes)


MESSAGE = (
    b"From: Sender <sender@remote.example>\r\n"
    b"To: Alice <alice@acme.test>\r\n"
    b"Subject: hello there\r\n"
    b"Date: Mon, 02 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <m1@remote.example>\r\n"
    b"\r\n"
    b"Hello Alice,\r\nthis is the body.\r\n"
)

MULTIPART = (
    b"From: Bob <bob@acme.test>\r\n"
    b"To: alice@acme.test\r\n"
    b"Subject: report\r\n"
    b"Date: Tue, 03 Nov 2026 09:30:00 +0100\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="XYZ"\r\n'
    b"\r\n"
    b"preamble\r\n"
    b"--XYZ\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"See the attachment.\r\n"
    b"--XYZ\r\n"
    b"Content-Type: application/octet-stream; name=data.bin\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"Content-Disposition: attachment; filename=data.bin\r\n"
    b"\r\n"
    b"AAECAwQ=\r\n"
    b"--XYZ--\r\n"
)
