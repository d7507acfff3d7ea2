"""The composition root: configuration → storage → servers, in one asyncio process.

Only this module reads configuration; every server gets explicit arguments.
``serve`` runs until SIGTERM or SIGINT, then stops accepting connections,
lets in-flight deliveries finish (bounded), and closes the database. A
delivery that is cut off was never acknowledged, so the client retries it.

What the mail servers never use stays out of the serving process, whose
memory is never given back: the schema is migrated by a short-lived child
process (Alembic and the migration scripts cost about 13 MiB), and the
admin web app (Starlette, uvicorn, Jinja2 and the admin services: about
9 MiB once it has served a page) is imported when its first client
connects (:class:`LazyAdmin`); its socket listens from the start. And large
blocks are handed back to the system when freed (:func:`return_large_blocks`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from admin.certs import ensure_self_signed, server_context
from admin.config import Settings
from imap.auth import Authenticator
from imap.config import IMAPSettings
from imap.events import MailboxEvents
from imap.message_cache import encoded_summary
from imap.server import IMAPContext, start_imap
from mta.delivery import DeliveryAgent
from mta.dkim_keys import KeyStore
from mta.inbound import InboundHandler, InboundLimits, listening_port, start_inbound
from mta.inbound_auth import InboundAuthenticator, InboundAuthSettings
from mta.inbound_router import InboundRouter
from mta.queue.runner import OutboundQueue
from mta.queue.scheduler import QueueSettings
from mta.resolver import ResolverSettings
from mta.smtp_auth import SMTPAuthenticator
from mta.srs import SRS, load_or_create_secret
from mta.submission import SubmissionHandler, SubmissionSettings, start_submission
from storage.db import Database
from storage.mailindex import MailStore
from storage.spool import Spool

if TYPE_CHECKING:
    from admin.web.server import AdminServer

log = logging.getLogger("mailward")
SHUTDOWN_GRACE_SECONDS = 30.0
SWITCH_INTERVAL_SECONDS = 0.0005
# glibc's malloc serves blocks of this size or more from mmap, unmapped when
# freed. Left alone it raises that threshold to the largest block freed so far
# (up to 32 MiB), after which argon2id's working memory (19 MiB for every login
# it verifies, storage/secrets.py) is carved from the heap and stays there:
# measured under the 50-session IMAP load, 20 to 30 MiB kept for good.
MMAP_THRESHOLD_BYTES = 1024 * 1024
_M_MMAP_THRESHOLD = -3  # glibc <malloc.h>


def return_large_blocks() -> None:
    """Fix glibc's mmap threshold (see MMAP_THRESHOLD_BYTES); nothing to do on other libcs."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def migrate_in_child(url: str) -> None:
    """Upgrade the schema to head in a child process (see the module docstring)."""
    code = "import sys; from storage.db import Database; Database(sys.stdin.read()).migrate()"
    # The child imports what this process imported (a source checkout, a venv), and
    # the URL goes through stdin: it may hold a password, which argv would show to `ps`.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", code], input=url, text=True, env=env,
                          check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"database migration failed (exit status {done.returncode})")


class LazyAdmin:
    """The admin web server, loaded and started when its first client connects.

    The socket is bound and listening from the start (links name its port; a
    busy port fails at once). A pending connection makes it readable: then the
    app is imported and served on it, and that first client, still in the
    listen backlog, is accepted by it.
    """

    def __init__(self, sock: socket.socket, start: Callable[[], Awaitable[AdminServer]]):
        self.sock = sock
        self._start = start
        self._server: AdminServer | None = None
        self._loading: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._connected)

    @property
    def host(self) -> str:
        return str(self.sock.getsockname()[0])

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _connected(self) -> None:
        self._loop.remove_reader(self.sock.fileno())
        self._loading = self._loop.create_task(self._load(), name="admin-load")

    async def _load(self) -> None:
        try:
            self._server = await self._start()
        except Exception:
            log.exception("the admin web server could not start")
            self.sock.close()  # refuse clients rather than leave them waiting

    async def stop(self) -> None:
        if self._loading is None:
            self._loop.remove_reader(self.sock.fileno())
        else:
            await self._loading
        if self._server is not None:
            await self._server.stop()
        else:
            self.sock.close()


@dataclass
class Running:
    db: Database
    agent: DeliveryAgent
    servers: dict[str, asyncio.Server]
    admin: LazyAdmin

    def port(self, name: str) -> int:
        if name == "admin":
            return self.admin.port
        return listening_port(self.servers[name])


