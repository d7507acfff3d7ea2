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
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from admin.config import Settings
from admin.smtp_front import SMTPFront, resolver_settings, server_tls, srs_for
from admin.workers import HintListener, Listeners, WorkerPool, bind_listeners, start_workers
from imap.auth import Authenticator
from imap.config import IMAPSettings
from imap.events import MailboxEvents
from imap.message_cache import encoded_summary
from imap.server import IMAPContext, start_imap
from mta.delivery import DeliveryAgent
from mta.inbound import listening_port
from mta.queue.runner import OutboundQueue
from mta.queue.scheduler import QueueSettings
from storage.db import Database
from storage.mailindex import MailStore
from storage.publish import node_id, recover
from storage.spool import Spool

if TYPE_CHECKING:
    from admin.web.server import AdminServer

log = logging.getLogger("mailward")
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


def recover_copies(settings: Settings) -> None:
    """``storage.publish.recover`` for this node, on a connection of its own."""
    db = Database(settings.db_url)
    try:
        recover(db, settings.mail_root, node_id(settings.data_dir))
    finally:
        db.dispose()


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
async def running(
    settings: Settings, db: Database | None = None, *,
    listeners: Mapping[str, socket.socket] | None = None, hints_fd: int | None = None,
    migrate: bool = True,
) -> AsyncIterator[Running]:  # fmt: skip
    """Start every server of the stack; stop them cleanly on exit.

    With SMTP worker processes (``admin.workers``) this process's SMTP servers
    accept on ``listeners``, and the workers' deliveries and queued messages
    are announced on ``hints_fd``. ``migrate`` upgrades the schema and finishes
    the publication of copies a crash left in ``tmp/`` (``storage.publish``)
    before anything serves; ``serve`` does both itself before it forks workers.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    owns_db = db is None
    if db is None and migrate:
        migrate_in_child(settings.db_url)
    if db is None:
        db = Database(settings.db_url)
    node = node_id(settings.data_dir)
    if migrate:
        recover(db, settings.mail_root, node)
    tls = server_tls(settings)
    events = MailboxEvents(asyncio.get_running_loop())
    agent = DeliveryAgent(
        db, mail_root=settings.mail_root, spool=Spool(settings.spool_root),
        hostname=settings.hostname, on_delivered=events.changed_threadsafe, node=node,
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
    srs = srs_for(settings)
    queue = OutboundQueue(
        db, agent=agent, spool=agent.spool, hostname=settings.hostname, srs=srs,
        settings=QueueSettings(
            initial_retry=timedelta(seconds=settings.queue.initial_retry_seconds),
            max_retry=timedelta(seconds=settings.queue.max_retry_seconds),
            max_age=timedelta(days=settings.queue.max_age_days),
            per_destination=settings.queue.per_destination,
            smtp_port=settings.queue.remote_port,
            transport=dict(settings.queue.transport),
            resolver=resolver_settings(settings),
        ),
    )  # fmt: skip
    front = SMTPFront.build(settings, db, agent, srs=srs, on_queued=queue.wake)
    hints = (
        HintListener(hints_fd, on_delivered=lambda ids: events.changed(ids, delivered=True),
                     on_queued=queue.wake)
        if hints_fd is not None
        else None
    )  # fmt: skip
    imap_servers: dict[str, asyncio.Server] = {}
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
        await front.start(settings, tls, listeners)
        imap_servers["imap"] = await start_imap(imap, host=settings.listen.host,
                                                port=settings.listen.imap_port, tls_context=tls,
                                                implicit_tls=False)  # fmt: skip
        imap_servers["imaps"] = await start_imap(imap, host=settings.listen.host,
                                                 port=settings.listen.imaps_port,
                                                 tls_context=tls, implicit_tls=True)  # fmt: skip
        admin = LazyAdmin(admin_sock, start_admin_app)
        yield Running(db, agent, {**front.servers, **imap_servers}, admin)
    finally:
        if admin is not None:
            await admin.stop()
        else:
            admin_sock.close()
        front.stop_accepting()
        for server in imap_servers.values():
            server.close()
        await front.drain()
        imap.close_connections()
        await queue.stop()
        if hints is not None:
            hints.close()
        await front.wait_closed()
        for server in imap_servers.values():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 5)
        agent.close()
        if owns_db:
            db.dispose()


async def serve_forever(
    settings: Settings, listeners: Listeners | None = None, pool: WorkerPool | None = None,
) -> int:  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if pool is not None:
        pool.watch(on_lost=stop.set)
    stopping: asyncio.Task[None] | None = None
    try:
        async with running(settings, listeners=listeners, migrate=pool is None,
                           hints_fd=pool.hints_fd if pool else None) as stack:  # fmt: skip
            for name, server in stack.servers.items():
                for sock in server.sockets:
                    host, port = sock.getsockname()[:2]
                    print(f"{name:<12} listening on {host}:{port}", flush=True)
            if pool is not None:
                print(f"{'smtp workers':<12} {len(pool.pids) + 1} processes accept SMTP and "
                      f"submission (pids {os.getpid()} {' '.join(map(str, pool.pids))})",
                      flush=True)  # fmt: skip
            print(f"{'admin':<12} http://{stack.admin.host}:{stack.admin.port}/", flush=True)
            print(f"data folder  {settings.data_dir.resolve()}", flush=True)
            await stop.wait()
            print("shutting down", flush=True)
            # The workers drain their connections while this process drains its own.
            stopping = asyncio.create_task(pool.stop()) if pool is not None else None
        if stopping is not None:
            await stopping
    finally:
        if pool is not None:
            await pool.stop()  # after an error: nothing is left running
    return 1 if pool is not None and pool.failed else 0


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
    listeners: Listeners | None = None
    pool: WorkerPool | None = None
    if settings.smtp.workers > 1:
        # Everything the workers would otherwise race to create is made once, here.
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        migrate_in_child(settings.db_url)
        recover_copies(settings)
        server_tls(settings)
        srs_for(settings)
        slots = bind_listeners(settings, settings.smtp.workers)
        pool = start_workers(settings, slots)
        listeners = slots[0]
    return asyncio.run(serve_forever(settings, listeners, pool))
