"""The durable outbound spool: messages waiting for remote delivery.

A message is written to ``<data>/queue/<queue-id>.eml`` and fsynced before
its ``outbound_message`` row is committed, and the row is committed before the
SMTP client is told 250: a message the client was told about is always both
on disk and recorded. Remote delivery (MX lookup, retries, DSNs) drains this
spool; until it runs, entries stay ``queued`` and visible, never dropped.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import insert
from sqlalchemy.orm import Session

from storage.ledger import Statement, Tx
from storage.maildir import fsync_dir
from storage.models import OutboundMessage

# Queue ids name spool files and appear in replies and trace headers: they
# must be unique, not secret. A generator seeded from the system's randomness
# once per process (and again in a forked child, or two SMTP workers would
# repeat each other) gives 64 random bits without a getrandom(2) call per
# message: on the event loop each such call handed the interpreter lock to a
# waiting thread, and taking it back cost far more than the call (7 % of the
# loop's time at 10 connections).
_ids = random.Random(os.urandom(16))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(16)))


def new_queue_id() -> str:
    return f"{_ids.getrandbits(64):016X}"


_COLUMNS = [c.key for c in OutboundMessage.__table__.columns if c.key != "id"]
_INSERT_TX = Statement(insert(OutboundMessage.__table__), column_keys=_COLUMNS)


@dataclass(frozen=True, slots=True)
class SpooledFile:
    queue_id: str
    path: Path
    size: int


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, queue_id: str, data: bytes) -> SpooledFile:
        """Write and fsync the message body (blocking; call from a worker thread)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f"{queue_id}.eml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self.root)
        return SpooledFile(queue_id, path, len(data))

    def record(
        self,
        session: Session,
        spooled: SpooledFile,
        mail_from: str,
        recipients: list[str],
        now: datetime,
    ) -> OutboundMessage:
        row = OutboundMessage(
            queue_id=spooled.queue_id,
            mail_from=mail_from,
            recipients=json.dumps(recipients),
            spool_path=str(spooled.path),
            size=spooled.size,
            state="queued",
            attempts=0,
            created_at=now,
            next_attempt_at=now,
        )
        session.add(row)
        return row

    def record_tx(
        self, tx: Tx, spooled: SpooledFile, mail_from: str, recipients: list[str], now: datetime
    ) -> None:
        """``record`` on the group committer's connection (the delivery path)."""
        tx.execute(_INSERT_TX, {
            "queue_id": spooled.queue_id, "mail_from": mail_from,
            "recipients": json.dumps(recipients), "spool_path": str(spooled.path),
            "size": spooled.size, "state": "queued", "attempts": 0, "created_at": now,
            "next_attempt_at": now, "last_error": None,
        })  # fmt: skip

    def discard(self, spooled: SpooledFile) -> None:
        spooled.path.unlink(missing_ok=True)
