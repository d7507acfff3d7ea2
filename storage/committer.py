"""Group commit: many concurrent writers, one transaction per batch.

Every SMTP transaction must be on record (routing log, quota charge) before
its reply, and each such write is tiny. Committing them one by one makes the
database commit the bottleneck; instead one writer thread takes whatever work
has queued up, runs each unit inside the shared transaction (in its own
SAVEPOINT when it may fail alone), commits once, and only then resolves every
unit's future. So a reply still waits for its own durable commit, but a
hundred replies share one. A unit that raises is rolled back to its
savepoint alone and its future carries the exception; a unit that undoes its
own writes before it refuses (``UnitRefused``, e.g. ``QuotaExceeded``) needs
no savepoint. If the commit itself fails, every unit of the batch fails with
``StorageUnavailable``.

Units run on the driver connection (``storage.ledger.Tx``), and the futures of
event-loop callers are resolved with one wake-up of their loop per batch
rather than one per unit: both were measurable costs per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection

from storage import chain
from storage.db import Database, StorageUnavailable
from storage.ledger import Tx

T = TypeVar("T")
MAX_BATCH = 256
log = logging.getLogger("mailward.committer")

_STOP = object()


class UnitRefused(Exception):
    """A unit's own refusal, raised only after it has undone whatever it wrote.

    A unit that refuses this way needs no SAVEPOINT (two statements, each a
    hand-over of the interpreter lock on the committer thread): it runs like
    an ``isolated=False`` unit, and only its own future gets the exception.
    """


class Pending(Generic[T]):
    """A unit's outcome for a thread that blocks on it (``submit``).

    A lock held until the unit's batch has committed: ``concurrent.futures.Future``
    builds a Condition (an RLock and a list of waiters) per instance and
    notifies through it, which was measurable per message on the delivery path.
    """

    __slots__ = ("_done", "_error", "_value")

    def __init__(self) -> None:
        self._done = threading.Lock()
        self._done.acquire()
        self._value: T | None = None
        self._error: BaseException | None = None

    def set_result(self, value: T) -> None:
        self._value = value
        self._done.release()

    def set_exception(self, error: BaseException) -> None:
        self._error = error
        self._done.release()

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Wait for the commit; the unit's exception, or None when it succeeded."""
        if not self._done.acquire(timeout=-1 if timeout is None else timeout):
            raise TimeoutError("the unit's batch has not committed yet")
        self._done.release()  # for any other waiter
        return self._error

    def result(self, timeout: float | None = None) -> T:
        """Wait for the commit; the unit's value, or its exception raised."""
        if (error := self.exception(timeout)) is not None:
            raise error
        return self._value  # type: ignore[return-value]


Work = Callable[[Tx], Any]
# (work, future, isolated, loop): ``loop`` is set for asyncio futures.
_Item = tuple[Work, "Pending[Any] | asyncio.Future[Any]", bool, "asyncio.AbstractEventLoop | None"]


class GroupCommitter:
    def __init__(self, db: Database, *, max_batch: int = MAX_BATCH) -> None:
        self.db = db
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # The writer thread's own connection, kept between batches: checking
        # one out of the pool per batch was a measurable share of its time.
        self._conn: Connection | None = None
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._thread.start()

    def submit(self, work: Callable[[Tx], T], *, isolated: bool = True) -> Pending[T]:
        """Queue a unit from any thread. ``isolated`` units run in a SAVEPOINT so
        their own failure rolls back only them; a unit that cannot fail on its
        own (it only reads and appends) may skip the savepoint, and if it fails
        anyway the whole batch fails with it."""
        future: Pending[T] = Pending()
        self._queue.put((work, future, isolated, None))
        return future

    async def run(self, work: Callable[[Tx], T], *, isolated: bool = True) -> T:
        """``submit`` for a coroutine: awaits the unit's durable commit."""
        return await self.schedule(work, isolated=isolated)

    def schedule(self, work: Callable[[Tx], T], *, isolated: bool = True) -> asyncio.Future[T]:
        """``submit`` with a future of the running loop, resolved after the commit."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((work, future, isolated, loop))
        return future

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        try:
            self._serve()
        finally:
            self._discard_connection()

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch = [item]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                batch.append(more)
            self._resolve(batch, self._commit(batch))
            if stop:
                return

    def _commit(self, batch: list[_Item]) -> list[tuple[bool, Any]]:
        outcomes: list[tuple[bool, Any]] = []
        try:
            with self.db.write_lock():
                conn = self._connection()
                with conn.begin():
                    tx = Tx(conn)
                    try:
                        self._run_units(tx, batch, outcomes)
                        chain.write_pending_tx(tx)
                    finally:
                        tx.close()
        except Exception as exc:
            log.exception("group commit of %d units failed", len(batch))
            self._discard_connection()  # its state is unknown; the next batch reconnects
            error = exc if isinstance(exc, StorageUnavailable) else StorageUnavailable(str(exc))
            return [(False, error)] * len(batch)
        return outcomes

    @staticmethod
    def _run_units(tx: Tx, batch: list[_Item], outcomes: list[tuple[bool, Any]]) -> None:
        for work, _future, isolated, _loop in batch:
            if not isolated:
                try:
                    outcomes.append((True, work(tx)))
                except UnitRefused as exc:
                    outcomes.append((False, exc))
                continue
            try:
                with tx.savepoint():
                    outcomes.append((True, work(tx)))
            except Exception as exc:  # the unit's own failure, e.g. QuotaExceeded
                outcomes.append((False, exc))

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self.db.engine.connect()
        return self._conn

    def _discard_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.invalidate()
                self._conn.close()
            self._conn = None

    @staticmethod
    def _resolve(batch: list[_Item], outcomes: list[tuple[bool, Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for (_work, future, _isolated, loop), (ok, value) in zip(batch, outcomes, strict=True):
            if loop is None:
                assert isinstance(future, Pending)
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
            else:
                assert isinstance(future, asyncio.Future)
                by_loop.setdefault(loop, []).append((future, ok, value))
        for loop, results in by_loop.items():
            # RuntimeError: the loop has closed, nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, results)


def _settle(results: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in results:
        if future.done():  # cancelled: the client went away while we committed
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
