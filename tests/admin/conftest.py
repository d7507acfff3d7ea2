"""Fixtures for the identity lifecycle: a seeded control plane and the admin app on port 0.

Argon2 is slow on purpose. Tests swap in a minimal-cost argon2id hasher
(``cheap_argon2``): hashes keep the argon2id format and verify anywhere,
including in the IMAP and SMTP servers, only faster. This is the documented
test setting; production code never changes the parameters.

``identity_world`` starts ``admin.web.server.start_admin`` on 127.0.0.1
port 0 inside the test's event loop, with the file-sink notifier writing to
``<data>/outbox``, and gives the test an ``httpx.AsyncClient`` per actor.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy.orm import Session

from admin.services import directory as d
from admin.services import operators as ops
from admin.web.context import AdminServices, build_services
from admin.web.server import AdminServer, bind, start_admin
from storage import secrets as storage_secrets
from storage.db import Database, sqlite_url

T = TypeVar("T")
ACTOR = "system:test"
OWNER_NAME = "Erin Ford"
OWNER_EMAIL = "erin.ford@example.org"
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
_LINK = re.compile(r"https?://[^\s]+")
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Minimal-cost argon2id for the test (see the module docstring)."""
    monkeypatch.setattr(storage_secrets, "_hasher", CHEAP_HASHER)
    yield


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF field in the page"
    return match.group(1)


@dataclass
class IdentityWorld:
    db: Database
    services: AdminServices
    server: AdminServer
    data: Path
    clock: Clock
    ids: dict[str, int]
    seen: list[tuple[str, str]] = field(default_factory=list)  # (url, body) of every response

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def outbox(self) -> Path:
        return self.data / "outbox"

    def tx(self, fn: Callable[[Session], T]) -> T:
        with self.db.session() as session:
            return fn(session)

    def client(self, **headers: str) -> httpx.AsyncClient:
        async def keep(response: httpx.Response) -> None:
            await response.aread()
            self.seen.append((str(response.request.url), response.text))

        return httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=30,
            follow_redirects=True,
            event_hooks={"response": [keep]},
        )

    def api(self, username: str) -> httpx.AsyncClient:
        """A client authenticated with a fresh API token of ``username``."""

        def create(session: Session) -> str:
            operator = d.find_operator(session, username)
            return ops.create_api_token(
                session, operator=operator, now=self.clock(), name="test", days=1
            ).token

        return self.client(authorization=f"Bearer {self.tx(create)}")

    def notes(self, kind: str) -> list[str]:
        """Bodies of the outbox notifications of one kind, oldest first."""
        return [p.read_text() for p in sorted(self.outbox.glob(f"*-{kind}-*.txt"))]

    def last_link(self, kind: str) -> str:
        notes = self.notes(kind)
        assert notes, f"no {kind} notification in the outbox"
        links = _LINK.findall(notes[-1])
        assert links, notes[-1]
        return links[-1]

    async def form_post(
        self, client: httpx.AsyncClient, url: str, data: dict[str, str], *, page: str | None = None
    ) -> httpx.Response:
        """GET the page (for its CSRF token) and POST ``data`` to ``url`` with that token."""
        shown = await client.get(page or url)
        return await client.post(url, data={**data, "csrf": csrf_of(shown.text)})


PASSWORD = "violet kettle drum 9 orbit"


async def create_invite(world: IdentityWorld, **body: Any) -> dict[str, Any]:
    """An invite for Erin on acme.test created by the owner operator over the API."""
    async with world.api("admin") as api:
        response = await api.post(
            "/api/invites", json={"domain": "acme.test", "owner": OWNER_NAME, **body}
        )
        assert response.status_code == 201, response.text
        return dict(response.json())


async def accept_invite(
    world: IdentityWorld, link: str, local_part: str, password: str = PASSWORD
) -> httpx.Response:
    async with world.client() as browser:
        page = await browser.get(link)
        assert page.status_code == 200, page.text
        return await browser.post(
            link,
            data={
                "local_part": local_part,
                "password": password,
                "confirm": password,
                "csrf": csrf_of(page.text),
            },
        )


