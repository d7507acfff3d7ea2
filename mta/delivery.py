"""The governed delivery pipeline: look up facts → ask policy → execute → log.

At RCPT time ``decide`` resolves one recipient against the directory, asks
``policy.routing.route`` for a decision, checks that the pool is not already
full, and appends the decision to the routing log *before* the SMTP reply is
sent. At end of DATA ``deliver`` executes the accepted decisions as one unit:

1. every mailbox copy is written to its Maildir ``tmp/`` and fsynced, and
   external forwards are written to the outbound spool and fsynced;
2. one transaction charges the pooled quota for every copy, records the spool
   entry and appends a deliver/forward entry per recipient to the routing log;
   if any quota level refuses, the transaction rolls back, the staged files
   are removed, a ``defer`` is logged and the client gets ``452 4.2.2``;
3. the staged copies are renamed into ``new/``; the transaction of step 2
   noted them, so the directories' fsync happens in the background and a
   crash before it is finished at the next start (``storage.publish``);
4. only then is ``250`` answered.

Steps 1 and 2 run at the same time when nothing is forwarded (each waits for
the disk; neither needs the other until step 3). If the write fails after the
record committed, a second transaction refunds the charge and logs a
``defer`` (storage-failed) per recipient, and the client gets ``451``.

So nothing is partially delivered, and a message the client was told about
is on disk, charged and on record. Blocking file work runs in worker threads;
database work runs as units of the ``GroupCommitter``, so concurrent sessions
share commits while each reply still waits for its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from mta.message import message_id, received_header, to_lf
from policy import replies
from policy.addresses import Address
from policy.replies import SMTPReply
from policy.routing import (
    RouteAction,
    RoutingDecision,
    defer_for_quota,
    defer_for_storage,
    route,
)
from storage import chain, maildir, publish
from storage import quota as quota_store
from storage.committer import GroupCommitter, Pending
from storage.db import Database, StorageUnavailable
from storage.directory import FactsCache, VersionedCache
from storage.ledger import Tx
from storage.quota import QuotaExceeded
from storage.spool import Spool, SpooledFile, new_queue_id
from storage.workers import Workers

T = TypeVar("T")

log = logging.getLogger("mailward.delivery")

# Threads for the delivery path's file work. Most of their time is spent in
# fsync with the GIL released, and the kernel's journal commits concurrent
# fsyncs together, so more threads than cores pay off (the shared bench's
# fsync_rate: about 360 durable files/s with one thread, 750 with sixteen).
DISK_THREADS = 16
_disk = Workers(DISK_THREADS, "delivery-disk")


@dataclass(slots=True)
class Connection:
    """What the routing log records about the SMTP session."""

    session_id: str
    client_ip: str | None
    helo: str | None = None
    tls: bool = False
    authenticated: str | None = None

    @property
    def protocol(self) -> str:
        # RFC 3848 "with" keywords.
        return "ESMTP" + ("S" if self.tls else "") + ("A" if self.authenticated else "")


@dataclass(frozen=True, slots=True)
class Accepted:
    recipient: Address
    decision: RoutingDecision


@dataclass(slots=True)
class Plan:
    """One message's copies: composed, then written to tmp/, recorded, published."""

    queue_id: str
    message_id: str | None
    # (mailbox id, its Maildir, bytes with trace headers, file name)
    copies: list[tuple[int, MailboxDir, bytes, str]]
    sizes: dict[int, int]  # mailbox id → bytes charged
    forwards: list[str]
    spool_data: bytes | None  # the copy for the outbound queue, when forwarded
    staged: list[maildir.StagedMessage] = field(default_factory=list)
    spooled: SpooledFile | None = None


@dataclass(frozen=True, slots=True)
class MailboxDir:
    """A mailbox's Maildir, and its path under the mail root as the record notes it."""

    maildir: maildir.Maildir
    relative: str


@dataclass(slots=True)
class _Outcome:
    """How writing, recording and publishing one message's copies went."""

    write_error: Exception | None = None
    record_error: BaseException | None = None
    reply: SMTPReply | None = None  # publishing failed: the reply instead of 250


@dataclass(slots=True)
class Envelope:
    mail_from: str  # "" for the null sender
    accepted: list[Accepted] = field(default_factory=list)
    size_hint: int = 0


_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))  # ``json.dumps`` makes one per call


