"""Maildir++ on disk: durable delivery the way qmail and Dovecot expect it.

Layout: ``<root>/<domain>/<local>/{cur,new,tmp}`` for INBOX and
``.<Folder>/{cur,new,tmp}`` beside them for folders (Maildir++ puts
sub-folders at the top level, separated by dots). A file is written to
``tmp/``, fsynced, then renamed into ``new/`` and the directory fsynced, so a
crash leaves either nothing visible or a complete message. (The SMTP
delivery path fsyncs ``new/`` in the background and keeps a record of what
it renamed until then: ``storage.publish``.) File names follow the Maildir++ convention
``<secs>.M<usec>P<pid>Q<n>.<host>,S=<size>`` so other tools read the size
without a stat, and flags live in the ``:2,`` suffix in ``cur/``.

All functions here block; the servers call them from worker threads (``storage.workers``).
"""

from __future__ import annotations

import ctypes
import itertools
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

SUBDIRS = ("cur", "new", "tmp")
_counter = itertools.count(1)
# Maildirs known to exist: ``ensure`` is on every delivery, and three failing
# mkdir calls (each an exception in Python) cost more than writing the message.
# A Maildir removed behind our back is recreated by ``stage`` on ENOENT.
_ensured: set[Path] = set()
_HOST = socket.gethostname().replace("/", "\\057").replace(":", "\\072")


@dataclass(frozen=True, slots=True)
class StagedMessage:
    """A message written and fsynced in ``tmp/``, not yet visible to readers."""

    tmp_path: Path
    new_path: Path
    size: int


class Maildir:
    def __init__(self, path: Path) -> None:
        self.path = path

    def ensure(self) -> None:
        for sub in SUBDIRS:
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        if len(_ensured) > 100_000:
            _ensured.clear()
        _ensured.add(self.path)

    def folder(self, name: str) -> Maildir:
        """A Maildir++ folder such as ``Sent`` or ``Archive/2024`` (stored as ``.Archive.2024``)."""
        if not name or name.upper() == "INBOX":
            return self
        return Maildir(self.path / ("." + name.replace("/", ".")))

    def stage(self, data: bytes, name: str | None = None) -> StagedMessage:
        """Write a message into ``tmp/`` and fsync it, under ``name`` if given
        (made by ``unique_name`` for these bytes)."""
        if self.path not in _ensured:
            self.ensure()
        size = len(data)
        base = name or unique_name(data)
        tmp_path = self._tmp / base
        try:
            fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileNotFoundError:
            _ensured.discard(self.path)
            self.ensure()
            fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        return StagedMessage(tmp_path, self._new / base, size)

    @cached_property
    def _tmp(self) -> Path:
        return self.path / "tmp"

    @cached_property
    def _new(self) -> Path:
        return self.path / "new"

    def messages(self) -> list[Path]:
        return sorted(
            p for sub in ("new", "cur") for p in (self.path / sub).glob("*") if p.is_file()
        )


def unique_name(data: bytes) -> str:
    """A Maildir file name for these bytes, unique on this host."""
    now = time.time()
    secs, usec = int(now), int((now % 1) * 1_000_000)
    # W= is the size with CRLF line endings, what IMAP reports as RFC822.SIZE
    # (the Dovecot convention), so the index never has to read the file for it.
    # Microseconds zero-padded: names then sort in delivery order, which is
    # the order the index gives new messages their UIDs in.
    return (f"{secs}.M{usec:06d}P{os.getpid()}Q{next(_counter)}.{_HOST},"
            f"S={len(data)},W={crlf_size(data)}")  # fmt: skip


def size_in_name(name: str, tag: str = "S") -> int | None:
    """The size a file name promises under ``tag`` (S= on disk, W= with CRLF), if any."""
    prefix = tag + "="
    for field in name.split(":", 1)[0].split(",")[1:]:
        if field.startswith(prefix) and field[len(prefix):].isdigit():
            return int(field[len(prefix):])
    return None


def crlf_size(data: bytes) -> int:
    return len(data) + data.count(b"\n") - data.count(b"\r\n")


def commit(staged: list[StagedMessage]) -> None:
    """Make staged messages visible: rename into ``new/`` and fsync each directory once."""
    for directory in publish(staged):
        fsync_dir(directory)


def publish(staged: list[StagedMessage]) -> set[Path]:
    """Rename staged messages into ``new/``; the directories still to fsync for durability."""
    dirs: set[Path] = set()
    for msg in staged:
        os.rename(msg.tmp_path, msg.new_path)
        dirs.add(msg.new_path.parent)
    return dirs


def discard(staged: list[StagedMessage]) -> None:
    for msg in staged:
        msg.tmp_path.unlink(missing_ok=True)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _load_syncfs() -> ctypes._CFuncPtr | None:
    """Linux's ``syncfs(2)`` (not in ``os``), or None where the C library has none."""
    try:  # the process's own symbols, the C library's among them
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


_syncfs = _load_syncfs()


def sync_directories(directories: Iterable[Path]) -> tuple[set[Path], dict[Path, OSError]]:
    """Make the entries of these directories durable: (synced, failed with why).

    Where the C library has ``syncfs(2)`` this is one call per file system,
    however many directories. A round of deliveries into 50 mailboxes made 50
    directory fsyncs (about one per message at 10 connections), each able to
    force a journal commit of its own beside the fsyncs that replies wait
    for; ``syncfs`` commits every change on the file system at once. It also
    writes back whatever else is dirty there, which on a mail store is little
    (the messages are fsynced before they are renamed). Elsewhere, an fsync
    each.
    """
    synced: set[Path] = set()
    failed: dict[Path, OSError] = {}
    by_device: dict[int, list[Path]] = {}
    for directory in directories:
        try:
            by_device.setdefault(directory.stat().st_dev, []).append(directory)
        except OSError as exc:
            failed[directory] = exc
    for group in by_device.values():
        if _syncfs is not None:
            try:
                _syncfs_at(group[0])
            except OSError:
                pass  # gone since, or refused by the file system: fsync each below
            else:
                synced.update(group)
                continue
        for directory in group:
            try:
                fsync_dir(directory)
            except OSError as exc:
                failed[directory] = exc
            else:
                synced.add(directory)
    return synced, failed


def _syncfs_at(directory: Path) -> None:
    assert _syncfs is not None
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _syncfs(fd) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno), str(directory))
    finally:
        os.close(fd)


def mailbox_path(root: Path, domain: str, local_part: str) -> Path:
    """Where a mailbox lives; names come from the directory, validated on creation."""
    for name in (domain, local_part):
        # An empty name would make the domain (or the root) itself a maildir.
        if not name or "/" in name or name.startswith("."):
            raise ValueError("unsafe mailbox path")
    return root / domain / local_part
