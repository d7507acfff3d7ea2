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

``sync`` is what every IMAP command that looks at a folder pays for, so it
does not re-read what it already knows: the store keeps a
:class:`~storage.mailindex_state.Snapshot` per folder and checks it with a
read-only snapshot of the database (no write lock) and a listing of the
folder, as :mod:`storage.mailindex_state` explains. Only deliveries in
``new/`` and changes made by other Maildir tools take the folder lock. A
STORE updates the snapshot it was made against, and :meth:`MailStore.
cached_state` offers it without any I/O while nothing unseen can have
changed it. Writes find files under the names the snapshot remembers and
look them up again only if another tool renamed them
(:mod:`storage.mailindex_files`), instead of listing the folder each time.
The hot paths use Core statements; the ORM is left to folder management.

Summaries: what IMAP derives from a message file (``mail_summary``) is
opaque here. The store is given a ``summarize`` function (stored octets →
summary) and indexes a message with its summary where it can do so cheaply:
APPEND hands one in, COPY copies the source's, deliveries found in ``new/``
are summarized before the folder is locked, and ``reindex`` fills in what is
missing. The IMAP server reads them with :meth:`MailStore.summaries` and
stores the ones it had to make with :meth:`MailStore.save_summaries`.

Quota: APPEND and COPY charge the pooled quota in the same transaction as the
index rows; EXPUNGE refunds it. Every function blocks; servers call them from
worker threads.
"""

from __future__ import annotations

import bisect
import itertools
import os
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    Connection,
    Integer,
    LargeBinary,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage import maildir, quota
from storage import mailindex_files as files
from storage.db import Database
from storage.folder_names import SPECIAL_USE, directory_name, folder_name, validate
from storage.mailindex_state import (
    SYSTEM_FLAGS,
    FolderInfo,
    FolderState,
    MessageInfo,
    Snapshot,
    check_disk,
    file_name,
    flags_suffix,
    list_dir,
    merge_rows,
    message_from_row,
    mtime_ns,
    now_ns,
    parse_flags,
    split_name,
    system_flags,
    trusted,
    with_disk_names,
    with_updates,
)
from storage.models import Domain, Mailbox, MailFolder, MailMessage, MailSummary

__all__ = [
    "SYSTEM_FLAGS",
    "Appended",
    "FolderExists",
    "FolderInfo",
    "FolderMissing",
    "FolderState",
    "MailStore",
    "MessageInfo",
    "Summarizer",
    "flags_suffix",
]

Summarizer = Callable[[bytes], bytes]  # stored octets → the summary IMAP keeps of them

_uidvalidity_counter = itertools.count()
# Snapshots kept per process, counted in messages (a few hundred bytes each).
MAX_CACHED_MESSAGES = 200_000
MAX_CACHED_PATHS = 100_000
# Deliveries larger than this, and those beyond the first MAX_INDEX_SUMMARIES
# of one sync (a folder not opened for months), are left for the first FETCH
# to summarize in an IMAP worker thread: syncs run on the one index thread.
MAX_INDEX_SUMMARY = 1024 * 1024
MAX_INDEX_SUMMARIES = 500
# Longer UID lists are matched in Python over the folder's rows rather than
# sent as an IN list (SQLite caps bound parameters).
MAX_IN_LIST = 500

_F = MailFolder.__table__.c
_M = MailMessage.__table__.c
_FOLDER_COLUMNS = (_F.id, _F.mailbox_id, _F.name, _F.uid_validity, _F.uid_next,
                   _F.highest_modseq, _F.subscribed, _F.special_use)  # fmt: skip
_FOLDER_BY_NAME = select(*_FOLDER_COLUMNS).where(
    _F.mailbox_id == bindparam("mailbox_id"), _F.name == bindparam("name"))  # fmt: skip
_FOLDER_BY_ID = select(*_FOLDER_COLUMNS).where(_F.id == bindparam("folder_id"))
_LOCK_BY_NAME = _FOLDER_BY_NAME.with_for_update()
_LOCK_BY_ID = _FOLDER_BY_ID.with_for_update()
_SET_FOLDER = (
    update(MailFolder.__table__)
    .where(_F.id == bindparam("_id"))
    .values(uid_next=bindparam("_uid_next"), highest_modseq=bindparam("_modseq"))
)
# (uid, base, flags, modseq, size, wire, date): what a MessageInfo is made of.
_ROW = (_M.uid, _M.base_name, _M.flags, _M.modseq, _M.size, _M.rfc822_size, _M.internal_date)
_ALL_ROWS = select(*_ROW).where(_M.folder_id == bindparam("folder_id")).order_by(_M.uid)
_CHANGED_ROWS = select(*_ROW).where(
    _M.folder_id == bindparam("folder_id"), _M.modseq > bindparam("since"))  # fmt: skip
_COUNT = select(func.count()).where(_M.folder_id == bindparam("folder_id"))
_ID_ROWS = select(_M.id, *_ROW).where(_M.folder_id == bindparam("folder_id")).order_by(_M.uid)
_ID_ROWS_IN = _ID_ROWS.where(_M.uid.in_(bindparam("uids", expanding=True)))
_ID_ROW = _ID_ROWS.where(_M.uid == bindparam("uid"))  # one message: no IN list to render
_INDEXED_BASES = select(_M.base_name).where(
    _M.folder_id == bindparam("folder_id"), _M.base_name.in_(bindparam("bases", expanding=True)))
_INSERT = insert(MailMessage.__table__)
_SET_FLAGS = (
    update(MailMessage.__table__)
    .where(_M.id == bindparam("_id"))
    .values(flags=bindparam("_flags"), modseq=bindparam("_modseq"))
)
_DELETE = delete(MailMessage.__table__).where(_M.id.in_(bindparam("ids", expanding=True)))
_S = MailSummary.__table__.c
_INSERT_SUMMARY = insert(MailSummary.__table__)
_SUMMARIES_IN = select(_S.uid, _S.data).where(
    _S.folder_id == bindparam("folder_id"), _S.uid.in_(bindparam("uids", expanding=True)))
_SUMMARIZED = select(_S.uid).where(_S.folder_id == bindparam("folder_id"))
_COPY_SUMMARY = insert(MailSummary.__table__).from_select(
    ["folder_id", "uid", "data"],
    select(bindparam("_dest", type_=Integer), bindparam("_dest_uid", type_=BigInteger), _S.data)
    .where(_S.folder_id == bindparam("_src"), _S.uid == bindparam("_src_uid")),
)  # fmt: skip


def _save_summary(dialect: str) -> Any:
    """Insert or replace a summary, for a message still indexed (else nothing)."""
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert_(MailSummary.__table__).from_select(
        ["folder_id", "uid", "data"],
        select(_M.folder_id, _M.uid, bindparam("_data", type_=LargeBinary))
        .where(_M.folder_id == bindparam("_folder"), _M.uid == bindparam("_uid")),
    )  # fmt: skip
    return stmt.on_conflict_do_update(index_elements=["folder_id", "uid"],
                                      set_={"data": stmt.excluded.data})  # fmt: skip


class Appended(NamedTuple):
    uid_validity: int
    uid: int
    base_name: str  # the Maildir base name: the content's identity


class FolderMissing(LookupError):
    pass


class FolderExists(ValueError):
    pass


def _info(row: MailFolder) -> FolderInfo:
    return FolderInfo(row.id, row.mailbox_id, row.name, row.uid_validity, row.uid_next,
                      row.highest_modseq, row.subscribed, row.special_use)  # fmt: skip


def _new_uid_validity() -> int:
    # Seconds since the epoch, made unique within the process so a folder
    # deleted and re-created in the same second still gets a new value.
    return int(time.time()) + next(_uidvalidity_counter) % 1000


def _chunks(items: Sequence[Any], size: int = MAX_IN_LIST) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class MailStore:
    def __init__(self, db: Database, mail_root: Path, summarize: Summarizer | None = None) -> None:
        self.db = db
        self.mail_root = mail_root
        self.summarize = summarize
        self._save_summary = _save_summary(db.engine.dialect.name)
        self._roots: dict[int, Path] = {}  # mailboxes never move (domain and local part fixed)
        self._paths: dict[tuple[int, str], Path] = {}  # (mailbox, folder name) → directory
        self._snapshots: OrderedDict[int, Snapshot] = OrderedDict()
        self._cached = 0  # messages held by the snapshots
        self._writes: dict[int, int] = {}  # folder → index writes made by this process
        self._lock = threading.Lock()

    # -- paths --------------------------------------------------------------

    def mailbox_root(self, session: Session | Connection, mailbox_id: int) -> Path:
        root = self._roots.get(mailbox_id)
        if root is not None:
            return root
        conn = session.connection() if isinstance(session, Session) else session
        row = conn.execute(
            select(Mailbox.local_part, Domain.name)
            .join(Domain, Mailbox.domain_id == Domain.id)
            .where(Mailbox.id == mailbox_id)
        ).first()
        if row is None:
            raise FolderMissing(f"mailbox {mailbox_id}")
        root = maildir.mailbox_path(self.mail_root, row[1], row[0])
        if len(self._roots) >= MAX_CACHED_PATHS:
            self._roots.clear()
        self._roots[mailbox_id] = root
        return root

    def folder_path(self, session: Session | Connection, folder: MailFolder | FolderInfo) -> Path:
        key = (folder.mailbox_id, folder.name)
        path = self._paths.get(key)
        if path is None:
            path = self.mailbox_root(session, folder.mailbox_id) / directory_name(folder.name)
            if len(self._paths) >= MAX_CACHED_PATHS:
                self._paths.clear()
            self._paths[key] = path
        return path

    # -- folders ------------------------------------------------------------

    def ensure_defaults(self, mailbox_id: int) -> None:
        """INBOX and the SPECIAL-USE folders (RFC 6154) every new mailbox gets."""
        wanted = ("INBOX", *SPECIAL_USE)
        with self.db.reader() as session:
            existing = set(session.scalars(
                select(MailFolder.name).where(MailFolder.mailbox_id == mailbox_id)))  # fmt: skip
        if all(name in existing for name in wanted):
            return
        with self.db.session() as session:
            existing = set(session.scalars(
                select(MailFolder.name).where(MailFolder.mailbox_id == mailbox_id)
            ))  # fmt: skip
            for name in wanted:
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

    def _locked(self, conn: Connection, **where: Any) -> FolderInfo:
        """The folder row, locked until the transaction ends (by ``folder_id`` or name)."""
        stmt = _LOCK_BY_ID if "folder_id" in where else _LOCK_BY_NAME
        row = conn.execute(stmt, where).first()
        if row is None:
            raise FolderMissing(str(where.get("name", where.get("folder_id"))))
        return FolderInfo(*row)

    def list_folders(self, mailbox_id: int) -> list[FolderInfo]:
        with self.db.reader() as session:
            rows = session.connection().execute(
                select(*_FOLDER_COLUMNS).where(_F.mailbox_id == mailbox_id).order_by(_F.name))
            return [FolderInfo(*r) for r in rows]

    def get_folder(self, mailbox_id: int, name: str) -> FolderInfo | None:
        with self.db.reader() as session:
            row = session.connection().execute(
                _FOLDER_BY_NAME, {"mailbox_id": mailbox_id, "name": name}).first()  # fmt: skip
            return None if row is None else FolderInfo(*row)

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
            self._forget(row.id)
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
                    self._forget(row.id)

    def _rename_inbox(self, mailbox_id: int, new: str) -> None:
        target = self.create_folder(mailbox_id, new)
        state = self.sync(mailbox_id, "INBOX")
        if state.messages:
            self.move(state.folder.id, [m.uid for m in state.messages], mailbox_id, target.name)

    def subscribe(self, mailbox_id: int, name: str, subscribed: bool) -> None:
        with self.db.session() as session:
            self._folder(session, mailbox_id, name).subscribed = subscribed

    # -- snapshots ------------------------------------------------------------

    def _remember(self, snap: Snapshot) -> None:
        with self._lock:
            old = self._snapshots.get(snap.folder_id)
            if old is not None and old.uid_validity == snap.uid_validity \
                    and old.modseq > snap.modseq:  # fmt: skip
                return  # a slower thread read an older index
            self._snapshots[snap.folder_id] = snap
            self._snapshots.move_to_end(snap.folder_id)
            self._cached += len(snap.messages) - (len(old.messages) if old is not None else 0)
            while self._cached > MAX_CACHED_MESSAGES and len(self._snapshots) > 1:
                _, evicted = self._snapshots.popitem(last=False)
                self._cached -= len(evicted.messages)

    def _wrote(self, folder_id: int, snap: Snapshot | None = None) -> None:
        """Count a committed write to a folder; ``snap`` is the folder right after it."""
        with self._lock:
            writes = self._writes.get(folder_id, 0) + 1
            self._writes[folder_id] = writes
        if snap is not None:
            self._remember(replace(snap, writes=writes))

    def cached_state(self, folder_id: int, max_age: float) -> FolderState | None:
        """The folder as remembered, if nothing can have changed it unseen; else None.

        That is: this process has not written to it since, and the snapshot
        agreed with the database and the disk less than ``max_age`` seconds
        ago. What other processes (or deliveries, which leave files in
        ``new/``) did meanwhile is not seen: the caller needs :meth:`sync`
        for those, as its periodic poll does. Never blocks.
        """
        snap = self._snapshots.get(folder_id)
        if snap is None or snap.info is None or snap.writes != self._writes.get(folder_id, 0):
            return None
        if time.monotonic() - snap.verified_at > max_age:
            return None
        return FolderState(snap.info, snap.messages)

    def _forget(self, folder_id: int) -> None:
        with self._lock:
            old = self._snapshots.pop(folder_id, None)
            if old is not None:
                self._cached -= len(old.messages)

    def _known(self, info: FolderInfo, path: Path) -> Snapshot | None:
        snap = self._snapshots.get(info.id)
        if snap is None or snap.uid_validity != info.uid_validity or snap.path != path:
            return None
        return snap

    def _read_index(
        self, conn: Connection, info: FolderInfo, path: Path, known: Snapshot | None
    ) -> Snapshot:
        """The index of a folder as a snapshot, reading only what changed since ``known``."""
        if known is not None:
            if known.modseq == info.highest_modseq:
                return known
            rows = conn.execute(_CHANGED_ROWS, {"folder_id": info.id, "since": known.modseq})
            merged = merge_rows(known, rows, info.highest_modseq)
            count = conn.execute(_COUNT, {"folder_id": info.id}).scalar_one()
            if count == len(merged.messages):
                return merged
        # First look, or expunges: read everything, keeping the file names seen on disk.
        previous = {m.uid: m for m in known.messages} if known is not None else {}
        directory = path / "cur"
        messages = tuple(message_from_row(row, directory, previous.get(row[0]))
                         for row in conn.execute(_ALL_ROWS, {"folder_id": info.id}))  # fmt: skip
        return Snapshot(info.id, info.uid_validity, info.highest_modseq, path, messages)

    def _check_disk(self, snap: Snapshot) -> tuple[Snapshot | None, bool]:
        """(the snapshot confirmed by the disk or None, whether new/ has deliveries)."""
        delivered = bool(list_dir(snap.path / "new"))
        cur = snap.path / "cur"
        mtime = mtime_ns(cur)
        if snap.cur_names is not None and snap.cur_mtime is not None and mtime == snap.cur_mtime:
            return snap, delivered
        listed_at = now_ns()  # after the stat: a later change moves mtime past it
        checked = check_disk(snap, [], frozenset(list_dir(cur)))
        if checked is None:
            return None, delivered
        return replace(checked, cur_mtime=trusted(mtime, listed_at)), delivered

    # -- reading ------------------------------------------------------------

    def sync(self, mailbox_id: int, name: str) -> FolderState:
        """Reconcile the index of one folder with its Maildir and return its state."""
        started = time.monotonic()
        with self.db.reader() as session:
            conn = session.connection()
            row = conn.execute(_FOLDER_BY_NAME, {"mailbox_id": mailbox_id, "name": name}).first()
            if row is None:
                raise FolderMissing(name)
            info = FolderInfo(*row)
            writes = self._writes.get(info.id, 0)  # read with the index: later writes count
            path = self.folder_path(conn, info)
            snap = self._read_index(conn, info, path, self._known(info, path))
        checked, delivered = self._check_disk(snap)
        if checked is not None and not delivered:
            self._remember(replace(checked, info=info, verified_at=started, writes=writes))
            return FolderState(info, checked.messages)
        return self._reconcile(mailbox_id, name, checked)

    def state(self, folder_id: int) -> FolderState:
        with self.db.reader() as session:
            row = session.connection().execute(_FOLDER_BY_ID, {"folder_id": folder_id}).first()
        if row is None:
            raise FolderMissing(str(folder_id))
        info = FolderInfo(*row)
        return self.sync(info.mailbox_id, info.name)

    def _reconcile(self, mailbox_id: int, name: str, consistent: Snapshot | None) -> FolderState:
        """Index what changed on disk, under the folder lock.

        With ``consistent`` (a snapshot whose ``cur/`` agrees with the index)
        only the deliveries in ``new/`` are looked at; otherwise the whole
        folder is scanned and the index made to match it.
        """
        recent: set[int] = set()
        summaries = self._summarize_new(self._paths.get((mailbox_id, name)))
        with self.db.session() as session:
            conn = session.connection()
            info = self._locked(conn, mailbox_id=mailbox_id, name=name)
            locked_at = time.monotonic()
            path = self.folder_path(conn, info)
            known = self._known(info, path)
            if consistent is None or consistent.folder_id != info.id:
                on_disk = files.scan(path)
                indexed = list(conn.execute(_ID_ROWS, {"folder_id": info.id}))
            else:
                on_disk = files.scan(path, ("new",))
                bases = list(on_disk)
                indexed = []
                for chunk in _chunks(bases):
                    done = set(conn.scalars(_INDEXED_BASES, {"folder_id": info.id,
                                                             "bases": list(chunk)}))  # fmt: skip
                    # Already indexed (a racing sync moved them): nothing to add.
                    for base in done:
                        on_disk.pop(base, None)
            modseq, uid_next = info.highest_modseq, info.uid_next
            deletes: list[int] = []
            updates: list[dict[str, Any]] = []
            seen: set[str] = set()
            for id_, _uid, base, text, *_rest in indexed:
                seen.add(base)
                found = on_disk.get(base)
                if found is None:
                    deletes.append(id_)
                    continue
                flags = parse_flags(text)
                if found[2] != system_flags(flags):
                    modseq += 1
                    keywords = {f for f in flags if f not in SYSTEM_FLAGS}
                    updates.append({"_id": id_, "_flags": " ".join(sorted(found[2] | keywords)),
                                    "_modseq": modseq})  # fmt: skip
            inserts: list[dict[str, Any]] = []
            for base, (sub, filename, flags) in sorted(on_disk.items()):
                if base in seen:
                    continue
                source = path / sub / filename
                if sub == "new":
                    # new/ → cur/ hands the message to an IMAP client (\Recent).
                    target = file_name(base, flags)
                    try:
                        os.rename(source, path / "cur" / target)
                    except FileNotFoundError:
                        continue
                    source = path / "cur" / target
                    on_disk[base] = ("cur", target, flags)
                try:
                    stat = source.stat()
                except FileNotFoundError:
                    continue
                size, wire = files.sizes(base, source, stat)
                modseq += 1
                inserts.append({"folder_id": info.id, "uid": uid_next, "base_name": base,
                                "flags": " ".join(sorted(flags)), "modseq": modseq, "size": size,
                                "rfc822_size": wire,
                                "internal_date": datetime.fromtimestamp(stat.st_mtime, UTC)})
                if sub == "new":
                    recent.add(uid_next)
                uid_next += 1
            if deletes or inserts:
                modseq += 1
            for chunk in _chunks(deletes):
                conn.execute(_DELETE, {"ids": list(chunk)})
            if updates:
                conn.execute(_SET_FLAGS, updates)
            if inserts:
                conn.execute(_INSERT, inserts)
                made = [{"folder_id": info.id, "uid": row["uid"], "data": summaries[base]}
                        for row in inserts if (base := row["base_name"]) in summaries]  # fmt: skip
                if made:
                    conn.execute(_INSERT_SUMMARY, made)
            if modseq != info.highest_modseq or uid_next != info.uid_next:
                conn.execute(_SET_FOLDER, {"_id": info.id, "_uid_next": uid_next,
                                           "_modseq": modseq})  # fmt: skip
            info = FolderInfo(info.id, info.mailbox_id, info.name, info.uid_validity, uid_next,
                              modseq, info.subscribed, info.special_use)  # fmt: skip
            if consistent is not None and consistent.folder_id == info.id:
                snap = self._read_index(conn, info, path, consistent)
                moved = {filename for sub, filename, _ in on_disk.values() if sub == "cur"}
                cur_names = (consistent.cur_names or frozenset()) | moved
            else:
                snap = self._read_index(conn, info, path, known)
                snap = with_disk_names(snap, on_disk)
                cur_names = frozenset(f for sub, f, _ in on_disk.values() if sub == "cur")
            snap = Snapshot(snap.folder_id, snap.uid_validity, snap.modseq, snap.path,
                            snap.messages, cur_names, None, info, locked_at)  # fmt: skip
        self._wrote(info.id, snap)
        return FolderState(info, snap.messages, frozenset(recent))

    def _summarize_new(self, path: Path | None) -> dict[str, bytes]:
        """Summaries of the deliveries waiting in ``new/``, by base name.

        Made before the folder is locked (reading files under the lock would
        hold up every writer); the content behind a base name never changes,
        so it does not matter whether this sync or a racing one indexes them.
        """
        if self.summarize is None or path is None:
            return {}
        made: dict[str, bytes] = {}
        for name in list_dir(path / "new")[:MAX_INDEX_SUMMARIES]:
            file = path / "new" / name
            try:
                if file.stat().st_size <= MAX_INDEX_SUMMARY:
                    made[split_name(name)[0]] = self.summarize(file.read_bytes())
            except FileNotFoundError:
                continue  # moved to cur/ by a racing sync: indexed without one
        return made

    # -- writing ------------------------------------------------------------

    def append(
        self, mailbox_id: int, name: str, data: bytes, flags: Iterable[str],
        internal_date: datetime | None,
    ) -> tuple[int, int]:  # fmt: skip
        """Store a message; return (UIDVALIDITY, UID). Raises QuotaExceeded, FolderMissing."""
        stored = self.append_message(mailbox_id, name, data, flags, internal_date)
        return stored.uid_validity, stored.uid

    def append_message(
        self, mailbox_id: int, name: str, data: bytes, flags: Iterable[str],
        internal_date: datetime | None, summary: bytes | None = None,
    ) -> Appended:  # fmt: skip
        """:meth:`append`, also telling the file's base name (a cache key for its content).

        ``summary`` is indexed with the message (see the module docstring).
        """
        flags = frozenset(flags)
        body = data.replace(b"\r\n", b"\n")
        with self.db.session() as session:
            conn = session.connection()
            info = self._locked(conn, mailbox_id=mailbox_id, name=name)
            path = self.folder_path(conn, info)
            box = maildir.Maildir(path)
            staged = box.stage(body)
            try:
                quota.charge(session, {mailbox_id: staged.size})
                uid = info.uid_next
                self._insert(conn, info, [(staged.tmp_path.name, flags, staged.size,
                                          maildir.crlf_size(body), internal_date)],
                             [summary])  # fmt: skip
                dest = path / "cur" / file_name(staged.tmp_path.name, flags)
                if internal_date is not None:
                    stamp = internal_date.timestamp()
                    os.utime(staged.tmp_path, (stamp, stamp))
                os.rename(staged.tmp_path, dest)
                maildir.fsync_dir(dest.parent)
            except BaseException:
                maildir.discard([staged])
                raise
        self._wrote(info.id)
        return Appended(info.uid_validity, uid, staged.tmp_path.name)

    def _insert(
        self, conn: Connection, info: FolderInfo,
        messages: Sequence[tuple[str, frozenset[str], int, int, datetime | None]],
        summaries: Sequence[bytes | None] = (),
    ) -> list[int]:  # fmt: skip
        """Index new messages (base, flags, size, wire size, date) at the next UIDs,
        with the summaries given (in the same order, None for none)."""
        modseq, uid = info.highest_modseq, info.uid_next
        rows, uids = [], []
        now = datetime.now(UTC)
        for base, flags, size, wire, internal_date in messages:
            modseq += 1
            rows.append({"folder_id": info.id, "uid": uid, "base_name": base,
                         "flags": " ".join(sorted(flags)), "modseq": modseq, "size": size,
                         "rfc822_size": wire, "internal_date": internal_date or now})  # fmt: skip
            uids.append(uid)
            uid += 1
        if rows:
            conn.execute(_INSERT, rows)
            conn.execute(_SET_FOLDER, {"_id": info.id, "_uid_next": uid, "_modseq": modseq})
        pairs = zip(uids, summaries, strict=False)  # no summaries given: none to insert
        made = [{"folder_id": info.id, "uid": u, "data": d} for u, d in pairs if d is not None]
        if made:
            conn.execute(_INSERT_SUMMARY, made)
        return uids

    def _rows(self, conn: Connection, folder_id: int, uids: Sequence[int] | None) -> list[Any]:
        """(id, uid, base, flags, modseq, size, wire, date) of the wanted messages, by UID."""
        if uids is not None and len(uids) == 1:
            return list(conn.execute(_ID_ROW, {"folder_id": folder_id, "uid": uids[0]}))
        if uids is not None and len(uids) <= MAX_IN_LIST:
            return list(conn.execute(_ID_ROWS_IN, {"folder_id": folder_id, "uids": list(uids)}))
        rows = conn.execute(_ID_ROWS, {"folder_id": folder_id})
        if uids is None:
            return list(rows)
        wanted = set(uids)
        return [row for row in rows if row[1] in wanted]

    def _names(self, folder_id: int, path: Path) -> Callable[[int], str | None]:
        """UID → file name in cur/ as last seen (a hint: files may have moved since)."""
        snap = self._snapshots.get(folder_id)
        if snap is None or snap.path != path:
            return lambda uid: None
        messages = snap.messages

        def lookup(uid: int) -> str | None:
            i = bisect.bisect_left(messages, uid, key=lambda m: m.uid)
            if i < len(messages) and messages[i].uid == uid and messages[i].directory.name == "cur":
                return messages[i].filename
            return None

        return lookup

    def store_flags(
        self, folder_id: int, uids: Iterable[int], mode: str, flags: Iterable[str],
        unchanged_since: int | None = None,
    ) -> tuple[list[tuple[int, frozenset[str], int]], list[int]]:  # fmt: skip
        """Change flags (mode "+", "-" or "="); return (updated, failed-UNCHANGEDSINCE) UIDs."""
        flags = frozenset(flags)
        wanted = sorted(set(uids))
        updated: list[tuple[int, frozenset[str], int]] = []
        failed: list[int] = []
        with self.db.session() as session:
            conn = session.connection()
            info = self._locked(conn, folder_id=folder_id)
            path = self.folder_path(conn, info)
            names = self._names(folder_id, path)
            modseq = info.highest_modseq
            changes: list[dict[str, Any]] = []
            for id_, uid, base, text, msg_modseq, *_rest in self._rows(conn, folder_id, wanted):
                if unchanged_since is not None and msg_modseq > unchanged_since:
                    failed.append(uid)
                    continue
                current = parse_flags(text)
                new = current | flags if mode == "+" else current - flags if mode == "-" else flags
                if new == current:
                    updated.append((uid, current, msg_modseq))
                    continue
                modseq += 1
                changes.append({"_id": id_, "_flags": " ".join(sorted(new)), "_modseq": modseq})
                if system_flags(new) != system_flags(current):
                    source = names(uid) or file_name(base, current)
                    files.rename(path, base, source, file_name(base, new))
                updated.append((uid, new, modseq))
            if changes:
                conn.execute(_SET_FLAGS, changes)
                conn.execute(_SET_FOLDER, {"_id": folder_id, "_uid_next": info.uid_next,
                                           "_modseq": modseq})  # fmt: skip
            known = self._known(info, path)
            locked_at = time.monotonic()
        if changes:
            if known is not None and known.modseq == info.highest_modseq:
                # Nobody else changed the folder in between: the next sync needs no index read.
                snap = with_updates(known, updated, modseq)
                new_info = replace(info, highest_modseq=modseq)
                self._wrote(folder_id, replace(snap, info=new_info, verified_at=locked_at))
            else:
                self._wrote(folder_id)
        return updated, failed

    def copy(
        self, folder_id: int, uids: Iterable[int], mailbox_id: int, dest_name: str
    ) -> tuple[int, list[tuple[int, int]]]:
        """Copy messages; return (dest UIDVALIDITY, [(source uid, dest uid)]). Charges quota."""
        wanted = sorted(set(uids))
        created: list[Path] = []
        with self.db.session() as session:
            conn = session.connection()
            src_row = conn.execute(_FOLDER_BY_ID, {"folder_id": folder_id}).first()
            if src_row is None:
                raise FolderMissing(str(folder_id))
            src = FolderInfo(*src_row)
            dest = self._locked(conn, mailbox_id=mailbox_id, name=dest_name)
            src_path, dest_path = self.folder_path(conn, src), self.folder_path(conn, dest)
            maildir.Maildir(dest_path).ensure()
            names = self._names(folder_id, src_path)
            rows = self._rows(conn, folder_id, wanted)
            try:
                quota.charge(session, {mailbox_id: sum(r[5] for r in rows)} if rows else {})
                copied: list[tuple[str, frozenset[str], int, int, datetime | None]] = []
                sources: list[int] = []
                for _id, uid, base, text, _modseq, size, wire, date in rows:
                    flags = parse_flags(text)
                    source = files.locate(src_path, base, names(uid) or file_name(base, flags))
                    if source is None:
                        continue
                    new_base = files.unique_base(base)
                    target = dest_path / "cur" / file_name(new_base, flags)
                    files.link_or_copy(source, target)
                    created.append(target)
                    copied.append((new_base, flags, size, wire, date))
                    sources.append(uid)
                dest_uids = self._insert(conn, dest, copied)
                if dest_uids:  # the same content: the same summary
                    conn.execute(_COPY_SUMMARY, [
                        {"_dest": dest.id, "_dest_uid": new, "_src": folder_id, "_src_uid": old}
                        for old, new in zip(sources, dest_uids, strict=True)])  # fmt: skip
                if created:
                    maildir.fsync_dir(dest_path / "cur")
            except BaseException:
                for path in created:
                    path.unlink(missing_ok=True)
                raise
        if dest_uids:
            self._wrote(dest.id)
        return dest.uid_validity, list(zip(sources, dest_uids, strict=True))

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
        wanted = None if uids is None else sorted(set(uids))
        removed: list[int] = []
        files: list[tuple[str, str]] = []  # (base, likely file name in cur/)
        with self.db.session() as session:
            conn = session.connection()
            info = self._locked(conn, folder_id=folder_id)
            path = self.folder_path(conn, info)
            names = self._names(folder_id, path)
            freed = 0
            ids: list[int] = []
            for id_, uid, base, text, _modseq, size, *_rest in self._rows(conn, folder_id, wanted):
                flags = parse_flags(text)
                if require_deleted and "\\Deleted" not in flags:
                    continue
                files.append((base, names(uid) or file_name(base, flags)))
                freed += size
                removed.append(uid)
                ids.append(id_)
            if removed:
                for chunk in _chunks(ids):
                    conn.execute(_DELETE, {"ids": list(chunk)})
                conn.execute(_SET_FOLDER, {"_id": folder_id, "_uid_next": info.uid_next,
                                           "_modseq": info.highest_modseq + 1})  # fmt: skip
                quota.charge(session, {info.mailbox_id: -freed})
        if removed:
            self._wrote(folder_id)
        scanned: dict[str, tuple[str, str, frozenset[str]]] | None = None
        for base, name in files:
            try:
                (path / "cur" / name).unlink()
            except FileNotFoundError:
                if scanned is None:
                    scanned = files.scan(path)
                found = scanned.get(base)
                if found is not None:
                    (path / found[0] / found[1]).unlink(missing_ok=True)
        return removed

    # -- summaries ----------------------------------------------------------

    def summaries(self, folder_id: int, uids: Sequence[int]) -> dict[int, bytes]:
        """The stored summaries of these messages, by UID (those that have one)."""
        found: dict[int, bytes] = {}
        with self.db.reader() as session:
            conn = session.connection()
            for chunk in _chunks(uids):
                params = {"folder_id": folder_id, "uids": list(chunk)}
                for uid, data in conn.execute(_SUMMARIES_IN, params):
                    found[uid] = data
        return found

    def save_summaries(self, folder_id: int, summaries: dict[int, bytes]) -> None:
        """Store summaries made after indexing, replacing older ones (UIDs gone are skipped)."""
        rows = [{"_folder": folder_id, "_uid": uid, "_data": data}
                for uid, data in summaries.items()]  # fmt: skip
        with self.db.session() as session:
            session.connection().execute(self._save_summary, rows)

    def _fill_summaries(self, state: FolderState) -> None:
        """Summarize the folder's messages that have no summary (files adopted by reindex)."""
        if self.summarize is None:
            return
        folder_id = state.folder.id
        with self.db.reader() as session:
            done = set(session.connection().scalars(_SUMMARIZED, {"folder_id": folder_id}))
        made: dict[int, bytes] = {}
        for message in state.messages:
            if message.uid in done:
                continue
            try:
                made[message.uid] = self.summarize(message.path.read_bytes())
            except FileNotFoundError:
                continue  # gone since the scan: the next sync drops its row
            if len(made) >= MAX_IN_LIST:  # a transaction per few hundred
                self.save_summaries(folder_id, made)
                made = {}
        if made:
            self.save_summaries(folder_id, made)

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
        counts = {}
        for folder in self.list_folders(mailbox_id):
            self._forget(folder.id)  # rebuild: trust nothing remembered
            state = self._reconcile(mailbox_id, folder.name, None)
            self._fill_summaries(state)
            counts[folder.name] = len(state.messages)
        with self.db.session() as session:
            total = sum(session.scalars(
                select(MailMessage.size).join(MailFolder, MailMessage.folder_id == MailFolder.id)
                .where(MailFolder.mailbox_id == mailbox_id)))  # fmt: skip
            quota.recount(session, mailbox_id, total)
        return counts
