"""Worker threads for blocking work (files, fsync, database) that awaits no loop wake-up storm.

``asyncio.to_thread`` goes through ``ThreadPoolExecutor.submit``, which takes
a lock, checks for an idle thread through a pure-Python semaphore (a
``Condition.wait(0)`` when none is idle, which is most of the time under
load), and chains a ``concurrent.futures.Future`` to an asyncio one. Profiles
of the IMAP and SMTP loads showed that hand-off costing about a tenth of the
server's CPU. Here a fixed set of threads takes work from one ``SimpleQueue``
(a C queue) and completes an asyncio future directly with
``call_soon_threadsafe``. The threads are shared by every event loop of the
process and started on first use; they are daemons, idle in
``SimpleQueue.get`` when there is nothing to do. A cancelled caller does not
stop work already started, as with ``to_thread``.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Work = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


def _set_result(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class Workers:
    def __init__(self, threads: int, name: str = "worker") -> None:
        self.name = name
        self.threads = threads
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._started: list[threading.Thread] = []
        self._lock = threading.Lock()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker thread."""
        return await self.schedule(fn, *args)

    def schedule(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Start ``fn(*args)`` in a worker thread; the future is the running loop's."""
        if len(self._started) < self.threads:
            self._start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((loop, future, fn, args))
        return future

    def _start(self) -> None:
        with self._lock:
            while len(self._started) < self.threads:
                thread = threading.Thread(target=self._work, daemon=True,
                                          name=f"{self.name}-{len(self._started)}")  # fmt: skip
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
