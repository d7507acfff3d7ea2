"""The selected folder as one session sees it (RFC 3501 §2.3.1, §7.4.1).

Each session keeps its own numbering: the UIDs it has announced, in
ascending order, so that sequence number n is ``uids[n - 1]``; the flags and
mod-sequence it last reported for each; and the messages that are
``\\Recent`` for it. :meth:`SelectedFolder.merge` compares that view with a
fresh :class:`FolderState` and returns the untagged responses that bring the
client up to date:

- ``n EXPUNGE`` for announced messages that are gone, highest number first
  so that every number is valid when sent; only where the command allows
  it (never during FETCH, STORE or SEARCH, RFC 3501 §7.4.1). Until then the
  message keeps its number and is remembered as ``vanished``;
- ``FETCH (UID FLAGS [MODSEQ])`` for flags changed by someone else;
- ``EXISTS`` and ``RECENT`` for new messages (UIDs only grow, so new means
  above the highest UID announced).

Message files are immutable but their names change with their flags, so a
stored path can be stale; :meth:`read` looks the file up again by its
Maildir base name. :meth:`read_nowait` is for the event loop: it reads a
file only when that cannot wait for the disk.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from imap.proto import IMAPError
from imap.proto.formatting import Raw, Value, format_flags
from imap.proto.responses import (
    ResponseCode,
    exists_response,
    expunge_response,
    fetch_response,
    flags_response,
    format_code,
    recent_response,
    untagged_status,
)
from imap.proto.sequence import SequenceSet
from storage.mailindex import FolderInfo, FolderState, MessageInfo

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
RECENT = "\\Recent"
_RECENT_SET = frozenset({RECENT})
SEEN = "\\Seen"


class SelectedFolder:
    def __init__(self, mailbox_id: int, state: FolderState, *, read_only: bool) -> None:
        self.mailbox_id = mailbox_id
        self.folder: FolderInfo = state.folder
        self.name = state.folder.name
        self.read_only = read_only
        self.uids: list[int] = [m.uid for m in state.messages]
        self.messages: dict[int, MessageInfo] = {m.uid: m for m in state.messages}
        self.recent: set[int] = set(state.recent)
        self.vanished: set[int] = set()
        self.keywords = _keywords(state.messages)
        self._paths: dict[str, Path] | None = None
        self._merged: tuple[MessageInfo, ...] | None = state.messages

    # -- numbering -------------------------------------------------------------

    @property
    def exists(self) -> int:
        return len(self.uids)

    @property
    def max_uid(self) -> int:
        return self.uids[-1] if self.uids else 0

    def resolve(self, sequence_set: SequenceSet, uid: bool) -> list[tuple[int, int]]:
        """``(seq, uid)`` pairs the set names, ascending.

        UIDs that do not exist are ignored (RFC 3501 §6.4.8); a sequence
        number above EXISTS is a client error (RFC 9051 §6.4.5 allows BAD),
        except ``*`` in an empty mailbox, which selects nothing.
        """
        if uid:
            matches = sequence_set.matcher(self.max_uid)
            return [(i, u) for i, u in enumerate(self.uids, 1) if matches(u)]
        if sequence_set.max_explicit() > self.exists and not (
            self.exists == 0 and sequence_set.uses_star
        ):
            raise IMAPError.bad("No such message (sequence number beyond EXISTS)")
        return [(seq, self.uids[seq - 1]) for seq in sequence_set.resolve(self.exists)]

    # -- presentation ------------------------------------------------------------

    def flags_of(self, uid: int) -> frozenset[str]:
        flags = self.messages[uid].flags
        return flags | {RECENT} if uid in self.recent else flags

    def flag_items(self, uid: int) -> Raw:
        return _flag_list(self.flags_of(uid))

    def flags_bytes(self, info: MessageInfo) -> bytes:
        """The FLAGS value of a message of this view, e.g. ``(\\Seen \\Recent)``."""
        if info.uid in self.recent:
            return _flag_list(info.flags | _RECENT_SET).value
        return _flag_list(info.flags).value

    def flags_responses(self) -> list[bytes]:
        """``FLAGS`` and ``PERMANENTFLAGS`` (RFC 3501 §7.2.6, §7.1)."""
        defined = [*SYSTEM_FLAGS, *sorted(self.keywords)]
        permanent = [] if self.read_only else [*defined, "\\*"]
        code = b"PERMANENTFLAGS " + format_flags(permanent)
        return [
            flags_response(defined),
            untagged_status("OK", "Flags permitted" if permanent else "No permanent flags", code),
        ]

    def select_responses(self) -> list[bytes]:
        """Everything SELECT/EXAMINE sends before its tagged OK (RFC 3501 §6.3.1)."""
        out = self.flags_responses()
        out.append(exists_response(self.exists))
        out.append(recent_response(len(self.recent)))
        unseen = next(
            (seq for seq, uid in enumerate(self.uids, 1) if SEEN not in self.messages[uid].flags),
            None,
        )
        if unseen is not None:
            out.append(untagged_status("OK", "First unseen", format_code("UNSEEN", unseen)))
        out.append(
            untagged_status(
                "OK", "UIDs valid", format_code("UIDVALIDITY", self.folder.uid_validity)
            )
        )
        out.append(
            untagged_status(
                "OK", "Predicted next UID", format_code("UIDNEXT", self.folder.uid_next)
            )
        )
        out.append(untagged_status(
            "OK", "Highest", format_code("HIGHESTMODSEQ", self.folder.highest_modseq)))  # fmt: skip
        return out

    def flag_fetch(self, seq: int, uid: int, *, modseq: bool) -> bytes:
        items: list[tuple[str, Value]] = [("UID", uid), ("FLAGS", self.flag_items(uid))]
        if modseq:
            items.append(("MODSEQ", [self.messages[uid].modseq]))
        return fetch_response(seq, items)

    # -- changes -------------------------------------------------------------------

    def apply(self, updated: Iterable[tuple[int, frozenset[str], int]]) -> list[bytes]:
        """Record this session's own flag changes; returns FLAGS updates if keywords grew."""
        for uid, flags, modseq in updated:
            info = self.messages.get(uid)
            if info is not None:
                self.messages[uid] = info.with_flags(flags, modseq)
        return self._keyword_updates()

    def remove(self, uids: Iterable[int]) -> list[bytes]:
        """Forget expunged messages; the EXPUNGE responses, highest number first."""
        gone = set(uids)
        out: list[bytes] = []
        for seq in range(len(self.uids), 0, -1):
            uid = self.uids[seq - 1]
            if uid in gone:
                out.append(expunge_response(seq))
                del self.uids[seq - 1]
                self.messages.pop(uid, None)
                self.recent.discard(uid)
                self.vanished.discard(uid)
        return out

    def merge(self, state: FolderState, *, expunge: bool, modseq: bool) -> list[bytes]:
        self.folder = state.folder
        if state.messages is self._merged and not state.recent and not (expunge and self.vanished):
            return []  # the store's snapshot has not changed since the last merge
        self._merged = state.messages
        out: list[bytes] = []
        current = {m.uid: m for m in state.messages}
        gone = [uid for uid in self.uids if uid not in current]
        if expunge:
            out.extend(self.remove(gone))
        else:
            self.vanished.update(gone)
        changed: list[int] = []
        for uid in self.uids:
            fresh = current.get(uid)
            if fresh is None:
                continue
            old = self.messages[uid]
            if fresh.flags != old.flags or (modseq and fresh.modseq != old.modseq):
                changed.append(uid)
            self.messages[uid] = fresh
        highest = self.max_uid
        new = [m for m in state.messages if m.uid > highest]
        for m in new:
            self.uids.append(m.uid)
            self.messages[m.uid] = m
        self.recent.update(uid for uid in state.recent if uid in self.messages)
        self._paths = None
        out.extend(self._keyword_updates())
        if changed:
            seqs = {uid: seq for seq, uid in enumerate(self.uids, 1)}
            out.extend(self.flag_fetch(seqs[uid], uid, modseq=modseq) for uid in changed)
        if new:
            out.append(exists_response(self.exists))
            out.append(recent_response(len(self.recent)))
        return out

    def _keyword_updates(self) -> list[bytes]:
        keywords = _keywords(self.messages.values())
        if keywords <= self.keywords:
            return []
        self.keywords |= keywords
        return self.flags_responses()

    # -- content -------------------------------------------------------------------

    def read(self, uid: int) -> bytes | None:
        """The message octets as stored (LF), or None when the file is gone (blocks)."""
        info = self.messages.get(uid)
        if info is None:
            return None
        try:
            return info.path.read_bytes()
        except FileNotFoundError:
            pass
        path = self._find(info)
        if path is None:
            return None
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def read_nowait(self, uid: int) -> bytes | None:
        """Like :meth:`read` but safe on the event loop: raises :class:`WouldBlock`
        rather than wait for the disk (or for a renamed file to be looked up)."""
        info = self.messages.get(uid)
        if info is None:
            return None
        if info.size > MAX_NOWAIT_READ:
            raise WouldBlock(uid)
        try:
            data = read_if_cached(os.path.join(info.directory, info.filename))
        except FileNotFoundError:
            raise WouldBlock(uid) from None
        if data is None:
            raise WouldBlock(uid)
        return data

    def _find(self, info: MessageInfo) -> Path | None:
        """A message file under its current name (flags renamed it since the last sync).

        One listing of the folder serves the misses of a whole FETCH; a name
        found there but gone again means a later rename: list once more.
        """
        base = info.base_name
        if self._paths is not None:
            path = self._paths.get(base)
            if path is not None and path.exists():
                return path
        self._paths = _scan(info.directory.parent)
        return self._paths.get(base)