def _entry(
    conn: Connection,
    mail_from: str,
    recipient: Address,
    decision: RoutingDecision,
    action: str,
    now: datetime,
    *,
    reply: SMTPReply,
    queue_id: str | None = None,
    msg_id: str | None = None,
) -> dict[str, Any]:
    """A routing log row (``storage.chain.append_rows`` adds id and hashes)."""
    return {
        "at": now,
        "session": conn.session_id,
        "client_ip": conn.client_ip,
        "helo": conn.helo,
        "mail_from": mail_from,
        "recipient": str(recipient),
        "decision": action,
        "reason": decision.reason.value,
        "rule_ids": ",".join(decision.rule_ids),
        "reply": str(reply),
        "message_id": msg_id,
        "queue_id": queue_id,
        "trace": _COMPACT_JSON.encode([[s.rule, s.outcome, s.reason.value]
                                       for s in decision.trace]),
    }


class DeliveryAgent:
    def __init__(
        self,
        db: Database,
        *,
        mail_root: Path,
        spool: Spool,
        hostname: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_delivered: Callable[[list[int]], None] | None = None,
        committer: GroupCommitter | None = None,
        node: str = publish.DEFAULT_NODE,
    ) -> None:
        self.on_delivered = on_delivered  # called from a worker thread with mailbox ids
        self._owns_committer = committer is None
        self.committer = committer or GroupCommitter(db)
        self.node = node  # whose rows of unpublished copies this agent writes
        self.publisher = publish.Publisher(self.committer)
        self.db = db
        self.facts = FactsCache()  # used only on the committer thread
        self.hosted: VersionedCache[str, bool] = VersionedCache()  # domain → hosted here
        self.mail_root = mail_root
        self._mailbox_dirs: dict[tuple[str, str], MailboxDir] = {}
        self.spool = spool
        self.hostname = hostname
        self.clock = clock

    def close(self) -> None:
        self.publisher.close()
        if self._owns_committer:
            self.committer.close()

    async def _unit(self, work: Callable[[Tx], T], *, isolated: bool = True) -> T:
        return await self.committer.run(work, isolated=isolated)

    # -- RCPT ---------------------------------------------------------------

    async def decide(self, conn: Connection, env: Envelope, recipient: Address) -> RoutingDecision:
        try:
            return await self._unit(partial(self._decide, conn, env, recipient), isolated=False)
        except StorageUnavailable:
            log.exception("routing decision for %s failed", recipient)
            raise

    def _decide(
        self, conn: Connection, env: Envelope, recipient: Address, tx: Tx
    ) -> RoutingDecision:
        now = self.clock()
        decision = route(self.facts.get_tx(tx, recipient), now)
        if decision.accepted:
            needed = max(env.size_hint, 1)
            for mailbox in decision.mailboxes:
                if not quota_store.snapshot_tx(tx, mailbox.id).fits(needed):
                    decision = defer_for_quota(decision)
                    break
        action = "accept" if decision.accepted else decision.action.value
        entry = _entry(conn, env.mail_from, recipient, decision, action, now,
                       reply=decision.reply)  # fmt: skip
        chain.append_rows(tx, chain.ROUTING, [entry])
        return decision

    # -- DATA ---------------------------------------------------------------

    async def deliver(self, conn: Connection, env: Envelope, data: bytes) -> SMTPReply:
        # Shielded: a client that hangs up after its final dot must not cut
        # the pipeline between record and publish (charged, logged, invisible).
        return await asyncio.shield(self._deliver(conn, env, data))

    async def _deliver(self, conn: Connection, env: Envelope, data: bytes) -> SMTPReply:
        now = self.clock()
        plan = self._compose(conn, env, data, new_queue_id(), now)
        if plan.spool_data is None:
            # Writing the copies and recording them are independent until the
            # copies are published, so their two waits for the disk overlap,
            # and the worker that wrote the copies publishes them as soon as
            # the record commits. (A spooled forward is recorded only once its
            # file exists: the queue runner may pick the row up at once.)
            reply = await self._write_and_record(conn, env, plan, now)
        else:
            reply = await self._write_then_record(conn, env, plan, now)
            if reply is None and plan.staged:
                reply = await _disk.run(self._publish, plan)
        if reply is not None:
            return reply
        if self.on_delivered is not None and plan.sizes:
            self.on_delivered(list(plan.sizes))
        return SMTPReply(250, "2.0.0", f"Ok: queued as {plan.queue_id}")

    def _publish(self, plan: Plan) -> SMTPReply | None:
        """Rename the recorded copies into ``new/`` (a worker thread); None when done."""
        try:
            # The rename is made durable in the background (storage.publish).
            maildir.publish(plan.staged)
        except OSError:
            # Charged and logged but not visible: the client is not told 250,
            # so it retries; the copies' rows stay, and the next start
            # publishes what is still in tmp/.
            log.exception("publishing message %s failed", plan.queue_id)
            return replies.STORAGE_UNAVAILABLE
        self.publisher.renamed(plan.staged)
        return None

    async def _write_and_record(
        self, conn: Connection, env: Envelope, plan: Plan, now: datetime
    ) -> SMTPReply | None:
        # No savepoint: the record either refuses before it writes anything
        # (quota, a deleted mailbox: storage.committer.UnitRefused) or succeeds.
        recorded = self.committer.submit(partial(self._record, conn, env, plan, now),
                                         isolated=False)  # fmt: skip
        outcome = await _disk.run(self._write_and_publish, plan, recorded)
        if outcome.record_error is not None:
            return await self._refused(conn, env, plan, now, outcome.record_error)
        if outcome.write_error is not None:
            log.error("writing message %s failed: %s", plan.queue_id, outcome.write_error)
            try:  # recorded but not written: take the charge and the entries back
                await self._unit(partial(self._withdraw, conn, env, plan, now))
            except StorageUnavailable:
                log.exception("could not withdraw %s; reindex reconciles", plan.queue_id)
            return replies.STORAGE_UNAVAILABLE
        return outcome.reply

    def _write_and_publish(self, plan: Plan, recorded: Pending[None]) -> _Outcome:
        """Write the copies, wait for their record, publish them: one worker thread.

        Waiting here for the committer (which never waits for these threads)
        saves a round trip through the event loop between write and rename.
        A copy whose record failed is removed again.
        """
        outcome = _Outcome()
        try:
            self._write(plan)
        except Exception as exc:  # whatever it was, the copies are gone (``_write``)
            outcome.write_error = exc
        outcome.record_error = recorded.exception()
        if outcome.record_error is None and outcome.write_error is None:
            outcome.reply = self._publish(plan)
        elif outcome.write_error is None:
            self._abandon(plan)
        return outcome

    async def _write_then_record(
        self, conn: Connection, env: Envelope, plan: Plan, now: datetime
    ) -> SMTPReply | None:
        try:
            await _disk.run(self._write, plan)
        except OSError:
            log.exception("writing message %s failed", plan.queue_id)
            return replies.STORAGE_UNAVAILABLE
        try:
            await self._unit(partial(self._record, conn, env, plan, now), isolated=False)
        except Exception as exc:
            await _disk.run(self._abandon, plan)
            return await self._refused(conn, env, plan, now, exc)
        return None

    async def _refused(
        self, conn: Connection, env: Envelope, plan: Plan, now: datetime, error: BaseException
    ) -> SMTPReply:
        """The reply (and log entries) for a message whose record was refused."""
        if isinstance(error, QuotaExceeded):
            log.info("message %s deferred: %s", plan.queue_id, error)
            try:
                await self._unit(partial(self._log_deferred, conn, env, plan, now))
            except StorageUnavailable:
                log.exception("could not log deferral of %s", plan.queue_id)
            return replies.QUOTA_EXCEEDED
        log.error("delivery of %s failed: %r", plan.queue_id, error)
        return replies.STORAGE_UNAVAILABLE

    def _compose(
        self, conn: Connection, env: Envelope, data: bytes, queue_id: str, now: datetime
    ) -> Plan:
        """Every mailbox copy with its trace headers, and the forward copy (no I/O)."""
        copies: list[tuple[int, Path, bytes, str]] = []
        sizes: dict[int, int] = {}
        forwards: list[str] = []
        body = to_lf(data)
        return_path = f"Return-Path: <{env.mail_from}>\r\n".encode()
        for item in env.accepted:
            for mailbox in item.decision.mailboxes:
                if mailbox.id in sizes:
                    continue  # one copy per mailbox, however many recipients reach it
                trace = received_header(
                    helo=conn.helo, client_ip=conn.client_ip, hostname=self.hostname,
                    protocol=conn.protocol, queue_id=queue_id,
                    recipient=str(item.recipient), now=now,
                )  # fmt: skip
                headers = return_path + f"Delivered-To: {mailbox.address}\r\n".encode() + trace
                copy = to_lf(headers) + body
                where = self._mailbox_dir(mailbox.address.domain, mailbox.address.local)
                copies.append((mailbox.id, where, copy, maildir.unique_name(copy)))
                sizes[mailbox.id] = len(copy)
            forwards.extend(str(a) for a in item.decision.forwards if str(a) not in forwards)
        spool_data = None
        if forwards:
            trace = received_header(
                helo=conn.helo, client_ip=conn.client_ip, hostname=self.hostname,
                protocol=conn.protocol, queue_id=queue_id, recipient=None, now=now,
            )  # fmt: skip
            spool_data = trace + data
        return Plan(queue_id, message_id(data), copies, sizes, forwards, spool_data)

    def _write(self, plan: Plan) -> None:
        """Write every copy to tmp/ (and the forward to the spool), fsynced, not yet visible.

        On failure whatever was written is removed before the error propagates.
        """
        try:
            for _mailbox_id, where, copy, name in plan.copies:
                plan.staged.append(where.maildir.stage(copy, name))
            if plan.spool_data is not None:
                plan.spooled = self.spool.write(plan.queue_id, plan.spool_data)
        except BaseException:
            self._abandon(plan)
            raise

    def _record(
        self, conn: Connection, env: Envelope, plan: Plan, now: datetime, tx: Tx
    ) -> None:
        quota_store.charge_tx(tx, plan.sizes)
        publish.record_tx(tx, self.node, self._copies(plan), now)
        if plan.spooled is not None:
            self.spool.record_tx(tx, plan.spooled, env.mail_from, plan.forwards, now)
        entries = [
            _entry(conn, env.mail_from, item.recipient, item.decision,
                   "deliver" if item.decision.action is RouteAction.DELIVER else "forward",
                   now, reply=replies.DELIVERED, queue_id=plan.queue_id,
                   msg_id=plan.message_id)
            for item in env.accepted
        ]  # fmt: skip
        chain.append_rows(tx, chain.ROUTING, entries)

    def _withdraw(
        self, conn: Connection, env: Envelope, plan: Plan, now: datetime, tx: Tx
    ) -> None:
        """Undo a record whose copies could not be written: refund, and say so in the log."""
        quota_store.charge_tx(tx, {mailbox: -size for mailbox, size in plan.sizes.items()})
        publish.forget_tx(tx, [copy.name for copy in self._copies(plan)])
        entries = [
            _entry(conn, env.mail_from, item.recipient, defer_for_storage(item.decision),
                   "defer", now, reply=replies.STORAGE_UNAVAILABLE, queue_id=plan.queue_id,
                   msg_id=plan.message_id)
            for item in env.accepted
        ]  # fmt: skip
        chain.append_rows(tx, chain.ROUTING, entries)

    def _copies(self, plan: Plan) -> list[publish.Copy]:
        return [publish.Copy(where.relative, name)
                for _mailbox_id, where, _copy, name in plan.copies]  # fmt: skip

    def _mailbox_dir(self, domain: str, local_part: str) -> MailboxDir:
        # Paths made once per mailbox: building them per message was a few
        # percent of the delivery path's CPU.
        found = self._mailbox_dirs.get((domain, local_part))
        if found is None:
            if len(self._mailbox_dirs) > 100_000:
                self._mailbox_dirs.clear()
            path = maildir.mailbox_path(self.mail_root, domain, local_part)
            found = MailboxDir(maildir.Maildir(path), str(path.relative_to(self.mail_root)))
            self._mailbox_dirs[(domain, local_part)] = found
        return found

    def _abandon(self, plan: Plan) -> None:
        maildir.discard(plan.staged)
        plan.staged.clear()
        if plan.spooled is not None:
            self.spool.discard(plan.spooled)
            plan.spooled = None

    def _log_deferred(
        self, conn: Connection, env: Envelope, plan: Plan, now: datetime, tx: Tx
    ) -> None:
        entries = [
            _entry(conn, env.mail_from, item.recipient, defer_for_quota(item.decision),
                   "defer", now, reply=replies.QUOTA_EXCEEDED, queue_id=plan.queue_id,
                   msg_id=plan.message_id)
            for item in env.accepted
        ]  # fmt: skip
        chain.append_rows(tx, chain.ROUTING, entries)
