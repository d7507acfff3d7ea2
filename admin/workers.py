"""SMTP worker processes: inbound and submission on more than one core.

One Python process is bound by its interpreter lock: at 3 to 4 ms of CPU per
inbound message it tops out near 350 msg/s whatever the cores. With
``[smtp] workers = N`` (N > 1) ``mailward serve`` forks N-1 workers before it
starts any thread. Each process accepts SMTP and submission on its own
``SO_REUSEPORT`` socket of the same ports (the kernel spreads connections over
them), runs its own delivery agent and group committer, and writes the same
database, Maildir and spool. What they share is already safe for several
writers: a chain's head row is locked per transaction, quota updates are
atomic, file names carry the pid, and SQLite's write lock is handed over
through ``storage.filelock``. On SQLite the processes' commits take turns on
that one lock, so workers pay where a process runs out of CPU (many
connections, DKIM-signed submission), not at a few connections (measured:
README, Performance).

What only the serving process runs — IMAP, the admin app, the outbound
queue — hears of a worker's deliveries and queued messages through hints on
a pipe. Hints only make things prompt: IMAP sessions and the queue poll
anyway, so a lost hint costs a poll interval, never mail.

A worker stops (finishing what is in flight) on SIGTERM, or when the
serving process is gone (the read end of its lifeline pipe sees EOF). If a
worker dies, the serving process stops too, with a non-zero status, for the
service manager to restart the node: forking a replacement from a process
whose threads may hold locks is unsafe, and a half-staffed node would hide
the fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import select
import signal
import socket
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from admin.config import Settings
from admin.smtp_front import SMTPFront, listen_ports, server_tls, srs_for
from mta.delivery import DeliveryAgent
from storage.db import Database
from storage.publish import node_id
from storage.spool import Spool

log = logging.getLogger("mailward.workers")
LISTEN_BACKLOG = 512
STOP_GRACE_SECONDS = 40.0  # a worker's own drain is bounded at 30 s (admin.smtp_front)

Listeners = dict[str, socket.socket]


def bind_listeners(settings: Settings, processes: int) -> list[Listeners]:
    """One set of SMTP listening sockets per process, all on the same ports.

    Port 0 (tests) takes whatever port the kernel gives the first socket.
    """
    slots: list[Listeners] = [{} for _ in range(processes)]
    try:
        for name, port in listen_ports(settings).items():
            family, kind, proto, _, address = socket.getaddrinfo(
                settings.listen.host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
            for slot in slots:
                sock = socket.socket(family, kind, proto)
                slot[name] = sock
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind(address)
                address = sock.getsockname()
                sock.listen(LISTEN_BACKLOG)
    except BaseException:
        close_listeners(slots)
        raise
    return slots


def close_listeners(slots: Iterable[Listeners]) -> None:
    for slot in slots:
        for sock in slot.values():
            sock.close()


# -- hints: worker → serving process ---------------------------------------------


class Hints:
    """A worker's announcements, one line per write (atomic on a pipe up to PIPE_BUF)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)

    def delivered(self, mailbox_ids: Iterable[int]) -> None:
        """Called from delivery threads: new files wait in these mailboxes' ``new/``."""
        line = b"D"
        for mailbox_id in mailbox_ids:
            item = b" %d" % mailbox_id
            if len(line) + len(item) + 1 > select.PIPE_BUF:
                self._send(line + b"\n")
                line = b"D"
            line += item
        if line != b"D":
            self._send(line + b"\n")

    def queued(self) -> None:
        self._send(b"Q\n")

    def _send(self, line: bytes) -> None:
        # A full pipe (the serving process is busy) or a closed one (it is
        # gone) loses a hint, never mail: see the module docstring.
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self.fd, line)


class HintListener:
    """The serving process's end: turns hint lines into calls on its event loop."""

    def __init__(
        self, fd: int, *, on_delivered: Callable[[list[int]], None],
        on_queued: Callable[[], None],
    ) -> None:  # fmt: skip
        self.fd = fd
        self._on_delivered = on_delivered
        self._on_queued = on_queued
        self._partial = b""
        self._loop = asyncio.get_running_loop()
        os.set_blocking(fd, False)
        self._loop.add_reader(fd, self._readable)
        self._open = True

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        if not data:  # every worker has closed its end
            self.close()
            return
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        delivered: list[int] = []
        queued = False
        for line in lines:
            kind, _, rest = line.partition(b" ")
            if kind == b"D":
                delivered.extend(int(word) for word in rest.split())
            elif kind == b"Q":
                queued = True
            else:
                log.warning("unknown hint from an SMTP worker: %r", line[:40])
        if delivered:
            self._on_delivered(delivered)
        if queued:
            self._on_queued()

    def close(self) -> None:
        if self._open:
            self._open = False
            self._loop.remove_reader(self.fd)
            os.close(self.fd)


