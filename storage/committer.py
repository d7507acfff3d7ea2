"""Group commit: many concurrent writers, one transaction per batch.

Every SMTP transaction must be on record (routing log, quota charge) before
its reply, and each such write is tiny. Committing them one by one makes the
database commit the bottleneck; instead one writer thread takes whatever work
has queued up, runs each unit inside its own SAVEPOINT of a shared
transaction, commits once, and only then resolves every unit's future. So a
reply still waits for its own durable commit, but a hundred replies share
one. A unit that raises (``QuotaExceeded``) is rolled back to its savepoint
alone and its future carries the exception; if the commit itself fails,
every unit of the batch fails with ``StorageUnavailable``.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from storage import chain
from storage.db import Database, StorageUnavailable

T = TypeVar("T")
MAX_BATCH = 256
log = logging.getLogger("mailward.committer")

_STOP = object()


class GroupCommitter:
    def __init__(self, db: Database, *, max_batch: int = MAX_BATCH) -> None:
        self.db = db
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._thread.start()

    def submit(self, work: Callable[[Session], T], *, isolated: bool = True) -> Future[T]:
        """Queue a unit. ``isolated`` units run in a SAVEPOINT so their own failure
        rolls back only them; a unit that cannot fail on its own (it only reads
        and appends) may skip the savepoint, and if it fails anyway the whole
        batch fails with it."""
        future: Future[T] = Future()
        self._queue.put((work, future, isolated))
        return future

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
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
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[tuple[Callable[[Session], Any], Future[Any], bool]]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        try:
            with self.db.session() as session:
                for work, _future, isolated in batch:
                    if not isolated:
                        outcomes.append((True, work(session)))
                        continue
                    position = chain.mark(session)
                    try:
                        with session.begin_nested():
                            outcomes.append((True, work(session)))
                    except Exception as exc:  # the unit's own failure, e.g. QuotaExceeded
                        chain.rewind(session, position)  # its log entries go with it
                        outcomes.append((False, exc))
        except Exception as exc:
            log.exception("group commit of %d units failed", len(batch))
            error = exc if isinstance(exc, StorageUnavailable) else StorageUnavailable(str(exc))
            for _work, future, _isolated in batch:
                future.set_exception(error)
            return
        for (ok, value), (_work, future, _isolated) in zip(outcomes, batch, strict=True):
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
