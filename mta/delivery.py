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
3. the staged copies are renamed into ``new/`` and the directories fsynced;
4. only then is ``250`` answered.

So nothing is partially delivered, and a message the client was told about
is on disk, charged and on record. Blocking work runs in worker threads.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from mta.message import message_id, received_header, to_lf
from policy import replies
from policy.addresses import Address
from policy.replies import SMTPReply
from policy.routing import RouteAction, RoutingDecision, defer_for_quota, route
from storage import chain, maildir
from storage import quota as quota_store
from storage.db import Database, StorageUnavailable
from storage.directory import recipient_facts
from storage.models import RoutingEntry
from storage.quota import QuotaExceeded
from storage.spool import Spool, SpooledFile, new_queue_id

log = logging.getLogger("mailward.delivery")


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
class Envelope:
    mail_from: str  # "" for the null sender
    accepted: list[Accepted] = field(default_factory=list)
    size_hint: int = 0


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
) -> RoutingEntry:
    return RoutingEntry(
        at=now,
        session=conn.session_id,
        client_ip=conn.client_ip,
        helo=conn.helo,
        mail_from=mail_from,
        recipient=str(recipient),
        decision=action,
        reason=decision.reason.value,
        rule_ids=",".join(decision.rule_ids),
        reply=str(reply),
        message_id=msg_id,
        queue_id=queue_id,
        trace=json.dumps(
            [[s.rule, s.outcome, s.reason.value] for s in decision.trace], separators=(",", ":")
        ),
    )


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
    ) -> None:
        self.on_delivered = on_delivered  # called from a worker thread with mailbox ids
        self.db = db
        self.mail_root = mail_root
        self.spool = spool
        self.hostname = hostname
        self.clock = clock

    # -- RCPT ---------------------------------------------------------------

    async def decide(self, conn: Connection, env: Envelope, recipient: Address) -> RoutingDecision:
        try:
            return await asyncio.to_thread(self._decide, conn, env, recipient)
        except StorageUnavailable:
            log.exception("routing decision for %s failed", recipient)
            raise

    def _decide(self, conn: Connection, env: Envelope, recipient: Address) -> RoutingDecision:
        now = self.clock()
        with self.db.session() as session:
            decision = route(recipient_facts(session, recipient), now)
            if decision.accepted:
                needed = max(env.size_hint, 1)
                for mailbox in decision.mailboxes:
                    if not quota_store.snapshot(session, mailbox.id).fits(needed):
                        decision = defer_for_quota(decision)
                        break
            action = "accept" if decision.accepted else decision.action.value
            entry = _entry(conn, env.mail_from, recipient, decision, action, now,
                           reply=decision.reply)  # fmt: skip
            chain.append(session, chain.ROUTING, [entry])
        return decision

    # -- DATA ---------------------------------------------------------------

    async def deliver(self, conn: Connection, env: Envelope, data: bytes) -> SMTPReply:
        try:
            return await asyncio.to_thread(self._deliver, conn, env, data)
        except StorageUnavailable:
            log.exception("delivery failed")
            return replies.STORAGE_UNAVAILABLE

    def _deliver(self, conn: Connection, env: Envelope, data: bytes) -> SMTPReply:
        now = self.clock()
        queue_id = new_queue_id()
        msg_id = message_id(data)
        staged: list[maildir.StagedMessage] = []
        sizes: dict[int, int] = {}
        forwards: list[str] = []
        spooled: SpooledFile | None = None
        body = to_lf(data)
        return_path = f"Return-Path: <{env.mail_from}>\r\n".encode()
        try:
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
                    box = maildir.Maildir(
                        maildir.mailbox_path(self.mail_root, mailbox.address.domain,
                                             mailbox.address.local)
                    )  # fmt: skip
                    msg = box.stage(to_lf(headers) + body)
                    staged.append(msg)
                    sizes[mailbox.id] = msg.size
                forwards.extend(str(a) for a in item.decision.forwards if str(a) not in forwards)
            if forwards:
                trace = received_header(
                    helo=conn.helo, client_ip=conn.client_ip, hostname=self.hostname,
                    protocol=conn.protocol, queue_id=queue_id, recipient=None, now=now,
                )  # fmt: skip
                spooled = self.spool.write(queue_id, trace + data)
        except OSError:
            log.exception("writing message %s failed", queue_id)
            self._abandon(staged, spooled)
            return replies.STORAGE_UNAVAILABLE

        try:
            with self.db.session() as session:
                quota_store.charge(session, sizes)
                if spooled is not None:
                    self.spool.record(session, spooled, env.mail_from, forwards, now)
                entries = [
                    _entry(conn, env.mail_from, item.recipient, item.decision,
                           "deliver" if item.decision.action is RouteAction.DELIVER else "forward",
                           now, reply=replies.DELIVERED, queue_id=queue_id, msg_id=msg_id)
                    for item in env.accepted
                ]  # fmt: skip
                chain.append(session, chain.ROUTING, entries)
        except QuotaExceeded as exc:
            self._abandon(staged, spooled)
            log.info("message %s deferred: %s", queue_id, exc)
            self._log_deferred(conn, env, queue_id, msg_id, now)
            return replies.QUOTA_EXCEEDED
        except StorageUnavailable:
            self._abandon(staged, spooled)
            raise

        try:
            maildir.commit(staged)
        except OSError:
            # Charged and logged but not visible: the client is not told 250,
            # so it retries; ``mailward reindex`` reconciles the quota.
            log.exception("publishing message %s failed", queue_id)
            return replies.STORAGE_UNAVAILABLE
        if self.on_delivered is not None and sizes:
            self.on_delivered(list(sizes))
        return SMTPReply(250, "2.0.0", f"Ok: queued as {queue_id}")

    def _abandon(self, staged: list[maildir.StagedMessage], spooled: SpooledFile | None) -> None:
        maildir.discard(staged)
        if spooled is not None:
            self.spool.discard(spooled)

    def _log_deferred(
        self, conn: Connection, env: Envelope, queue_id: str, msg_id: str | None, now: datetime
    ) -> None:
        try:
            with self.db.session() as session:
                entries = [
                    _entry(conn, env.mail_from, item.recipient, defer_for_quota(item.decision),
                           "defer", now, reply=replies.QUOTA_EXCEEDED, queue_id=queue_id,
                           msg_id=msg_id)
                    for item in env.accepted
                ]  # fmt: skip
                chain.append(session, chain.ROUTING, entries)
        except StorageUnavailable:
            log.exception("could not log deferral of %s", queue_id)
