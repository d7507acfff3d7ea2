"""The routing decision for one recipient: facts in, ``RoutingDecision`` out.

Rules are data. The caller gathers a ``RecipientFacts`` snapshot from the
directory (domain, mailbox, aliases, forwarding rules, catch-all, and the
state of every internal address those rules point to) and passes ``now``.
``route`` never reads a clock, a database or a log; it evaluates the rules in a
fixed order and records every hit and every skip in the trace, which is what
the routing log stores:

1. the domain must be hosted and not suspended;
2. an existing mailbox wins: suspended refuses, otherwise deliver, then apply
   its forwarding rules (keep-copy or not);
3. else aliases of the address; each target is internal (deliver) or external
   (a forward, governed like a forwarding rule);
4. else a documented, unexpired catch-all for the domain;
5. else ``550 5.1.1``.

A governed rule (forward, external alias, catch-all) is applied only when it
is enabled, documented (purpose and owner), unexpired, within the domain's
lifetime cap, and, for external targets, when the domain allows external
forwarding and is not frozen. Anything else is skipped with its reason.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from policy import replies
from policy.addresses import Address
from policy.replies import SMTPReply


class RouteAction(enum.StrEnum):
    DELIVER = "deliver"  # at least one local mailbox gets the message
    FORWARD = "forward"  # only external forwards, no local copy
    REJECT = "reject"
    DEFER = "defer"


class Reason(enum.StrEnum):
    DELIVER_MAILBOX = "deliver-mailbox"
    DELIVER_ALIAS = "deliver-alias"
    DELIVER_CATCHALL = "deliver-catchall"
    FORWARD_APPLIED = "forward-applied"
    UNKNOWN_RECIPIENT = "unknown-recipient"
    RELAY_DENIED = "relay-denied"
    DOMAIN_SUSPENDED = "domain-suspended"
    MAILBOX_SUSPENDED = "mailbox-suspended"
    RULE_EXPIRED = "rule-expired"
    RULE_UNDOCUMENTED = "rule-undocumented"
    RULE_DISABLED = "rule-disabled"
    RULE_OVER_CAP = "rule-lifetime-over-cap"
    EXTERNAL_FORWARDING_DISABLED = "external-forwarding-disabled"
    DOMAIN_FROZEN = "domain-frozen"
    TARGET_UNAVAILABLE = "target-unavailable"
    QUOTA_EXCEEDED = "quota-exceeded"
    STORAGE_FAILED = "storage-failed"  # recorded, but the copy could not be written
    NO_TARGET = "no-deliverable-target"
    # Decisions made outside the directory (mta.relay): authenticated relay,
    # SRS bounces returned to the original sender, inbound authentication.
    RELAY_AUTHENTICATED = "relay-authenticated"
    SRS_BOUNCE = "srs-bounce"
    SRS_INVALID = "srs-invalid"
    AUTH_CHECKED = "auth-checked"
    DMARC_REJECT = "dmarc-reject"
    SPOOFED_HOSTED_DOMAIN = "spoofed-hosted-domain"


class DomainState(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    FROZEN = "frozen"  # incident freeze: local delivery goes on, external routes stop


class MailboxState(enum.StrEnum):
    INVITED = "invited"
    ACTIVE = "active"
    SUSPENDED = "suspended"


class RuleKind(enum.StrEnum):
    FORWARD = "forward"
    ALIAS = "alias"
    CATCHALL = "catchall"


@dataclass(frozen=True, slots=True)
class DomainFacts:
    id: int
    name: str
    state: DomainState
    external_forwarding: bool
    max_rule_days: int


@dataclass(frozen=True, slots=True)
class MailboxFacts:
    id: int
    address: Address
    state: MailboxState


@dataclass(frozen=True, slots=True)
class Rule:
    """A forwarding rule, alias or catch-all, as the directory stores it."""

    kind: RuleKind
    id: int
    target: Address
    owner: str | None  # display name of the owner person or role, None if unset
    purpose: str | None
    created_at: datetime
    expires_at: datetime | None
    enabled: bool = True
    keep_copy: bool = True  # forwards only: also deliver to the source mailbox

    @property
    def rule_id(self) -> str:
        return f"{self.kind.value}:{self.id}"


@dataclass(frozen=True, slots=True)
class RecipientFacts:
    recipient: Address
    domain: DomainFacts | None
    mailbox: MailboxFacts | None
    forwards: tuple[Rule, ...] = ()
    aliases: tuple[Rule, ...] = ()
    catch_all: Rule | None = None
    # The state of every hosted address a rule above targets, keyed by address.
    internal: dict[Address, MailboxFacts] = field(default_factory=dict)
    hosted_domains: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class TraceStep:
    rule: str  # "domain", "mailbox", or a rule id such as "forward:12"
    outcome: str  # "hit" or "skip" or "refuse"
    reason: Reason


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    action: RouteAction
    reply: SMTPReply
    reason: Reason
    mailboxes: tuple[MailboxFacts, ...] = ()
    forwards: tuple[Address, ...] = ()
    trace: tuple[TraceStep, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.action in (RouteAction.DELIVER, RouteAction.FORWARD)

    @property
    def rule_ids(self) -> tuple[str, ...]:
        return tuple(s.rule for s in self.trace if s.outcome == "hit" and ":" in s.rule)


def rule_defect(
    rule: Rule, domain: DomainFacts, now: datetime, *, internal: bool = False
) -> Reason | None:
    """Why a governed rule must not be applied now, or None when it may be.

    ``internal`` says the target is on a hosted domain; only then may an alias
    go without an expiry.
    """
    if not rule.enabled:
        return Reason.RULE_DISABLED
    if not (rule.purpose and rule.purpose.strip()) or not rule.owner:
        return Reason.RULE_UNDOCUMENTED
    if rule.expires_at is None:
        # Time-boxing is mandatory for governed rules; internal aliases are
        # documented but need no expiry because they cannot leak mail. An
        # external alias is governed like a forward and must be time-boxed.
        if not (rule.kind is RuleKind.ALIAS and internal):
            return Reason.RULE_UNDOCUMENTED
    else:
        if rule.expires_at <= now:
            return Reason.RULE_EXPIRED
        if rule.expires_at - rule.created_at > timedelta(days=domain.max_rule_days):
            return Reason.RULE_OVER_CAP
    return None


def route(facts: RecipientFacts, now: datetime) -> RoutingDecision:
    domain = facts.domain
    if domain is None:
        return _refuse(replies.RELAY_DENIED, Reason.RELAY_DENIED, "domain")
    if domain.state is DomainState.SUSPENDED:
        return _refuse(replies.DOMAIN_DISABLED, Reason.DOMAIN_SUSPENDED, "domain")

    trace: list[TraceStep] = []
    plan = _Plan(facts, domain, now, trace)
    if facts.mailbox is not None:
        mailbox = facts.mailbox
        if mailbox.state is MailboxState.SUSPENDED:
            return _refuse(replies.MAILBOX_DISABLED, Reason.MAILBOX_SUSPENDED, "mailbox")
        trace.append(TraceStep("mailbox", "hit", Reason.DELIVER_MAILBOX))
        # A forward without keep-copy replaces local delivery, but only when
        # it was actually applied: a skipped rule never costs the owner mail.
        keep_local = True
        for rule in facts.forwards:
            if plan.apply(rule) and not rule.keep_copy:
                keep_local = False
        if keep_local:
            plan.deliver(mailbox, first=True)
        return plan.decision(Reason.DELIVER_MAILBOX)

    if facts.aliases:
        for rule in facts.aliases:
            plan.apply(rule)
        if plan.mailboxes or plan.forwards:
            return plan.decision(Reason.DELIVER_ALIAS)

    if facts.catch_all is not None and plan.apply(facts.catch_all):
        return plan.decision(Reason.DELIVER_CATCHALL)

    if plan.trace_has_skips():
        # Rules existed for this address but none may be applied: say so
        # instead of pretending the address never existed.
        return RoutingDecision(
            RouteAction.REJECT, replies.UNKNOWN_RECIPIENT, plan.last_skip(), trace=tuple(trace)
        )
    trace.append(TraceStep("directory", "refuse", Reason.UNKNOWN_RECIPIENT))
    return RoutingDecision(
        RouteAction.REJECT, replies.UNKNOWN_RECIPIENT, Reason.UNKNOWN_RECIPIENT, trace=tuple(trace)
    )


def _refuse(reply: SMTPReply, reason: Reason, where: str) -> RoutingDecision:
    return RoutingDecision(
        RouteAction.REJECT, reply, reason, trace=(TraceStep(where, "refuse", reason),)
    )


class _Plan:
    """Accumulates the targets of one decision while rules are evaluated."""

    def __init__(
        self, facts: RecipientFacts, domain: DomainFacts, now: datetime, trace: list[TraceStep]
    ) -> None:
        self.facts = facts
        self.domain = domain
        self.now = now
        self.trace = trace
        self.mailboxes: list[MailboxFacts] = []
        self.forwards: list[Address] = []

    def deliver(self, mailbox: MailboxFacts, *, first: bool = False) -> None:
        if all(m.id != mailbox.id for m in self.mailboxes):
            self.mailboxes.insert(0 if first else len(self.mailboxes), mailbox)

    def skip(self, rule: Rule, reason: Reason) -> bool:
        self.trace.append(TraceStep(rule.rule_id, "skip", reason))
        return False

    def apply(self, rule: Rule) -> bool:
        """Apply one rule if governance allows it; record the outcome."""
        internal = rule.target.domain in self.facts.hosted_domains
        defect = rule_defect(rule, self.domain, self.now, internal=internal)
        if defect is not None:
            return self.skip(rule, defect)
        if internal:
            target = self.facts.internal.get(rule.target)
            if target is None or target.state is MailboxState.SUSPENDED:
                return self.skip(rule, Reason.TARGET_UNAVAILABLE)
            self.deliver(target)
            catch_all = rule.kind is RuleKind.CATCHALL
            hit = Reason.DELIVER_CATCHALL if catch_all else Reason.DELIVER_ALIAS
            self.trace.append(TraceStep(rule.rule_id, "hit", hit))
            return True
        if self.domain.state is DomainState.FROZEN:
            return self.skip(rule, Reason.DOMAIN_FROZEN)
        if not self.domain.external_forwarding:
            return self.skip(rule, Reason.EXTERNAL_FORWARDING_DISABLED)
        if rule.target not in self.forwards:
            self.forwards.append(rule.target)
        self.trace.append(TraceStep(rule.rule_id, "hit", Reason.FORWARD_APPLIED))
        return True

    def trace_has_skips(self) -> bool:
        return any(s.outcome == "skip" for s in self.trace)

    def last_skip(self) -> Reason:
        return next(s.reason for s in reversed(self.trace) if s.outcome == "skip")

    def decision(self, reason: Reason) -> RoutingDecision:
        if self.mailboxes:
            action = RouteAction.DELIVER
        elif self.forwards:
            action, reason = RouteAction.FORWARD, Reason.FORWARD_APPLIED
        else:
            self.trace.append(TraceStep("plan", "refuse", Reason.NO_TARGET))
            return RoutingDecision(
                RouteAction.REJECT,
                replies.NO_DELIVERABLE_TARGET,
                Reason.NO_TARGET,
                trace=tuple(self.trace),
            )
        return RoutingDecision(
            action,
            replies.OK,
            reason,
            mailboxes=tuple(self.mailboxes),
            forwards=tuple(self.forwards),
            trace=tuple(self.trace),
        )


def defer_for_quota(decision: RoutingDecision) -> RoutingDecision:
    """The same routing, turned into a temporary refusal because the pool is full."""
    return _deferred(decision, "quota", replies.QUOTA_EXCEEDED, Reason.QUOTA_EXCEEDED)


def defer_for_storage(decision: RoutingDecision) -> RoutingDecision:
    """The same routing, withdrawn because the message could not be written to disk."""
    return _deferred(decision, "storage", replies.STORAGE_UNAVAILABLE, Reason.STORAGE_FAILED)


def _deferred(decision: RoutingDecision, rule: str, reply: SMTPReply, reason: Reason
              ) -> RoutingDecision:  # fmt: skip
    step = TraceStep(rule, "refuse", reason)
    return RoutingDecision(RouteAction.DEFER, reply, reason, trace=(*decision.trace, step))


def hosted(domains: Iterable[str]) -> frozenset[str]:
    return frozenset(d.lower() for d in domains)
