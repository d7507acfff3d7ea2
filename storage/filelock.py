"""A lock that excludes other threads and other processes on the same host.

Several processes write the same data folder: ``mailward serve`` with extra
SMTP workers (``admin.workers``) and every ``mailward`` CLI command. Each
holder takes an in-process lock, then ``flock`` on a lock file: a waiter in
another process sleeps in the kernel and wakes the moment the lock is free.

``flock`` locks belong to an open file description, which ``fork`` shares, so
the lock file is opened once per process (a child reopens it on first use)
rather than inherited.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from types import TracebackType


class ProcessLock:
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            # The inherited descriptor (after fork) shares the parent's lock: leave it alone.
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        return self._fd

    def __enter__(self) -> ProcessLock:
        self._thread_lock.acquire()
        try:
            fcntl.flock(self._file(), fcntl.LOCK_EX)  # releases the GIL while it waits
        except BaseException:
            self._thread_lock.release()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def close(self) -> None:
        with self._thread_lock:
            self._close_file()

    def _close_file(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None

    def __del__(self) -> None:
        self._close_file()
