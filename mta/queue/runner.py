"""The queue runner: claim due messages, deliver them, record per-recipient results.

See the package docstring for the semantics. ``OutboundQueue.run`` is one
asyncio task: it leases due rows, starts one delivery task per message, and
sleeps until woken (``wake``) or ``poll_interval`` passes. A message's
pending recipients are grouped by domain: hosted domains go through the
governed ``DeliveryAgent`` (routing log, quota), each remote domain is one
SMTP transaction under the per-destination limit, run in a thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mta.delivery import Accepted, Connection, DeliveryAgent, Envelope
from mta.queue import dsn
from mta.queue.delivery import RecipientResult, RemoteDelivery
from mta.queue.scheduler import DestinationLimiter, QueueSettings, next_attempt
from mta.srs import SRS
from policy import replies
from policy.addresses import Address, AddressError
from policy.replies import SMTPReply
from storage import outbound
from storage.db import Database, StorageUnavailable
from storage.outbound import Claimed, Outcome, RecipientState
from storage.spool import Spool, SpooledFile, new_queue_id

log = logging.getLogger("mailward.queue")

SPOOL_LOST = SMTPReply(554, "5.3.0", "Queued message file is missing")


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


class OutboundQueue:
    def __init__(
        self,
        db: Database,
        *,
        agent: DeliveryAgent,
        spool: Spool,
        settings: QueueSettings,
        hostname: str,
        srs: SRS | None = None,
    ) -> None:
        self.db = db
        self.agent = agent
        self.spool = spool
        self.settings = settings
        self.hostname = hostname
        self.srs = srs
        self.clock = agent.clock
        self.remote = RemoteDelivery(settings, hostname=hostname)
        self.limiter = DestinationLimiter(settings.per_destination, settings.max_connections)
        self._executor: ThreadPoolExecutor | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        self._stopping = False
        self._executor = ThreadPoolExecutor(
            max_workers=self.settings.max_connections, thread_name_prefix="mailward-smtp-out"
        )
        self._task = asyncio.create_task(self.run(), name="mailward-queue")

    def wake(self) -> None:
        """Look at the table now (call from the event loop)."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop claiming, let deliveries in flight finish (bounded), give the rest back."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        tasks = list(self._inflight.values())
        claimed = list(self._inflight)
        if tasks:
            _done, late = await asyncio.wait(tasks, timeout=self.settings.shutdown_grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        self._inflight.clear()
        if claimed:
            # Rows whose attempt was recorded are no longer "sending"; the rest go back.
            with contextlib.suppress(StorageUnavailable):
                await asyncio.to_thread(self._release, claimed)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _release(self, ids: list[int]) -> None:
        with self.db.session() as session:
            outbound.release(session, ids, self.clock())

    async def run(self) -> None:
        while not self._stopping:
            try:
                await self.run_once(wait=False)
            except Exception:
                log.exception("queue run failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)
            self._wake.clear()

    async def run_once(self, *, wait: bool = True) -> int:
        """Claim what is due and start delivering it; with ``wait``, until it is done."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self.settings.max_connections)
        room = max(self.settings.max_connections * 2 - len(self._inflight), 0)
        limit = min(self.settings.batch_size, room)
        if limit == 0 or (self._stopping and not wait):
            return 0
        claimed = await asyncio.to_thread(self._claim, limit)
        tasks = []
        for item in claimed:
            task = asyncio.create_task(self._process(item), name=f"queue-{item.queue_id}")
            self._inflight[item.id] = task
            task.add_done_callback(lambda _t, i=item.id: self._inflight.pop(i, None))
            tasks.append(task)
        if wait and tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        return len(claimed)

    def _claim(self, limit: int) -> list[Claimed]:
        now = self.clock()
        with self.db.session() as session:
            return outbound.claim_due(session, now=now, lease_until=now + self.settings.lease,
                                      limit=limit, skip=list(self._inflight))  # fmt: skip

    # -- one message -----------------------------------------------------------

    async def _process(self, item: Claimed) -> None:
        try:
            data: bytes | None = await asyncio.to_thread(Path(item.spool_path).read_bytes)
        except OSError:
            log.error("message %s: spool file %s is missing", item.queue_id, item.spool_path)
            data = None
        if data is None:
            results = [RecipientResult(r, SPOOL_LOST) for r in item.pending]
        else:
            try:
                results = await self._deliver(item, data)
            except Exception:
                log.exception("message %s: delivery attempt failed", item.queue_id)
                results = [RecipientResult(r, replies.STORAGE_UNAVAILABLE) for r in item.pending]
        try:
            queued_dsn = await asyncio.to_thread(self._finish, item, results, data or b"")
        except StorageUnavailable:
            log.exception("message %s: results not recorded; it will be retried", item.queue_id)
            return
        if queued_dsn:
            self.wake()

    async def _deliver(self, item: Claimed, data: bytes) -> list[RecipientResult]:
        domains = {_domain(r) for r in item.pending} | {_domain(item.mail_from)}
        try:
            hosted = await asyncio.to_thread(self._hosted, domains)
        except StorageUnavailable:
            return [RecipientResult(r, replies.STORAGE_UNAVAILABLE) for r in item.pending]
        local = [r for r in item.pending if _domain(r) in hosted]
        remote: dict[str, list[str]] = defaultdict(list)
        for rcpt in item.pending:
            if _domain(rcpt) not in hosted:
                remote[_domain(rcpt)].append(rcpt)
        mail_from = item.mail_from
        if self.srs is not None and mail_from and _domain(mail_from) not in hosted:
            # A forward of someone else's mail: send it as ours so SPF passes.
            mail_from = self.srs.forward(mail_from, self.clock())
        jobs = [self._remote(d, item, mail_from, rcpts, data) for d, rcpts in remote.items()]
        if local:
            jobs.append(self._local(item, local, data))
        results: list[RecipientResult] = []
        for group in await asyncio.gather(*jobs):
            results.extend(group)
        return results

    def _hosted(self, domains: set[str]) -> frozenset[str]:
        with self.db.session() as session:
            return outbound.hosted_domains(session, domains)

    async def _remote(
        self, domain: str, item: Claimed, mail_from: str, rcpts: list[str], data: bytes
    ) -> list[RecipientResult]:
        loop = asyncio.get_running_loop()
        async with self.limiter.acquire(self.remote.destination(domain)):
            results = await loop.run_in_executor(
                self._executor, self.remote.deliver, domain, mail_from, rcpts, data
            )
        for r in results:
            log.info("message %s to %s via %s: %s", item.queue_id, r.address, r.remote_mta,
                     r.reply)  # fmt: skip
        return results

    async def _local(self, item: Claimed, rcpts: list[str], data: bytes) -> list[RecipientResult]:
        """Hosted recipients (a DSN to a local sender, say) take the governed path."""
        conn = Connection(session_id=f"queue-{item.queue_id}"[:32], client_ip=None,
                          helo=self.hostname)  # fmt: skip
        env = Envelope(mail_from=item.mail_from, size_hint=item.size)
        replies_by: dict[str, SMTPReply] = {}
        taken: list[str] = []
        try:
            for rcpt in rcpts:
                try:
                    address = Address.parse(rcpt, utf8=True)
                except AddressError:
                    replies_by[rcpt] = replies.BAD_ADDRESS
                    continue
                decision = await self.agent.decide(conn, env, address)
                if decision.accepted:
                    env.accepted.append(Accepted(address, decision))
                    taken.append(rcpt)
                else:
                    replies_by[rcpt] = decision.reply
            if taken:
                reply = await self.agent.deliver(conn, env, data)
                replies_by.update({rcpt: reply for rcpt in taken})
        except StorageUnavailable:
            replies_by = {r: replies_by.get(r, replies.STORAGE_UNAVAILABLE) for r in rcpts}
        return [RecipientResult(r, replies_by[r], self.hostname) for r in rcpts]

    # -- results ---------------------------------------------------------------

    def _finish(self, item: Claimed, results: list[RecipientResult], data: bytes) -> bool:
        """Record one attempt; queue a DSN for what failed for good. True if a DSN was queued."""
        now = self.clock()
        at = None
        if any(not r.delivered and r.reply.temporary for r in results):
            at = next_attempt(self.settings, attempts=item.attempts + 1,
                              created_at=item.created_at, now=now)  # fmt: skip
        outcomes: list[Outcome] = []
        failed: list[dsn.FailedRecipient] = []
        for r in results:
            reply = r.reply
            if r.delivered:
                state = RecipientState.DELIVERED
            elif reply.temporary and at is not None:
                state = RecipientState.PENDING
            else:
                reply = reply if reply.permanent else dsn.expired_reply(reply)
                state = RecipientState.FAILED
                failed.append(dsn.FailedRecipient(r.address, reply, r.remote_mta, now))
            outcomes.append(Outcome(r.address, state, str(reply), r.remote_mta))

        spooled: SpooledFile | None = None
        if failed and dsn.should_notify(item.mail_from):
            report = dsn.build(original=data, sender=item.mail_from, failed=failed,
                               reporting_mta=self.hostname, queue_id=item.queue_id,
                               arrival=item.created_at, now=now)  # fmt: skip
            spooled = self.spool.write(new_queue_id(), report)
        final = False
        try:
            with self.db.session() as session:
                row = outbound.record_outcomes(session, item.id, outcomes, now)
                if row is None:
                    raise _Gone
                if outbound.pending(session, item.id):
                    outbound.reschedule(row, at or now)
                else:
                    outbound.finish(session, row)
                    final = True
                if spooled is not None:
                    self.spool.record(session, spooled, "", [item.mail_from], now)
        except _Gone:
            if spooled is not None:
                self.spool.discard(spooled)
            return False
        except BaseException:
            if spooled is not None:
                self.spool.discard(spooled)
            raise
        if final:
            # Only the row stays, as history; the body is not needed any more.
            Path(item.spool_path).unlink(missing_ok=True)
        if failed:
            log.info("message %s: %d recipient(s) failed, DSN %s", item.queue_id, len(failed),
                     spooled.queue_id if spooled else "not sent (null sender)")  # fmt: skip
        return spooled is not None


class _Gone(Exception):
    """The row was deleted (``mailward queue delete``) while it was being delivered."""