@contextlib.asynccontextmanager
async def running(settings: Settings, db: Database | None = None) -> AsyncIterator[Running]:
    """Start every server of the stack; stop them cleanly on exit."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    owns_db = db is None
    if db is None:
        migrate_in_child(settings.db_url)
        db = Database(settings.db_url)
    if settings.tls.cert_file:
        cert, key = Path(settings.tls.cert_file), Path(settings.tls.key_file)
    else:
        cert, key = ensure_self_signed(settings.data_dir / "tls", settings.hostname)
    tls = server_context(cert, key)
    events = MailboxEvents(asyncio.get_running_loop())
    agent = DeliveryAgent(
        db, mail_root=settings.mail_root, spool=Spool(settings.spool_root),
        hostname=settings.hostname, on_delivered=events.changed_threadsafe,
    )  # fmt: skip
    imap = IMAPContext(
        db=db,
        store=MailStore(db, settings.mail_root, encoded_summary),
        events=events,
        authenticator=Authenticator(db),
        settings=IMAPSettings(
            allow_plaintext_on_loopback=settings.imap.allow_plaintext_on_loopback,
            idle_timeout=settings.imap.idle_timeout_seconds,
        ),
        hostname=settings.hostname,
    )
    limits = InboundLimits(
        max_recipients=settings.smtp.max_recipients,
        max_message_bytes=settings.smtp.max_message_bytes,
        timeout_seconds=settings.smtp.timeout_seconds,
    )
    resolver = ResolverSettings(nameservers=tuple(settings.dns.nameservers), port=settings.dns.port)
    srs = SRS(load_or_create_secret(settings.data_dir / "srs.key"), settings.hostname)
    spool = agent.spool
    queue = OutboundQueue(
        db, agent=agent, spool=spool, hostname=settings.hostname, srs=srs,
        settings=QueueSettings(
            initial_retry=timedelta(seconds=settings.queue.initial_retry_seconds),
            max_retry=timedelta(seconds=settings.queue.max_retry_seconds),
            max_age=timedelta(days=settings.queue.max_age_days),
            per_destination=settings.queue.per_destination,
            smtp_port=settings.queue.remote_port,
            transport=dict(settings.queue.transport),
            resolver=resolver,
        ),
    )  # fmt: skip
    checker = (
        InboundAuthenticator(InboundAuthSettings(authserv_id=settings.hostname, resolver=resolver))
        if settings.smtp.verify_senders
        else None
    )
    handler = InboundHandler(
        InboundRouter(agent, checker=checker, srs=srs, on_queued=queue.wake), limits
    )
    submission = SubmissionHandler(
        agent=agent, authenticator=SMTPAuthenticator(db), keys=KeyStore(settings.data_dir / "dkim"),
        hostname=settings.hostname, on_queued=queue.wake,
        settings=SubmissionSettings(
            max_message_bytes=settings.smtp.max_message_bytes,
            plaintext_on_loopback=settings.smtp.submission_plaintext_on_loopback),
    )  # fmt: skip
    servers: dict[str, asyncio.Server] = {}
    # Bind the admin socket first: the links the services send must name its port.
    admin_sock = socket.create_server((settings.listen.host, settings.listen.admin_port))

    async def start_admin_app() -> AdminServer:
        from admin.notify import NotifySettings
        from admin.web.context import services_from_settings
        from admin.web.server import start_admin

        services = services_from_settings(
            db, settings, port=admin_sock.getsockname()[1],
            notify=NotifySettings(channels=tuple(settings.notify.channels),
                                  webhook_url=settings.notify.webhook_url,
                                  mail_from=settings.notify.mail_from),
        )  # fmt: skip
        return await start_admin(services, sock=admin_sock)

    admin: LazyAdmin | None = None
    queue.start()
    try:
        servers["smtp"] = await start_inbound(
            handler, host=settings.listen.host, port=settings.listen.smtp_port,
            hostname=settings.hostname, tls_context=tls, limits=limits,
        )  # fmt: skip
        for name, port, implicit in (("submission", settings.listen.submission_port, False),
                                     ("submissions", settings.listen.submissions_port, True)):
            servers[name] = await start_submission(submission, host=settings.listen.host,
                                                   port=port, tls_context=tls,
                                                   implicit_tls=implicit)  # fmt: skip
        servers["imap"] = await start_imap(imap, host=settings.listen.host,
                                           port=settings.listen.imap_port, tls_context=tls,
                                           implicit_tls=False)  # fmt: skip
        servers["imaps"] = await start_imap(imap, host=settings.listen.host,
                                            port=settings.listen.imaps_port, tls_context=tls,
                                            implicit_tls=True)  # fmt: skip
        admin = LazyAdmin(admin_sock, start_admin_app)
        yield Running(db, agent, servers, admin)
    finally:
        if admin is not None:
            await admin.stop()
        else:
            admin_sock.close()
        for server in servers.values():
            server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(handler.idle.wait(), submission.idle.wait()),
                SHUTDOWN_GRACE_SECONDS,
            )
        handler.close_connections()
        submission.close_connections()
        imap.close_connections()
        await queue.stop()
        for server in servers.values():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 5)
        agent.close()
        if owns_db:
            db.dispose()


async def serve_forever(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running(settings) as stack:
        for name, server in stack.servers.items():
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                print(f"{name:<12} listening on {host}:{port}", flush=True)
        print(f"{'admin':<12} http://{stack.admin.host}:{stack.admin.port}/", flush=True)
        print(f"data folder  {settings.data_dir.resolve()}", flush=True)
        await stop.wait()
        print("shutting down", flush=True)


def serve(settings: Settings) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # aiosmtpd logs every command at INFO; the routing log is our record of
    # decisions, so its chatter would only cost CPU on the delivery path.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migrations at start-up are routine
    # The database thread releases the GIL inside every SQLite call and then
    # waits for the event loop to give it back: with the default 5 ms switch
    # interval each statement could cost milliseconds of convoy. Shorter
    # slices keep the hand-over prompt (measured in bench/: see README).
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    return_large_blocks()  # before the threshold has moved
    asyncio.run(serve_forever(settings))
    return 0
