"""The inbound server's agent: SRS bounces and sender authentication around ``DeliveryAgent``.

``InboundRouter`` has the ``decide``/``deliver`` interface ``InboundHandler``
calls, and adds two steps to the governed pipeline without changing it:

- at RCPT, an address of our SRS domain is a bounce to a message we
  forwarded: it is routed back to the original sender (``mta.relay``);
- at end of DATA, SPF, DKIM and DMARC are evaluated (``mta.inbound_auth``).
  A refusal (DMARC ``p=reject`` honoured by the recipient domain, or a spoof
  of a hosted domain) is answered ``550 5.7.1`` and logged as a ``reject``
  per recipient; otherwise the verdict joins each recipient's routing trace,
  forged ``Authentication-Results`` fields are dropped and ours is prepended.

Wiring: ``InboundHandler(InboundRouter(agent, checker=…, srs=…, on_queued=queue.wake),
limits)``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from functools import partial

from sqlalchemy import select

from mta.delivery import Accepted, Connection, DeliveryAgent, Envelope
from mta.dmarc import org_domain
from mta.inbound_auth import AuthVerdict, InboundAuthenticator, refusal, strip_forged
from mta.relay import decide_outside_directory, log_decisions
from mta.srs import SRS
from mta.threads import blocking
from policy import replies
from policy.addresses import Address
from policy.replies import SMTPReply
from policy.routing import Reason, RouteAction, RoutingDecision, TraceStep
from storage.db import StorageUnavailable
from storage.models import Domain
from storage.models_outbound import DomainAuthPolicy
from storage.outbound import hosted_domains

log = logging.getLogger("mailward.inbound")


class InboundRouter:
    def __init__(
        self,
        agent: DeliveryAgent,
        *,
        checker: InboundAuthenticator | None,
        srs: SRS | None,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self.agent = agent
        self.db = agent.db
        self.checker = checker
        self.srs = srs
        self.on_queued = on_queued  # wakes the outbound queue when forwards were spooled

    async def decide(self, conn: Connection, env: Envelope, recipient: Address) -> RoutingDecision:
        return await decide_outside_directory(
            self.agent, conn, env, recipient, authenticated=bool(conn.authenticated), srs=self.srs
        )

    async def deliver(self, conn: Connection, env: Envelope, data: bytes) -> SMTPReply:
        reply = await self._deliver(conn, env, data)
        forwarded = any(a.decision.forwards for a in env.accepted)
        if reply.code == 250 and forwarded and self.on_queued is not None:
            self.on_queued()
        return reply

    async def _deliver(self, conn: Connection, env: Envelope, data: bytes) -> SMTPReply:
        checker = self.checker
        if checker is None or conn.authenticated:
            return await self.agent.deliver(conn, env, data)
        try:
            verdict = await blocking.run(partial(
                checker.check, client_ip=conn.client_ip, helo=conn.helo,
                mail_from=env.mail_from, data=data,
            ))  # fmt: skip
            from_hosted, enforce = await blocking.run(self._facts, verdict, env)
        except StorageUnavailable:
            return replies.STORAGE_UNAVAILABLE
        step = TraceStep("auth", verdict.summary, Reason.AUTH_CHECKED)
        refused = refusal(verdict, from_hosted=from_hosted, enforce_dmarc=enforce,
                          refuse_spoofs=checker.settings.refuse_hosted_spoofs)  # fmt: skip
        if refused is not None:
            reply, reason = refused
            log.info("refused message from %s (%s): %s", env.mail_from, verdict.summary, reason)
            decisions = [
                (item.recipient, RoutingDecision(
                    RouteAction.REJECT, reply, reason,
                    trace=(*item.decision.trace, step, TraceStep("auth", "refuse", reason))),
                 "reject")
                for item in env.accepted
            ]  # fmt: skip
            try:
                await log_decisions(self.agent, conn, env.mail_from, decisions, self.agent.clock())
            except StorageUnavailable:
                return replies.STORAGE_UNAVAILABLE
            return reply
        traced = Envelope(
            mail_from=env.mail_from, size_hint=env.size_hint,
            accepted=[Accepted(a.recipient, dataclasses.replace(
                a.decision, trace=(*a.decision.trace, step))) for a in env.accepted],
        )  # fmt: skip
        stamped = verdict.header() + strip_forged(data, verdict.authserv_id)
        return await self.agent.deliver(conn, traced, stamped)

    def _facts(self, verdict: AuthVerdict, env: Envelope) -> tuple[bool, bool]:
        """(From is a hosted domain, every recipient domain enforces DMARC reject)."""
        author = verdict.from_domain
        rcpt_domains = {a.recipient.domain for a in env.accepted}
        with self.db.reader() as session:  # a read: never the write lock
            from_hosted = bool(author) and bool(
                hosted_domains(session, {author or "", org_domain(author or "")})
            )
            opted_out = set(session.scalars(
                select(Domain.name).join(DomainAuthPolicy, DomainAuthPolicy.domain_id == Domain.id)
                .where(Domain.name.in_(rcpt_domains), DomainAuthPolicy.dmarc_reject.is_(False))
            ))  # fmt: skip
        assert self.checker is not None
        enforce = self.checker.settings.reject_dmarc and not (rcpt_domains & opted_out)
        return from_hosted, enforce
