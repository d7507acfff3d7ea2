"""The IMAP worker threads: results and exceptions come back to the awaiting task."""

from __future__ import annotations

import asyncio
import threading

import pytest

from imap.workers import Workers, run_blocking, run_index


async def test_work_runs_off_the_event_loop_and_returns() -> None:
    """Ensure the function runs in another thread and its result is returned."""
    loop_thread = threading.get_ident()
    assert await run_blocking(threading.get_ident) != loop_thread
    assert await run_index(sum, [1, 2, 3]) == 6


async def test_exceptions_reach_the_caller() -> None:
    """Ensure an exception raised in a worker is raised in the awaiting task."""

    def fail() -> None:
        raise LookupError("gone")

    with pytest.raises(LookupError, match="gone"):
        await run_blocking(fail)


async def test_one_thread_serves_callers_in_order() -> None:
    """Ensure a one-thread set runs work one at a time, in submission order."""
    workers = Workers(threads=1)
    seen: list[int] = []
    await asyncio.gather(*(workers.run(seen.append, i) for i in range(20)))
    assert seen == list(range(20))