class WouldBlock(Exception):
    """Reading this message now could wait for the disk: do it in a worker thread."""


# Messages larger than this are read in a worker thread even when cached:
# copying and converting them would hold up every other session.
MAX_NOWAIT_READ = 256 * 1024
_NOWAIT = getattr(os, "RWF_NOWAIT", None)  # Linux 4.14+ (preadv2)
_nowait_works = _NOWAIT is not None


def read_if_cached(path: str) -> bytes | None:
    """The file's octets if the page cache holds all of them, else None.

    ``preadv2(RWF_NOWAIT)`` fails with EAGAIN instead of starting disk I/O,
    so the event loop can serve hot files without a thread hand-off. Where
    the flag is unsupported this always answers None.
    """
    global _nowait_works
    if not _nowait_works:
        return None
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return b""
        buffer = bytearray(size)
        try:
            got = os.preadv(fd, [buffer], 0, _NOWAIT)
        except BlockingIOError:
            return None
        except OSError:  # EOPNOTSUPP and the like: this file system cannot
            _nowait_works = False
            return None
        return bytes(buffer) if got == size else None
    finally:
        os.close(fd)


def _scan(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for sub in ("new", "cur"):
        try:
            with os.scandir(folder / sub) as entries:
                for entry in entries:
                    found[entry.name.partition(":2,")[0]] = Path(entry.path)
        except FileNotFoundError:
            continue
    return found


def _keywords(messages: Iterable[MessageInfo]) -> frozenset[str]:
    return frozenset(f for m in messages for f in m.flags if not f.startswith("\\"))


@lru_cache(maxsize=1024)
def _flag_list(flags: frozenset[str]) -> Raw:
    """The FLAGS value of a flag set (few distinct sets: rendered once each)."""
    return Raw(format_flags(_ordered(flags)))


def _ordered(flags: frozenset[str]) -> list[str]:
    system = [f for f in (*SYSTEM_FLAGS, RECENT) if f in flags]
    return system + sorted(f for f in flags if not f.startswith("\\"))


def closed_response() -> bytes:
    """RFC 7162 §3.2.11: the previously selected mailbox is now closed."""
    return untagged_status("OK", "Previous mailbox closed", ResponseCode.CLOSED)
