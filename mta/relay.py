"""Routing decisions the directory cannot make, logged like the ones it does.

``policy.routing`` decides for addresses on hosted domains. Three other
cases reach the delivery path, and each gets a ``RoutingDecision`` and a
routing-log entry of its own before the SMTP reply, like every decision:

- an authenticated user sending to a remote domain (``relay_decision``):
  the recipient becomes a forward, so ``DeliveryAgent.deliver`` spools it
  for the outbound queue in the same transaction as any local copies;
- a bounce coming back to an SRS address (``srs_decision``): routed to the
  original sender, or refused when the address is forged or expired;
- an inbound message refused by its authentication verdict (see
  ``mta.inbound_router``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import partial

from mta.delivery import Connection, DeliveryAgent, Envelope, _entry
from mta.srs import SRS, SRSError, is_srs
from mta.threads import blocking
from policy import replies
from policy.addresses import Address, AddressError
from policy.routing import Reason, RouteAction, RoutingDecision, TraceStep
from storage import chain
from storage.db import Database
from storage.directory import current_directory_version
from storage.outbound import hosted_domains


def relay_decision(recipient: Address) -> RoutingDecision:
    step = TraceStep("submission", "hit", Reason.RELAY_AUTHENTICATED)
    return RoutingDecision(RouteAction.FORWARD, replies.OK, Reason.RELAY_AUTHENTICATED,
                           forwards=(recipient,), trace=(step,))  # fmt: skip


def srs_decision(srs: SRS, recipient: Address, now: datetime) -> RoutingDecision | None:
    """None when the recipient is not an SRS address of ours."""
    if recipient.domain != srs.domain.lower() or not is_srs(recipient.local):
        return None
    try:
        original = Address.parse(srs.reverse(str(recipient), now), utf8=True)
    except (SRSError, AddressError):
        step = TraceStep("srs", "refuse", Reason.SRS_INVALID)
        return RoutingDecision(RouteAction.REJECT, replies.SRS_INVALID, Reason.SRS_INVALID,
                               trace=(step,))  # fmt: skip
    step = TraceStep("srs", "hit", Reason.SRS_BOUNCE)
    return RoutingDecision(RouteAction.FORWARD, replies.OK, Reason.SRS_BOUNCE,
                           forwards=(original,), trace=(step,))  # fmt: skip


async def log_decisions(
    agent: DeliveryAgent,
    conn: Connection,
    mail_from: str,
    decisions: Iterable[tuple[Address, RoutingDecision, str]],
    now: datetime,
) -> None:
    """Append (recipient, decision, action) entries to the routing log.

    They go through the agent's group committer, like its own decisions, so
    the reply waits for a durable commit shared with concurrent sessions.
    """
    entries = [
        _entry(conn, mail_from, rcpt, decision, action, now, reply=decision.reply)
        for rcpt, decision, action in decisions
    ]
    work = partial(chain.append_rows, chain=chain.ROUTING, rows=entries)
    await agent.committer.run(work, isolated=False)


def _action(decision: RoutingDecision) -> str:
    return "accept" if decision.accepted else decision.action.value


async def decide_outside_directory(
    agent: DeliveryAgent,
    conn: Connection,
    env: Envelope,
    recipient: Address,
    *,
    authenticated: bool,
    srs: SRS | None,
    version: int | None = None,
) -> RoutingDecision:
    """Decide one recipient: SRS bounce, authenticated relay, or the directory.

    ``version`` is the directory version the session read for this mail
    transaction (at MAIL); whether a domain is hosted is then answered from
    memory when known at that version, without a read of its own.
    """
    now = agent.clock()
    decision = srs_decision(srs, recipient, now) if srs is not None else None
    if decision is None and authenticated:
        known, hosted = (False, None) if version is None else agent.hosted.cached(
            version, recipient.domain)  # fmt: skip
        if not known:
            hosted = await blocking.run(_hosted, agent, recipient.domain)
        if not hosted:
            decision = relay_decision(recipient)
    if decision is None:
        return await agent.decide(conn, env, recipient)
    await log_decisions(agent, conn, env.mail_from, [(recipient, decision, _action(decision))], now)
    return decision


def _hosted(agent: DeliveryAgent, domain: str) -> bool:
    return agent.hosted.lookup(current_directory_version(agent.db), domain,
                               lambda: _load_hosted(agent.db, domain))


def _load_hosted(db: Database, domain: str) -> bool:
    with db.reader() as session:  # a read: never the write lock
        return bool(hosted_domains(session, [domain]))
