"""Worker threads for the IMAP server's blocking work (database, Maildir).

``storage.workers`` explains why not ``asyncio.to_thread``.

Two sets of threads: one for short index operations (sync and STORE, which
every session runs all the time), another for work that may wait long (file
reads, fsync, copies, searches), so that the former never queue behind the
latter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from storage.workers import Workers

T = TypeVar("T")

# Threads for work that may wait long (file reads, fsync, copies, searches).
WORKER_THREADS = 2
# Index operations (sync, STORE) are a few SQL statements each, mostly Python:
# every thread more only adds contention for the GIL (measured under 20
# sessions of NOOP, each a sync: 0.9 ms of CPU per command with one thread,
# 1.2 ms with two, 1.3 ms with four).
INDEX_THREADS = 1

_workers = Workers(WORKER_THREADS, "imap-worker")
_index = Workers(INDEX_THREADS, "imap-index")


async def run_blocking(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking work off the event loop (see the module docstring)."""
    return await _workers.run(fn, *args)


async def run_index(fn: Callable[..., T], *args: Any) -> T:
    """Run a short index operation (a sync, a STORE) off the event loop."""
    return await _index.run(fn, *args)
