"""Worker threads for the IMAP server's blocking work (database, Maildir).

``asyncio.to_thread`` goes through ``ThreadPoolExecutor.submit``, which takes
a lock, checks for an idle thread through a pure-Python semaphore (a
``Condition.wait(0)`` when none is idle, which is most of the time under
load), and chains a ``concurrent.futures.Future`` to an asyncio one. Profiles
of the IMAP load showed that hand-off costing about a tenth of the server's
CPU. Here a fixed set of threads takes work from one ``SimpleQueue`` (a C
queue) and completes an asyncio future directly with
``call_soon_threadsafe``.

Two sets of threads: one for short index operations (sync and STORE, which
every session runs all the time), another for work that may wait long (file
reads, fsync, copies, searches), so that the former never queue behind the
latter. The threads are shared by every event loop of the process and started on
first use; they are daemons, idle in ``SimpleQueue.get`` when there is
nothing to do. A cancelled caller does not stop work already started, as
with ``to_thread``.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

# Threads for work that may wait long (file reads, fsync, copies, searches).
WORKER_THREADS = 2
# Index operations (sync, STORE) are a few SQL statements each, mostly Python:
# every thread more only adds contention for the GIL (measured under 20
# sessions of NOOP, each a sync: 0.9 ms of CPU per command with one thread,
# 1.2 ms with two, 1.3 ms with four).
INDEX_THREADS = 1

_Work = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


def _set_result(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class Workers:
    def __init__(self, threads: int = WORKER_THREADS) -> None:
        self.threads = threads
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._started: list[threading.Thread] = []
        self._lock = threading.Lock()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker thread."""
        if len(self._started) < self.threads:
            self._start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((loop, future, fn, args))
        return await future

    def _start(self) -> None:
        with self._lock:
            while len(self._started) < self.threads:
                thread = threading.Thread(target=self._work, daemon=True,
                                          name=f"imap-worker-{len(self._started)}")  # fmt: skip
                thread.start()
                self._started.append(thread)

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            loop, future, fn, args = item
            try:
                outcome, value = _set_result, fn(*args)
            except BaseException as exc:  # handed to the awaiting task, which decides
                outcome, value = _set_exception, exc
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(outcome, future, value)


_workers = Workers(WORKER_THREADS)
_index = Workers(INDEX_THREADS)


async def run_blocking(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking work off the event loop (see the module docstring)."""
    return await _workers.run(fn, *args)


async def run_index(fn: Callable[..., T], *args: Any) -> T:
    """Run a short index operation (a sync, a STORE) off the event loop."""
    return await _index.run(fn, *args)