# -- the pool, seen from the serving process -------------------------------------


@dataclass
class WorkerPool:
    pids: list[int]
    hints_fd: int  # read end, for the serving process's HintListener
    lifeline_fd: int  # write end: never written, closed when the serving process ends
    failed: bool = False
    _stopping: bool = field(default=False, repr=False)

    def watch(self, on_lost: Callable[[], None]) -> None:
        """Call ``on_lost`` if a worker exits while the node is not stopping."""
        loop = asyncio.get_running_loop()

        def reap() -> None:
            for pid in list(self.pids):
                try:
                    done, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:  # reaped elsewhere: gone all the same
                    done, status = pid, 0
                if not done:
                    continue
                self.pids.remove(pid)
                if not self._stopping:
                    self.failed = True
                    log.error("SMTP worker %d exited (%s); stopping the node", pid,
                              _describe(status))  # fmt: skip
                    on_lost()

        loop.add_signal_handler(signal.SIGCHLD, reap)

    async def stop(self) -> None:
        """SIGTERM every worker and wait for them (bounded), then SIGKILL the rest."""
        if self._stopping:
            return
        self._stopping = True
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while self.pids and time.monotonic() < deadline:
            for pid in list(self.pids):
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done = pid
                if done:
                    self.pids.remove(pid)
            await asyncio.sleep(0.05)
        for pid in self.pids:
            log.error("SMTP worker %d did not stop in time; killing it", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.pids.clear()
        os.close(self.lifeline_fd)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def start_workers(settings: Settings, slots: list[Listeners]) -> WorkerPool:
    """Fork one worker per slot after the first (which stays with the serving process).

    Call before this process starts any thread (a forked child gets only the
    calling thread, and locks held by the others stay held in it for good).
    """
    hints_read, hints_write = os.pipe()
    lifeline_read, lifeline_write = os.pipe()
    # Objects that exist now stay shared with the children, copy-on-write;
    # the collector would otherwise write into every page it scans.
    gc.freeze()
    pids = []
    for index, mine in enumerate(slots[1:], start=1):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child (tests see it from outside)
            status = 1
            try:
                os.close(hints_read)
                os.close(lifeline_write)
                close_listeners(slot for slot in slots if slot is not mine)
                status = run_worker(settings, index, mine, Hints(hints_write), lifeline_read)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(status)
        pids.append(pid)
    os.close(hints_write)
    os.close(lifeline_read)
    close_listeners(slots[1:])
    return WorkerPool(pids, hints_read, lifeline_write)


# -- a worker ----------------------------------------------------------------------


def run_worker(settings: Settings, index: int, listeners: Listeners, hints: Hints,
               lifeline_fd: int) -> int:  # fmt: skip
    asyncio.run(_serve(settings, index, listeners, hints, lifeline_fd))
    return 0


async def _serve(settings: Settings, index: int, listeners: Listeners, hints: Hints,
                 lifeline_fd: int) -> None:  # fmt: skip
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_reader(lifeline_fd, stop.set)  # EOF: the serving process is gone
    db = Database(settings.db_url)
    agent = DeliveryAgent(
        db, mail_root=settings.mail_root, spool=Spool(settings.spool_root),
        hostname=settings.hostname, on_delivered=hints.delivered,
        node=node_id(settings.data_dir),
    )  # fmt: skip
    front = SMTPFront.build(settings, db, agent, srs=srs_for(settings), on_queued=hints.queued)
    try:
        await front.start(settings, server_tls(settings), listeners)
        log.info("SMTP worker %d (pid %d) accepting", index, os.getpid())
        await stop.wait()
    finally:
        front.stop_accepting()
        await front.drain()
        await front.wait_closed()
        agent.close()
        db.dispose()
