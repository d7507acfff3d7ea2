"""Publishing delivered copies without waiting for an fsync of ``new/``.

A delivered copy is safe once its file in ``tmp/`` is fsynced and its
delivery is on record; what makes it visible is the rename into ``new/``,
and making a rename durable takes an fsync of the directory: a third wait
for the disk on every message, after the file's and the commit's.

Instead the delivery's own transaction also records each copy here (its
file name, Maildir and node). The client gets 250 right after the rename; a
background thread makes the renames since its last round durable (every
``SYNC_INTERVAL_SECONDS``: one ``syncfs`` per file system where the C library
has it, else an fsync per directory; see ``maildir.sync_directories``) and
only then deletes their rows. After a
crash, ``recover`` runs before the servers start and publishes whatever
this node's rows still find in ``tmp/``. So a 250 still means the message is
on disk and will be in the mailbox; at worst the rename is redone at start.
(Dovecot's default is not to fsync the directory at all.)

A row's file is published only if it is complete: its size must be the
``S=`` its name promises. A record whose file never got that far belongs to
a transaction the client was not told about (the reply waits for the write),
so the file is removed and the client's retry delivers the message.

Rows carry the node (``node_id``), so nodes that share a PostgreSQL
database recover only their own disks.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path

from sqlalchemy import bindparam, delete, insert, select

from storage.committer import GroupCommitter
from storage.db import Database, StorageUnavailable
from storage.ledger import Statement, Tx
from storage.maildir import StagedMessage, size_in_name, sync_directories
from storage.models import UnpublishedCopy

log = logging.getLogger("mailward.publish")
SYNC_INTERVAL_SECONDS = 0.2
NODE_FILE = "node-id"
DEFAULT_NODE = "local"

_T = UnpublishedCopy.__table__
_INSERT = Statement(insert(_T), column_keys=["name", "node", "maildir", "at"])
_DELETE = Statement(delete(_T).where(_T.c.name == bindparam("gone")))


def node_id(data_dir: Path) -> str:
    """This node's name for its rows: made once, kept in the data folder."""
    path = data_dir / NODE_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return path.read_text().strip()
    node = secrets.token_hex(8)
    try:
        os.write(fd, node.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return node


@dataclass(frozen=True, slots=True)
class Copy:
    """Where a copy goes: its Maildir relative to the mail root and its file name."""

    maildir: str
    name: str


def record_tx(tx: Tx, node: str, copies: Iterable[Copy], now: datetime) -> None:
    """Note copies about to be renamed into ``new/`` (in the delivery's transaction)."""
    tx.execute_many(_INSERT, [{"name": c.name, "node": node, "maildir": c.maildir, "at": now}
                              for c in copies])  # fmt: skip


def forget_tx(tx: Tx, names: Iterable[str]) -> None:
    tx.execute_many(_DELETE, [{"gone": name} for name in names])


class Publisher:
    """Makes renames durable in the background, then forgets their rows."""

    def __init__(
        self, committer: GroupCommitter, *, interval: float = SYNC_INTERVAL_SECONDS
    ) -> None:
        self.committer = committer
        self.interval = interval
        self._lock = threading.Lock()
        self._renamed: list[StagedMessage] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="publish-sync", daemon=True)
        self._thread.start()

    def renamed(self, staged: Iterable[StagedMessage]) -> None:
        """These copies are in ``new/``; their directories still need an fsync."""
        with self._lock:
            self._renamed.extend(staged)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sync()

    def sync(self) -> None:
        with self._lock:
            renamed, self._renamed = self._renamed, []
        synced, failed = sync_directories({msg.new_path.parent for msg in renamed})
        for directory, error in failed.items():
            # Its rows stay: the next start checks those copies. (A Maildir
            # removed since, with its mailbox, is the usual cause.)
            log.warning("could not sync %s (%s); recovery at the next start will check",
                        directory, error)  # fmt: skip
        names = [msg.new_path.name for msg in renamed if msg.new_path.parent in synced]
        if not names:
            return
        try:
            self.committer.submit(partial(forget_tx, names=names), isolated=False).result()
        except StorageUnavailable:
            log.warning("could not forget %d published copies; the next start will", len(names))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sync()


@dataclass(frozen=True, slots=True)
class Recovery:
    published: int  # renamed into new/ now
    already: int  # the rename had reached the disk
    absent: int  # in neither: since moved or expunged by a client, or never written
    incomplete: int  # never fully written: removed


def recover(db: Database, mail_root: Path, node: str) -> Recovery:
    """Finish the publication of this node's recorded copies (at start, before serving)."""
    with db.session() as session:
        rows = session.execute(
            select(_T.c.name, _T.c.maildir).where(_T.c.node == node)
        ).all()  # fmt: skip
    published = already = absent = incomplete = 0
    renamed: set[Path] = set()
    for name, relative in rows:
        box = mail_root / relative
        tmp, new = box / "tmp" / name, box / "new" / name
        try:
            size = tmp.stat().st_size
        except FileNotFoundError:
            if new.exists():
                already += 1
            else:
                absent += 1
            continue
        promised = size_in_name(name)
        if size != promised:
            log.error("removing %s: %d bytes of %s, never acknowledged", tmp, size, promised)
            tmp.unlink()
            incomplete += 1
            continue
        os.rename(tmp, new)
        renamed.add(new.parent)
        published += 1
    _synced, failed = sync_directories(renamed)
    if failed:  # the servers do not start on a store whose renames cannot be made durable
        raise next(iter(failed.values()))
    if rows:
        with db.session() as session:
            session.execute(delete(_T).where(_T.c.node == node))
        log.warning("published %d recorded copies at start (%d already were, %d gone, "
                    "%d incomplete removed)", published, already, absent, incomplete)  # fmt: skip
    return Recovery(published, already, absent, incomplete)
