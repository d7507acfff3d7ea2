"""What the IMAP index knows of a folder, and how to tell cheaply that it still holds.

The values the servers see are here: :class:`FolderInfo`, :class:`MessageInfo`
and :class:`FolderState`. So is the :class:`Snapshot` a :class:`~storage.mailindex.
MailStore` keeps per folder: the messages as of the folder's
``highest_modseq`` and the names found in ``cur/`` when it was last listed.
Checking a snapshot costs one folder row, the index rows whose mod-sequence
grew (RFC 7162 makes every index change bump it), and a directory listing:

- the index: every writer bumps ``mail_folder.highest_modseq``, so an equal
  value means an equal index; otherwise the rows with a higher ``modseq`` are
  the changed and added ones, and a row count that disagrees reveals
  expunges (then everything is re-read);
- the disk: files in ``new/`` are deliveries to index; in ``cur/`` only the
  names that differ from the last listing are looked at. A name whose flags
  agree with the index is a rename this server made (STORE); an unknown base
  name, other flags, or a vanished file is a change made by another Maildir
  tool, and :func:`check_disk` answers None: the caller reconciles under the
  folder lock. ``cur/`` is not even listed when its mtime equals the one of
  the last listing and that listing was made :data:`MTIME_TRUST_NS` after
  the mtime, since file systems stamp directories with a coarse clock.

Everything here is pure except :func:`list_dir`, :func:`mtime_ns` and :func:`now_ns`.
"""

from __future__ import annotations

import bisect
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from pathlib import Path

SYSTEM_FLAGS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S",
                "\\Deleted": "T"}  # fmt: skip
_LETTERS = {v: k for k, v in SYSTEM_FLAGS.items()}
INFO_SEPARATOR = ":2,"  # Maildir "info" with flags (cr.yp.to/proto/maildir.html)

# Directory mtimes come from a coarse clock (a kernel tick; a second or two on
# some file systems): a rename in the same tick as the last one leaves mtime
# unchanged. A listing is trusted to stand for "unchanged while mtime is
# unchanged" only when it was taken this long after that mtime.
MTIME_TRUST_NS = 2_000_000_000


@dataclass(frozen=True, slots=True)
class FolderInfo:
    id: int
    mailbox_id: int
    name: str
    uid_validity: int
    uid_next: int
    highest_modseq: int
    subscribed: bool
    special_use: str | None


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """One indexed message; ``directory`` is shared by the folder's messages."""

    uid: int
    flags: frozenset[str]
    modseq: int
    size: int
    rfc822_size: int
    internal_date: datetime
    directory: Path  # the folder's cur/ (new/ for a file that could not be moved)
    filename: str

    @property
    def path(self) -> Path:
        return self.directory / self.filename

    @property
    def base_name(self) -> str:
        return self.filename.partition(INFO_SEPARATOR)[0]

    def with_flags(self, flags: frozenset[str], modseq: int) -> MessageInfo:
        """The message after a STORE, under the name the STORE gave its file."""
        name = self.filename
        if system_flags(flags) != system_flags(self.flags):
            name = file_name(self.base_name, flags)
        return replace(self, flags=flags, modseq=modseq, filename=name)


@dataclass(frozen=True, slots=True)
class FolderState:
    folder: FolderInfo
    messages: tuple[MessageInfo, ...]  # ascending UID
    recent: frozenset[int] = frozenset()  # UIDs this sync moved out of new/


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A folder's index as of ``modseq`` and its ``cur/`` as last listed."""

    folder_id: int
    uid_validity: int
    modseq: int
    path: Path
    messages: tuple[MessageInfo, ...]
    cur_names: frozenset[str] | None = None  # None: not listed since the index was read
    cur_mtime: int | None = None  # mtime_ns of cur/ for which cur_names is trusted
    # For MailStore.cached_state: the folder row as of ``modseq``, when the
    # snapshot last agreed with the database and the disk (time.monotonic()),
    # and how many writes this process had made to the folder by then.
    info: FolderInfo | None = None
    verified_at: float = float("-inf")
    writes: int = 0


# -- names and flags --------------------------------------------------------------


def flags_suffix(flags: Iterable[str]) -> str:
    return INFO_SEPARATOR + "".join(sorted(SYSTEM_FLAGS[f] for f in flags if f in SYSTEM_FLAGS))


@lru_cache(maxsize=4096)
def split_name(filename: str) -> tuple[str, frozenset[str]]:
    """A Maildir file name as (base name, system flags of its info)."""
    base, sep, info = filename.partition(INFO_SEPARATOR)
    if not sep:
        return base, frozenset()
    return base, frozenset(_LETTERS[ch] for ch in info if ch in _LETTERS)


@lru_cache(maxsize=4096)
def parse_flags(text: str) -> frozenset[str]:
    """The index's space-separated flags, one shared frozenset per distinct value."""
    return frozenset(text.split())


def system_flags(flags: frozenset[str]) -> frozenset[str]:
    return frozenset(f for f in flags if f in SYSTEM_FLAGS)