async def provision(world: IdentityWorld, local_part: str = "erin") -> list[str]:
    """A mailbox set up through the invite flow; returns its recovery codes."""
    await create_invite(world)
    done = await accept_invite(world, world.last_link("invite"), local_part)
    assert done.status_code == 200, done.text
    return codes_in(done.text)


async def sign_in(
    world: IdentityWorld, client: httpx.AsyncClient, address: str, password: str = PASSWORD
) -> httpx.Response:
    return await world.form_post(client, "/login", {"address": address, "password": password})


@contextlib.asynccontextmanager
async def imap_server(world: IdentityWorld) -> AsyncIterator[int]:
    """The IMAP server over the same database, plaintext login allowed on loopback."""
    from imap.auth import Authenticator
    from imap.config import IMAPSettings, LoginLimits
    from imap.events import MailboxEvents
    from imap.server import IMAPContext, start_imap
    from storage.mailindex import MailStore

    ctx = IMAPContext(
        db=world.db,
        store=MailStore(world.db, world.data / "mail"),
        events=MailboxEvents(asyncio.get_running_loop()),
        authenticator=Authenticator(world.db, limits=LoginLimits(failure_delay=0.0)),
        settings=IMAPSettings(allow_plaintext_on_loopback=True),
        hostname="imap.acme.test",
    )
    server = await start_imap(ctx, host="127.0.0.1", port=0, tls_context=None, implicit_tls=False)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        ctx.close_connections()
        await server.wait_closed()


def imap_login(port: int, user: str, password: str) -> str:
    client = imaplib.IMAP4("127.0.0.1", port, timeout=10)
    try:
        status, _ = client.login(user, password)
        return str(status)
    except imaplib.IMAP4.error as exc:
        return f"NO {exc}"
    finally:
        client.shutdown()


def seed_identity(db: Database, now: datetime) -> dict[str, int]:
    with db.session() as s:
        org = d.create_organization(s, actor=ACTOR, now=now, name="Agency")
        client = d.create_client(s, actor=ACTOR, now=now, organization=org, name="Acme")
        acme = d.create_domain(s, actor=ACTOR, now=now, client=client, name="acme.test")
        other = d.create_domain(s, actor=ACTOR, now=now, client=client, name="other.test")
        erin = d.create_person(
            s, actor=ACTOR, now=now, organization=org, name=OWNER_NAME, contact_email=OWNER_EMAIL
        )
        staff = {
            name: d.create_person(
                s,
                actor=ACTOR,
                now=now,
                organization=org,
                name=name,
                contact_email=f"{name.lower()}@example.org",
            )
            for name in ("Olivia", "Carol", "Dan", "Gus", "Ned")
        }
        roles = {
            "admin": ("Olivia", [("owner", None)]),
            "helpdesk": ("Carol", [("helpdesk", None), ("approver", None)]),
            "approver": ("Dan", [("approver", acme)]),
            "other-approver": ("Gus", [("approver", other)]),
            "auditor": ("Ned", [("auditor", None)]),
        }
        for username, (person, grants) in roles.items():
            d.create_operator(
                s, actor=ACTOR, now=now, person=staff[person], username=username, roles=grants
            )
        return {"org": org.id, "acme": acme.id, "other": other.id, "erin": erin.id}


@pytest.fixture
async def identity_world(tmp_path: Path, cheap_argon2: None) -> AsyncIterator[IdentityWorld]:
    """The admin app over a seeded control plane, served on 127.0.0.1 port 0."""
    data = tmp_path / "var"
    data.mkdir()
    db = Database(sqlite_url(data))
    db.migrate()
    clock = Clock()
    ids = seed_identity(db, clock())
    sock = bind("127.0.0.1", 0)  # bound first: the links name its port
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    services = replace(
        build_services(db, data_dir=data, mail_root=data / "mail", url=url), clock=clock
    )
    server = await start_admin(services, sock=sock)
    try:
        yield IdentityWorld(db, services, server, data, clock, ids)
    finally:
        await server.stop()
        db.dispose()


def links_in(text: str) -> list[str]:
    return _LINK.findall(text)


def codes_in(html: str) -> list[str]:
    return re.findall(r"<li>([0-9a-z]{5}-[0-9a-z]{5})</li>", html)


def as_dict(row: Any) -> dict[str, Any]:
    return {c.key: getattr(row, c.key) for c in row.__table__.columns}
