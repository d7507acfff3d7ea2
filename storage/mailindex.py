"""The IMAP message store: Maildir++ folders on disk, indexed in SQL.

The files are the truth; the ``mail_folder``/``mail_message`` rows are a cache
that ``sync`` reconciles with the disk: files that appeared (delivered by the
SMTP server, or copied in from another server) get the next UIDs, files that
vanished are dropped, and system flags changed by another Maildir tool are
read back from the ``:2,`` suffix. Every write (APPEND, COPY, MOVE, STORE,
EXPUNGE) happens under a lock on the folder row, so UIDs are strictly
ascending and ``highest_modseq`` (RFC 7162) grows monotonically even when
deliveries and APPENDs race. Flags are written into the file names too, so
other Maildir readers see the same state.

Quota: APPEND and COPY charge the pooled quota in the same transaction as the
index rows; EXPUNGE refunds it. Every function blocks; servers call them from
worker threads.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from storage import maildir, quota
from storage.db import Database
from storage.folder_names import SPECIAL_USE, directory_name, folder_name, validate
from storage.models import Domain, Mailbox, MailFolder, MailMessage

SYSTEM_FLAGS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S",
                "\\Deleted": "T"}  # fmt: skip
_LETTERS = {v: k for k, v in SYSTEM_FLAGS.items()}
_SIZE = re.compile(r",S=(\d+)")
_WIRE = re.compile(r",W=(\d+)")
_uidvalidity_counter = itertools.count()


class FolderMissing(LookupError):
    pass


class FolderExists(ValueError):
    pass


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
    uid: int
    flags: frozenset[str]
    modseq: int
    size: int
    rfc822_size: int
    internal_date: datetime
    path: Path


@dataclass(frozen=True, slots=True)
class FolderState:
    folder: FolderInfo
    messages: tuple[MessageInfo, ...]  # ascending UID
    recent: frozenset[int] = frozenset()  # UIDs this sync moved out of new/


def _info(row: MailFolder) -> FolderInfo:
    return FolderInfo(row.id, row.mailbox_id, row.name, row.uid_validity, row.uid_next,
                      row.highest_modseq, row.subscribed, row.special_use)  # fmt: skip


def flags_suffix(flags: Iterable[str]) -> str:
    return ":2," + "".join(sorted(SYSTEM_FLAGS[f] for f in flags if f in SYSTEM_FLAGS))


def _split_name(filename: str) -> tuple[str, frozenset[str]]:
    base, sep, info = filename.partition(":2,")
    if not sep:
        return base, frozenset()
    return base, frozenset(_LETTERS[ch] for ch in info if ch in _LETTERS)


def _new_uid_validity() -> int:
    # Seconds since the epoch, made unique within the process so a folder
    # deleted and re-created in the same second still gets a new value.
    return int(time.time()) + next(_uidvalidity_counter) % 1000


class MailStore:
    def __init__(self, db: Database, mail_root: Path) -> None:
        self.db = db
        self.mail_root = mail_root

    # -- paths --------------------------------------------------------------

    def mailbox_root(self, session: Session, mailbox_id: int) -> Path:
        mailbox = session.get(Mailbox, mailbox_id)
        if mailbox is None:
            raise FolderMissing(f"mailbox {mailbox_id}")
        domain = session.get(Domain, mailbox.domain_id)
        assert domain is not None
        return maildir.mailbox_path(self.mail_root, domain.name, mailbox.local_part)

    def folder_path(self, session: Session, folder: MailFolder) -> Path:
        return self.mailbox_root(session, folder.mailbox_id) / directory_name(folder.name)

    # -- folders ------------------------------------------------------------

    def ensure_defaults(self, mailbox_id: int) -> None:
        """INBOX and the SPECIAL-USE folders (RFC 6154) every new mailbox gets."""
        with self.db.session() as session:
            existing = set(session.scalars(
                select(MailFolder.name).where(MailFolder.mailbox_id == mailbox_id)
            ))  # fmt: skip
            for name in ("INBOX", *SPECIAL_USE):
                if name not in existing:
                    self._create(session, mailbox_id, name, SPECIAL_USE.get(name))

    def _create(
        self, session: Session, mailbox_id: int, name: str, special_use: str | None = None
    ) -> MailFolder:
        row = MailFolder(mailbox_id=mailbox_id, name=name, uid_validity=_new_uid_validity(),
                         uid_next=1, highest_modseq=1, subscribed=True,
                         special_use=special_use)  # fmt: skip
        session.add(row)
        session.flush()
        maildir.Maildir(self.folder_path(session, row)).ensure()
        return row

    def _folder(
        self, session: Session, mailbox_id: int, name: str, lock: bool = False
    ) -> MailFolder:
        stmt = select(MailFolder).where(MailFolder.mailbox_id == mailbox_id,
                                        MailFolder.name == name)  # fmt: skip
        row = session.scalars(stmt.with_for_update() if lock else stmt).first()
        if row is None:
            raise FolderMissing(name)
        return row

    def list_folders(self, mailbox_id: int) -> list[FolderInfo]:
        with self.db.session() as session:
            stmt = select(MailFolder).where(MailFolder.mailbox_id == mailbox_id)
            rows = session.scalars(stmt.order_by(MailFolder.name))
            return [_info(r) for r in rows]

    def get_folder(self, mailbox_id: int, name: str) -> FolderInfo | None:
        with self.db.session() as session:
            try:
                return _info(self._folder(session, mailbox_id, name))
            except FolderMissing:
                return None

    def create_folder(self, mailbox_id: int, name: str) -> FolderInfo:
        name = validate(name)
        with self.db.session() as session:
            exists = session.scalars(select(MailFolder.id).where(
                MailFolder.mailbox_id == mailbox_id, MailFolder.name == name)).first()  # fmt: skip
            if exists is not None:
                raise FolderExists(name)
            return _info(self._create(session, mailbox_id, name))

    def delete_folder(self, mailbox_id: int, name: str) -> None:
        with self.db.session() as session:
            row = self._folder(session, mailbox_id, name, lock=True)
            path = self.folder_path(session, row)
            sizes = session.scalars(select(MailMessage.size).where(MailMessage.folder_id == row.id))
            quota.charge(session, {mailbox_id: -sum(sizes)})
            session.execute(delete(MailMessage).where(MailMessage.folder_id == row.id))
            session.delete(row)
        shutil.rmtree(path, ignore_errors=True)

    def rename_folder(self, mailbox_id: int, old: str, new: str) -> None:
        """Rename a folder and its children; renaming INBOX moves its messages (RFC 3501)."""
        new = validate(new)
        if old == "INBOX":
            self._rename_inbox(mailbox_id, new)
            return
        with self.db.session() as session:
            rows = session.scalars(select(MailFolder).where(MailFolder.mailbox_id == mailbox_id))
            by_name = {r.name: r for r in rows}
            if old not in by_name:
                raise FolderMissing(old)
            if new in by_name:
                raise FolderExists(new)
            root = self.mailbox_root(session, mailbox_id)
            for name, row in sorted(by_name.items()):
                if name == old or name.startswith(old + "."):
                    target = new + name[len(old):]
                    os.rename(root / directory_name(name), root / directory_name(target))
                    row.name = target

    def _rename_inbox(self, mailbox_id: int, new: str) -> None:
        target = self.create_folder(mailbox_id, new)
        state = self.sync(mailbox_id, "INBOX")
        if state.messages:
            self.move(state.folder.id, [m.uid for m in state.messages], mailbox_id, target.name)

    def subscribe(self, mailbox_id: int, name: str, subscribed: bool) -> None:
        with self.db.session() as session:
            self._folder(session, mailbox_id, name).subscribed = subscribed

    # -- reading ------------------------------------------------------------

    def sync(self, mailbox_id: int, name: str) -> FolderState:
        """Reconcile the index of one folder with its Maildir and return its state."""
        with self.db.session() as session:
            row = self._folder(session, mailbox_id, name, lock=True)
            path = self.folder_path(session, row)
            on_disk = _scan(path)
            indexed = {m.base_name: m for m in session.scalars(
                select(MailMessage).where(MailMessage.folder_id == row.id))}  # fmt: skip
            changed = False
            for base, msg in list(indexed.items()):
                found = on_disk.get(base)
                if found is None:
                    session.delete(msg)
                    changed = True
                    continue
                _sub, _file, disk_flags = found
                mine = frozenset(f for f in msg.flags.split() if f in SYSTEM_FLAGS)
                if disk_flags != mine:
                    keywords = [f for f in msg.flags.split() if f not in SYSTEM_FLAGS]
                    msg.flags = " ".join(sorted(disk_flags | set(keywords)))
                    row.highest_modseq += 1
                    msg.modseq = row.highest_modseq
            recent: set[int] = set()
            fresh = sorted((b, v) for b, v in on_disk.items() if b not in indexed)
            for base, (sub, filename, flags) in fresh:
                source = path / sub / filename
                if sub == "new":
                    # new/ → cur/ hands the message to an IMAP client (\Recent).
                    dest = path / "cur" / (base + flags_suffix(flags))
                    try:
                        os.rename(source, dest)
                    except FileNotFoundError:
                        continue
                    source = dest
                    on_disk[base] = ("cur", dest.name, flags)
                try:
                    stat = source.stat()
                except FileNotFoundError:
                    continue
                size = int(m.group(1)) if (m := _SIZE.search(base)) else stat.st_size
                wire = int(m.group(1)) if (m := _WIRE.search(base)) else _wire_size(source)
                row.highest_modseq += 1
                uid = row.uid_next
                row.uid_next += 1
                session.add(MailMessage(folder_id=row.id, uid=uid, base_name=base,
                                        flags=" ".join(sorted(flags)), modseq=row.highest_modseq,
                                        size=size, rfc822_size=wire,
                                        internal_date=datetime.fromtimestamp(stat.st_mtime, UTC)))
                if sub == "new":
                    recent.add(uid)
                changed = True
            if changed:
                row.highest_modseq += 1
            session.flush()
            return FolderState(_info(row), self._messages(session, row, path, on_disk),
                               frozenset(recent))  # fmt: skip

    def _messages(
        self, session: Session, row: MailFolder, path: Path,
        on_disk: dict[str, tuple[str, str, frozenset[str]]] | None = None,
    ) -> tuple[MessageInfo, ...]:  # fmt: skip
        if on_disk is None:
            on_disk = _scan(path)
        out = []
        for m in session.scalars(
            select(MailMessage).where(MailMessage.folder_id == row.id).order_by(MailMessage.uid)
        ):
            sub, filename, _flags = on_disk.get(m.base_name, ("cur", m.base_name, frozenset()))
            out.append(MessageInfo(m.uid, frozenset(m.flags.split()), m.modseq, m.size,
                                   m.rfc822_size, m.internal_date, path / sub / filename))
        return tuple(out)

    # -- writing ------------------------------------------------------------

    def append(
        self, mailbox_id: int, name: str, data: bytes, flags: Iterable[str],
        internal_date: datetime | None,
    ) -> tuple[int, int]:  # fmt: skip
        """Store a message; return (UIDVALIDITY, UID). Raises QuotaExceeded, FolderMissing."""
        flags = frozenset(flags)
        body = data.replace(b"\r\n", b"\n")
        with self.db.session() as session:
            row = self._folder(session, mailbox_id, name, lock=True)
            path = self.folder_path(session, row)
            box = maildir.Maildir(path)
            staged = box.stage(body)
            try:
                quota.charge(session, {mailbox_id: staged.size})
                uid = self._add(session, row, staged.tmp_path.name, flags, staged.size,
                                maildir.crlf_size(body), internal_date)  # fmt: skip
                dest = path / "cur" / (staged.tmp_path.name + flags_suffix(flags))
                if internal_date is not None:
                    stamp = internal_date.timestamp()
                    os.utime(staged.tmp_path, (stamp, stamp))
                os.rename(staged.tmp_path, dest)
                maildir.fsync_dir(dest.parent)
            except BaseException:
                maildir.discard([staged])
                raise
            return row.uid_validity, uid

    def _add(
        self, session: Session, row: MailFolder, base: str, flags: frozenset[str], size: int,
        wire: int, internal_date: datetime | None,
    ) -> int:  # fmt: skip
        row.highest_modseq += 1
        uid = row.uid_next
        row.uid_next += 1
        session.add(MailMessage(folder_id=row.id, uid=uid, base_name=base,
                                flags=" ".join(sorted(flags)), modseq=row.highest_modseq,
                                size=size, rfc822_size=wire,
                                internal_date=internal_date or datetime.now(UTC)))  # fmt: skip
        return uid

    def store_flags(
        self, folder_id: int, uids: Iterable[int], mode: str, flags: Iterable[str],
        unchanged_since: int | None = None,
    ) -> tuple[list[tuple[int, frozenset[str], int]], list[int]]:  # fmt: skip
        """Change flags (mode "+", "-" or "="); return (updated, failed-UNCHANGEDSINCE) UIDs."""
        flags = frozenset(flags)
        wanted = set(uids)
        updated: list[tuple[int, frozenset[str], int]] = []
        failed: list[int] = []
        with self.db.session() as session:
            row = session.scalars(select(MailFolder).where(MailFolder.id == folder_id)
                                  .with_for_update()).one()  # fmt: skip
            path = self.folder_path(session, row)
            on_disk = _scan(path)
            for msg in session.scalars(select(MailMessage).where(
                    MailMessage.folder_id == folder_id).order_by(MailMessage.uid)):  # fmt: skip
                if msg.uid not in wanted:
                    continue
                if unchanged_since is not None and msg.modseq > unchanged_since:
                    failed.append(msg.uid)
                    continue
                current = frozenset(msg.flags.split())
                new = current | flags if mode == "+" else current - flags if mode == "-" else flags
                if new == current:
                    updated.append((msg.uid, new, msg.modseq))
                    continue
                row.highest_modseq += 1
                msg.flags = " ".join(sorted(new))
                msg.modseq = row.highest_modseq
                found = on_disk.get(msg.base_name)
                if found is not None and found[0] == "cur":
                    source = path / "cur" / found[1]
                    target = path / "cur" / (msg.base_name + flags_suffix(new))
                    if source != target:
                        os.rename(source, target)
                updated.append((msg.uid, new, msg.modseq))
        return updated, failed

    def copy(
        self, folder_id: int, uids: Iterable[int], mailbox_id: int, dest_name: str
    ) -> tuple[int, list[tuple[int, int]]]:
        """Copy messages; return (dest UIDVALIDITY, [(source uid, dest uid)]). Charges quota."""
        wanted = set(uids)
        pairs: list[tuple[int, int]] = []
        created: list[Path] = []
        with self.db.session() as session:
            src = session.get(MailFolder, folder_id)
            assert src is not None
            dest = self._folder(session, mailbox_id, dest_name, lock=True)
            src_path, dest_path = self.folder_path(session, src), self.folder_path(session, dest)
            maildir.Maildir(dest_path).ensure()
            on_disk = _scan(src_path)
            msgs = [m for m in session.scalars(select(MailMessage).where(
                MailMessage.folder_id == folder_id).order_by(MailMessage.uid)) if m.uid in wanted]
            try:
                quota.charge(session, {mailbox_id: sum(m.size for m in msgs)} if msgs else {})
                for m in msgs:
                    found = on_disk.get(m.base_name)
                    if found is None:
                        continue
                    base = _unique_base(m.base_name)
                    target = dest_path / "cur" / (base + flags_suffix(m.flags.split()))
                    _link_or_copy(src_path / found[0] / found[1], target)
                    created.append(target)
                    uid = self._add(session, dest, base, frozenset(m.flags.split()), m.size,
                                    m.rfc822_size, m.internal_date)  # fmt: skip
                    pairs.append((m.uid, uid))
                if created:
                    maildir.fsync_dir(dest_path / "cur")
            except BaseException:
                for path in created:
                    path.unlink(missing_ok=True)
                raise
            return dest.uid_validity, pairs

    def move(
        self, folder_id: int, uids: Iterable[int], mailbox_id: int, dest_name: str
    ) -> tuple[int, list[tuple[int, int]]]:
        uids = list(uids)
        validity, pairs = self.copy(folder_id, uids, mailbox_id, dest_name)
        self.expunge(folder_id, [src for src, _ in pairs], require_deleted=False)
        return validity, pairs

    def expunge(
        self, folder_id: int, uids: Iterable[int] | None = None, *, require_deleted: bool = True
    ) -> list[int]:
        """Remove messages (\\Deleted ones, optionally only among ``uids``); refund quota."""
        wanted = None if uids is None else set(uids)
        removed: list[int] = []
        files: list[Path] = []
        with self.db.session() as session:
            row = session.scalars(select(MailFolder).where(MailFolder.id == folder_id)
                                  .with_for_update()).one()  # fmt: skip
            path = self.folder_path(session, row)
            on_disk = _scan(path)
            freed = 0
            for msg in session.scalars(select(MailMessage).where(
                    MailMessage.folder_id == folder_id).order_by(MailMessage.uid)):  # fmt: skip
                if wanted is not None and msg.uid not in wanted:
                    continue
                if require_deleted and "\\Deleted" not in msg.flags.split():
                    continue
                found = on_disk.get(msg.base_name)
                if found is not None:
                    files.append(path / found[0] / found[1])
                freed += msg.size
                removed.append(msg.uid)
                session.delete(msg)
            if removed:
                row.highest_modseq += 1
                quota.charge(session, {row.mailbox_id: -freed})
        for file in files:
            file.unlink(missing_ok=True)
        return removed

    def reindex(self, mailbox_id: int) -> dict[str, int]:
        """Rebuild the index of a mailbox from its Maildir++ folders and recount its usage.

        Folders found on disk are adopted (a folder copied in from another
        server is picked up; its messages get UIDs under a new UIDVALIDITY),
        index rows whose files are gone are dropped, and the mailbox's quota
        usage is set to what is actually on disk. Returns messages per folder.
        """
        with self.db.session() as session:
            root = self.mailbox_root(session, mailbox_id)
            known = set(session.scalars(
                select(MailFolder.name).where(MailFolder.mailbox_id == mailbox_id)))  # fmt: skip
            found = ["INBOX"] if (root / "cur").is_dir() or (root / "new").is_dir() else []
            if root.is_dir():
                for entry in sorted(root.iterdir()):
                    name = folder_name(entry.name)
                    if name and entry.is_dir() and (entry / "cur").is_dir():
                        found.append(name)
            for name in found:
                if name not in known:
                    self._create(session, mailbox_id, name, SPECIAL_USE.get(name))
        counts = {f.name: len(self.sync(mailbox_id, f.name).messages)
                  for f in self.list_folders(mailbox_id)}  # fmt: skip
        with self.db.session() as session:
            total = sum(session.scalars(
                select(MailMessage.size).join(MailFolder, MailMessage.folder_id == MailFolder.id)
                .where(MailFolder.mailbox_id == mailbox_id)))  # fmt: skip
            quota.recount(session, mailbox_id, total)
        return counts

    def state(self, folder_id: int) -> FolderState:
        with self.db.session() as session:
            row = session.get(MailFolder, folder_id)
            if row is None:
                raise FolderMissing(str(folder_id))
            return FolderState(_info(row), self._messages(session, row,
                                                          self.folder_path(session, row)))


def _scan(path: Path) -> dict[str, tuple[str, str, frozenset[str]]]:
    """base name → (subdir, file name, system flags) for every message file."""
    found: dict[str, tuple[str, str, frozenset[str]]] = {}
    for sub in ("new", "cur"):
        try:
            entries = os.scandir(path / sub)
        except FileNotFoundError:
            continue
        with entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                base, flags = _split_name(entry.name)
                found[base] = (sub, entry.name, flags)
    return found


def _wire_size(path: Path) -> int:
    return maildir.crlf_size(path.read_bytes())


_copy_counter = itertools.count(1)


def _unique_base(base: str) -> str:
    """A fresh Maildir base name for a copy, keeping the S= and W= size tags."""
    tags = "".join(m.group(0) for m in re.finditer(r",[SW]=\d+", base))
    now = time.time()
    host = base.split(".", 3)[2].split(",")[0] if base.count(".") >= 2 else "copy"
    return (f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}C{next(_copy_counter)}.{host}{tags}")


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # Maildir files are immutable: a hard link is a copy
    except OSError:
        shutil.copyfile(source, target)