def file_name(base: str, flags: Iterable[str]) -> str:
    """The name this server gives a message file in ``cur/``."""
    return base + flags_suffix(flags)


def list_dir(path: Path) -> list[str]:
    """The message file names in a Maildir subdirectory (dot files are not messages)."""
    try:
        return [name for name in os.listdir(path) if not name.startswith(".")]
    except FileNotFoundError:
        return []


def mtime_ns(path: Path) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return None


def trusted(mtime: int | None, listed_at_ns: int) -> int | None:
    """``mtime`` if a listing taken at ``listed_at_ns`` may stand for it, else None."""
    if mtime is None or listed_at_ns - mtime < MTIME_TRUST_NS:
        return None
    return mtime


# -- building and checking snapshots ---------------------------------------------------


def message_from_row(row: tuple, directory: Path, previous: MessageInfo | None) -> MessageInfo:
    """A message from an index row ``(uid, base, flags, modseq, size, wire, date)``.

    The file name is the one last seen on disk when the system flags did not
    change since (other tools may add info letters this server does not
    write), else the name this server gives it.
    """
    uid, base, text, modseq, size, wire, date = row
    flags = parse_flags(text)
    if previous is not None and system_flags(previous.flags) == system_flags(flags):
        name = previous.filename
    else:
        name = file_name(base, flags)
    return MessageInfo(uid, flags, modseq, size, wire, date, directory, name)


def merge_rows(snap: Snapshot, rows: Iterable[tuple], modseq: int) -> Snapshot:
    """The snapshot with changed and added index rows applied."""
    by_uid = {m.uid: m for m in snap.messages}
    directory = snap.path / "cur"
    for row in rows:
        by_uid[row[0]] = message_from_row(row, directory, by_uid.get(row[0]))
    messages = tuple(by_uid[uid] for uid in sorted(by_uid))  # UIDs only grow: nearly sorted
    # The listing was checked against the old rows: list again next time.
    return replace(snap, modseq=modseq, messages=messages, cur_mtime=None)


def check_disk(snap: Snapshot, new_names: list[str], cur_names: frozenset[str]) -> Snapshot | None:
    """The snapshot with this listing if the index agrees with it; None if it must change."""
    if new_names:
        return None  # deliveries to index
    if snap.cur_names is not None and len(snap.messages) == len(cur_names):
        extra = cur_names - snap.cur_names
        gone = snap.cur_names - cur_names
    else:
        extra, gone = cur_names, None  # compare everything
    if not extra and not gone:
        return replace(snap, cur_names=cur_names)
    index = {m.base_name: m for m in snap.messages}
    renamed: dict[str, str] = {}
    seen: set[str] = set()
    for name in extra:
        base, flags = split_name(name)
        message = index.get(base)
        if message is None or system_flags(message.flags) != flags or base in seen:
            return None
        seen.add(base)
        if message.filename != name:
            renamed[base] = name
    if gone is None:
        if len(seen) != len(index):
            return None  # indexed messages whose files are gone
    else:
        for name in gone:
            base = name.partition(INFO_SEPARATOR)[0]
            if base not in seen and base in index:
                return None  # a file removed behind the index's back
    messages = snap.messages
    if renamed:
        messages = tuple(
            replace(m, filename=renamed[m.base_name]) if m.base_name in renamed else m
            for m in messages
        )
    return replace(snap, messages=messages, cur_names=cur_names)


def with_updates(
    snap: Snapshot, updated: list[tuple[int, frozenset[str], int]], modseq: int
) -> Snapshot:
    """The snapshot after a STORE made by this process (files renamed to their new flags)."""
    messages = list(snap.messages)
    for uid, flags, msg_modseq in updated:
        i = bisect.bisect_left(messages, uid, key=lambda m: m.uid)
        if i == len(messages) or messages[i].uid != uid:
            continue
        m = messages[i]
        if m.flags == flags and m.modseq == msg_modseq:
            continue
        name = m.filename
        if system_flags(m.flags) != system_flags(flags):
            name = file_name(m.base_name, flags)
        messages[i] = MessageInfo(m.uid, flags, msg_modseq, m.size, m.rfc822_size,
                                  m.internal_date, m.directory, name)  # fmt: skip
    return Snapshot(snap.folder_id, snap.uid_validity, modseq, snap.path, tuple(messages),
                    snap.cur_names)  # fmt: skip


def with_disk_names(
    snap: Snapshot, on_disk: dict[str, tuple[str, str, frozenset[str]]]
) -> Snapshot:
    """The snapshot's messages under the names (and subdirectories) just scanned."""
    out = []
    for m in snap.messages:
        found = on_disk.get(m.base_name)
        if found is None or (found[0] == "cur" and found[1] == m.filename):
            out.append(m)
            continue
        directory = m.directory if found[0] == "cur" else snap.path / found[0]
        out.append(MessageInfo(m.uid, m.flags, m.modseq, m.size, m.rfc822_size, m.internal_date,
                               directory, found[1]))  # fmt: skip
    return Snapshot(snap.folder_id, snap.uid_validity, snap.modseq, snap.path, tuple(out))


def now_ns() -> int:
    return time.time_ns()
