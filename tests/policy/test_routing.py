"""Routing decisions: facts in, ``RoutingDecision`` out, no I/O."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from policy import replies
from policy.addresses import Address
from policy.routing import (
    DomainFacts,
    DomainState,
    MailboxFacts,
    MailboxState,
    Reason,
    RecipientFacts,
    RouteAction,
    RoutingDecision,
    Rule,
    RuleKind,
    TraceStep,
    defer_for_quota,
    hosted,
    route,
    rule_defect,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DOMAIN = DomainFacts(
    id=1, name="example.com", state=DomainState.ACTIVE, external_forwarding=True, max_rule_days=90
)
ALICE = MailboxFacts(10, Address("alice", "example.com"), MailboxState.ACTIVE)
BOB = MailboxFacts(11, Address("bob", "example.com"), MailboxState.ACTIVE)
CAROL = MailboxFacts(12, Address("carol", "example.com"), MailboxState.SUSPENDED)
GHOST = Address("ghost", "example.com")  # on a hosted domain, but no such mailbox
SALES = Address("sales", "example.com")
NOBODY = Address("nobody", "example.com")
OUTSIDE = Address("someone", "elsewhere.org")
OUTSIDE_2 = Address("other", "elsewhere.org")


def rule(
    kind: RuleKind = RuleKind.FORWARD,
    id: int = 1,
    target: Address = OUTSIDE,
    *,
    owner: str | None = "person:1",
    purpose: str | None = "handover to the new account manager",
    created_at: datetime = NOW - timedelta(days=1),
    expires_at: datetime | None = NOW + timedelta(days=30),
    enabled: bool = True,
    keep_copy: bool = True,
) -> Rule:
    return Rule(kind, id, target, owner, purpose, created_at, expires_at, enabled, keep_copy)


def facts(
    recipient: Address = ALICE.address,
    *,
    domain: DomainFacts | None = DOMAIN,
    mailbox: MailboxFacts | None = ALICE,
    forwards: tuple[Rule, ...] = (),
    aliases: tuple[Rule, ...] = (),
    catch_all: Rule | None = None,
) -> RecipientFacts:
    return RecipientFacts(
        recipient=recipient,
        domain=domain,
        mailbox=mailbox,
        forwards=forwards,
        aliases=aliases,
        catch_all=catch_all,
        internal={m.address: m for m in (ALICE, BOB, CAROL)},
        hosted_domains=hosted(["Example.com"]),
    )


def domain(**changes: object) -> DomainFacts:
    return dataclasses.replace(DOMAIN, **changes)  # type: ignore[arg-type]


def skips(decision: RoutingDecision) -> list[tuple[str, Reason]]:
    return [(s.rule, s.reason) for s in decision.trace if s.outcome == "skip"]


# Refusals before any rule is looked at.


def test_unknown_recipient_is_refused_with_550_5_1_1() -> None:
    """Ensure an address with no mailbox and no rules is refused as unknown."""
    decision = route(facts(NOBODY, mailbox=None), NOW)
    assert decision.action is RouteAction.REJECT
    assert decision.reply == replies.UNKNOWN_RECIPIENT
    assert (decision.reply.code, decision.reply.enhanced) == (550, "5.1.1")
    assert decision.reason is Reason.UNKNOWN_RECIPIENT
    assert not decision.accepted
    assert decision.mailboxes == () and decision.forwards == ()
    assert decision.trace[-1] == TraceStep("directory", "refuse", Reason.UNKNOWN_RECIPIENT)


def test_domain_not_hosted_is_relay_denied() -> None:
    """Ensure a recipient on a domain we do not host is refused as relaying."""
    decision = route(facts(OUTSIDE, domain=None, mailbox=None), NOW)
    assert decision.action is RouteAction.REJECT
    assert decision.reason is Reason.RELAY_DENIED
    assert (decision.reply.code, decision.reply.enhanced) == (550, "5.7.1")
    assert decision.trace == (TraceStep("domain", "refuse", Reason.RELAY_DENIED),)


def test_suspended_domain_refuses_even_an_active_mailbox() -> None:
    """Ensure a suspended domain refuses with its own reason and reply."""
    decision = route(facts(domain=domain(state=DomainState.SUSPENDED)), NOW)
    assert decision.action is RouteAction.REJECT
    assert decision.reason is Reason.DOMAIN_SUSPENDED
    assert decision.reply == replies.DOMAIN_DISABLED
    assert decision.trace == (TraceStep("domain", "refuse", Reason.DOMAIN_SUSPENDED),)


def test_suspended_mailbox_refuses_and_applies_no_forward() -> None:
    """Ensure a suspended mailbox refuses with its own reason and reply, forwards unused."""
    suspended = dataclasses.replace(ALICE, state=MailboxState.SUSPENDED)
    decision = route(facts(mailbox=suspended, forwards=(rule(),)), NOW)
    assert decision.action is RouteAction.REJECT
    assert decision.reason is Reason.MAILBOX_SUSPENDED
    assert decision.reply == replies.MAILBOX_DISABLED
    assert (decision.reply.code, decision.reply.enhanced) == (550, "5.2.1")
    assert decision.forwards == ()
    assert decision.rule_ids == ()


# Mailboxes and their forwarding rules.


def test_active_mailbox_is_delivered() -> None:
    """Ensure an active mailbox gets the message with a 250 reply."""
    decision = route(facts(), NOW)
    assert decision.action is RouteAction.DELIVER
    assert decision.accepted
    assert decision.reply == replies.OK
    assert decision.reason is Reason.DELIVER_MAILBOX
    assert decision.mailboxes == (ALICE,)
    assert decision.forwards == ()
    assert decision.trace == (TraceStep("mailbox", "hit", Reason.DELIVER_MAILBOX),)


def test_documented_unexpired_external_forward_with_keep_copy_delivers_and_forwards() -> None:
    """Ensure a valid forward with keep-copy both delivers locally and forwards."""
    decision = route(facts(forwards=(rule(keep_copy=True),)), NOW)
    assert decision.action is RouteAction.DELIVER
    assert decision.reason is Reason.DELIVER_MAILBOX
    assert decision.mailboxes == (ALICE,)
    assert decision.forwards == (OUTSIDE,)
    assert decision.rule_ids == ("forward:1",)
    assert TraceStep("forward:1", "hit", Reason.FORWARD_APPLIED) in decision.trace


def test_forward_without_keep_copy_only_forwards() -> None:
    """Ensure an applied forward without keep-copy replaces local delivery."""
    decision = route(facts(forwards=(rule(keep_copy=False),)), NOW)
    assert decision.action is RouteAction.FORWARD
    assert decision.accepted
    assert decision.reply == replies.OK
    assert decision.reason is Reason.FORWARD_APPLIED
    assert decision.mailboxes == ()
    assert decision.forwards == (OUTSIDE,)
    assert decision.rule_ids == ("forward:1",)


def test_forward_to_hosted_mailbox_delivers_to_both() -> None:
    """Ensure a forward to a hosted mailbox is a local delivery, source mailbox first."""
    decision = route(facts(forwards=(rule(target=BOB.address),)), NOW)
    assert decision.action is RouteAction.DELIVER
    assert decision.mailboxes == (ALICE, BOB)
    assert decision.forwards == ()
    assert decision.rule_ids == ("forward:1",)


@pytest.mark.parametrize("expires_at", [NOW, NOW - timedelta(seconds=1), NOW - timedelta(days=9)])
@pytest.mark.parametrize("keep_copy", [True, False])
def test_expired_forward_is_skipped_and_mail_still_delivered(
    expires_at: datetime, keep_copy: bool
) -> None:
    """Ensure an expired forward is never applied and never costs the owner the message."""
    expired = rule(created_at=NOW - timedelta(days=10), expires_at=expires_at, keep_copy=keep_copy)
    decision = route(facts(forwards=(expired,)), NOW)
    assert decision.action is RouteAction.DELIVER
    assert decision.mailboxes == (ALICE,)
    assert decision.forwards == ()
    assert decision.rule_ids == ()
    assert skips(decision) == [("forward:1", Reason.RULE_EXPIRED)]


@pytest.mark.parametrize(
    "changes",
    [
        {"purpose": None},
        {"purpose": ""},
        {"purpose": "   "},
        {"owner": None},
        {"owner": ""},
        {"expires_at": None},
    ],
    ids=["no-purpose", "empty-purpose", "blank-purpose", "no-owner", "empty-owner", "no-expiry"],
)
def test_undocumented_forward_is_skipped(changes: dict[str, object]) -> None:
    """Ensure a forward without purpose, owner or expiry is skipped as undocumented."""
    undocumented = dataclasses.replace(rule(keep_copy=False), **changes)  # type: ignore[arg-type]
    decision = route(facts(forwards=(undocumented,)), NOW)
    assert decision.action is RouteAction.DELIVER
    assert decision.mailboxes == (ALICE,)
    assert decision.forwards == ()
    assert skips(decision) == [("forward:1", Reason.RULE_UNDOCUMENTED)]


def test_external_forward_skipped_when_domain_disallows_external_forwarding() -> None:
    """Ensure external forwarding off on the domain skips external forwards."""
    decision = route(facts(domain=domain(external_forwarding=False), forwards=(rule(),)), NOW)
    assert decision.action is RouteAction.DELIVER
    assert decision.mailboxes == (ALICE,)
    assert decision.forwards == ()
    assert skips(decision) == [("forward:1", Reason.EXTERNAL_FORWARDING_DISABLED)]


def test_internal_forward_allowed_when_external_forwarding_is_off() -> None:
    """Ensure the external-forwarding switch does not affect hosted targets."""
    internal = rule(target=BOB.address, keep_copy=False)
    decision = route(facts(domain=domain(external_forwarding=False), forwards=(internal,)), NOW)
    assert decision.mailboxes == (BOB,)
    assert decision.rule_ids == ("forward:1",)


def test_frozen_domain_stops_external_routes_but_delivers_locally() -> None:
    """Ensure a frozen domain skips external forwards while internal routing goes on."""
    external = rule(id=1, target=OUTSIDE)
    internal = rule(id=2, target=BOB.address)
    decision = route(
        facts(domain=domain(state=DomainState.FROZEN), forwards=(external, internal)), NOW
    )
    assert decision.action is RouteAction.DELIVER
    assert decision.mailboxes == (ALICE, BOB)
    assert decision.forwards == ()
    assert decision.rule_ids == ("forward:2",)
    assert skips(decision) == [("forward:1", Reason.DOMAIN_FROZEN)]


def test_frozen_domain_external_alias_is_refused_internal_alias_delivers() -> None:
    """Ensure a frozen domain refuses an external-only alias and keeps internal aliases."""
    frozen = domain(state=DomainState.FROZEN)
    external = route(facts(SALES, domain=frozen, mailbox=None,
                           aliases=(rule(RuleKind.ALIAS, 5, OUTSIDE),)), NOW)  # fmt: skip
    assert external.action is RouteAction.REJECT
    assert external.reason is Reason.DOMAIN_FROZEN
    internal = route(facts(SALES, domain=frozen, mailbox=None,
                           aliases=(rule(RuleKind.ALIAS, 5, BOB.address),)), NOW)  # fmt: skip
    assert internal.action is RouteAction.DELIVER
    assert internal.mailboxes == (BOB,)


def test_rule_lifetime_over_domain_cap_is_skipped() -> None:
    """Ensure a rule whose lifetime exceeds the domain's cap is skipped."""
    created = NOW - timedelta(days=10)
    too_long = rule(created_at=created, expires_at=created + timedelta(days=90, seconds=1))
    decision = route(facts(forwards=(too_long,)), NOW)
    assert decision.forwards == ()
    assert decision.mailboxes == (ALICE,)
    assert skips(decision) == [("forward:1", Reason.RULE_OVER_CAP)]


def test_rule_lifetime_exactly_at_domain_cap_is_applied() -> None:
    """Ensure the cap is inclusive: a rule of exactly max_rule_days is applied."""
    created = NOW - timedelta(days=10)
    at_cap = rule(created_at=created, expires_at=created + timedelta(days=90))
    assert route(facts(forwards=(at_cap,)), NOW).forwards == (OUTSIDE,)


def test_cap_follows_the_domain_policy() -> None:
    """Ensure a lowered domain cap makes a formerly valid rule over cap."""
    decision = route(facts(domain=domain(max_rule_days=7), forwards=(rule(),)), NOW)
    assert skips(decision) == [("forward:1", Reason.RULE_OVER_CAP)]


def test_disabled_rule_is_skipped() -> None:
    """Ensure a disabled forward is skipped with rule-disabled."""
    decision = route(facts(forwards=(rule(enabled=False, keep_copy=False),)), NOW)
    assert decision.action is RouteAction.DELIVER
    assert decision.mailboxes == (ALICE,)
    assert decision.forwards == ()
    assert skips(decision) == [("forward:1", Reason.RULE_DISABLED)]


def test_skipped_forward_without_keep_copy_keeps_local_copy_beside_applied_one() -> None:
    """Ensure only an applied no-keep-copy forward suppresses local delivery."""
    expired = rule(id=1, keep_copy=False, expires_at=NOW - timedelta(hours=1))
    applied = rule(id=2, target=OUTSIDE_2, keep_copy=True)
    decision = route(facts(forwards=(expired, applied)), NOW)
    assert decision.mailboxes == (ALICE,)
    assert decision.forwards == (OUTSIDE_2,)


# Aliases.


def test_internal_alias_without_expiry_delivers() -> None:
    """Ensure a documented internal alias needs no expiry and delivers to its target."""
    alias = rule(RuleKind.ALIAS, 5, BOB.address, expires_at=None)
    decision = route(facts(SALES, mailbox=None, aliases=(alias,)), NOW)
    assert decision.action is RouteAction.DELIVER
    assert decision.reply == replies.OK
    assert decision.reason is Reason.DELIVER_ALIAS
    assert decision.mailboxes == (BOB,)
    assert decision.forwards == ()
    assert decision.rule_ids == ("alias:5",)
    assert decision.trace == (TraceStep("alias:5", "hit", Reason.DELIVER_ALIAS),)


def test_alias_to_several_mailboxes_delivers_each_once() -> None:
    """Ensure an alias with repeated targets delivers to each mailbox once, in rule order."""
    aliases = (
        rule(RuleKind.ALIAS, 5, BOB.address, expires_at=None),
        rule(RuleKind.ALIAS, 6, ALICE.address, expires_at=None),
        rule(RuleKind.ALIAS, 7, BOB.address, expires_at=None),
    )
    decision = route(facts(SALES, mailbox=None, aliases=aliases), NOW)
    assert decision.mailboxes == (BOB, ALICE)
    assert decision.rule_ids == ("alias:5", "alias:6", "alias:7")


def test_valid_external_alias_forwards() -> None:
    """Ensure a documented, unexpired external alias forwards."""
    decision = route(facts(SALES, mailbox=None, aliases=(rule(RuleKind.ALIAS, 5),)), NOW)
    assert decision.action is RouteAction.FORWARD
    assert decision.reason is Reason.FORWARD_APPLIED
    assert decision.forwards == (OUTSIDE,)
    assert decision.mailboxes == ()
    assert decision.rule_ids == ("alias:5",)


@pytest.mark.parametrize(
    ("alias", "facts_domain", "reason"),
    [
        (rule(RuleKind.ALIAS, 5, expires_at=NOW - timedelta(minutes=1)), DOMAIN,
         Reason.RULE_EXPIRED),
        (rule(RuleKind.ALIAS, 5, purpose=None), DOMAIN, Reason.RULE_UNDOCUMENTED),
        (rule(RuleKind.ALIAS, 5, owner=None), DOMAIN, Reason.RULE_UNDOCUMENTED),
        (rule(RuleKind.ALIAS, 5, expires_at=None), DOMAIN, Reason.RULE_UNDOCUMENTED),
        (rule(RuleKind.ALIAS, 5, enabled=False), DOMAIN, Reason.RULE_DISABLED),
        (rule(RuleKind.ALIAS, 5, expires_at=NOW + timedelta(days=200)), DOMAIN,
         Reason.RULE_OVER_CAP),
        (rule(RuleKind.ALIAS, 5), domain(external_forwarding=False),
         Reason.EXTERNAL_FORWARDING_DISABLED),
        (rule(RuleKind.ALIAS, 5), domain(state=DomainState.FROZEN), Reason.DOMAIN_FROZEN),
    ],
    ids=["expired", "no-purpose", "no-owner", "no-expiry", "disabled", "over-cap",
         "external-off", "frozen"],
)  # fmt: skip
def test_external_alias_is_governed_like_a_forward(
    alias: Rule, facts_domain: DomainFacts, reason: Reason
) -> None:
    """Ensure an external alias that fails governance is refused with the skip's reason."""
    decision = route(facts(SALES, domain=facts_domain, mailbox=None, aliases=(alias,)), NOW)
    assert decision.action is RouteAction.REJECT
    assert not decision.accepted
    assert decision.reason is reason
    assert decision.reply == replies.UNKNOWN_RECIPIENT
    assert decision.forwards == () and decision.mailboxes == ()
    assert decision.rule_ids == ()
    assert skips(decision) == [("alias:5", reason)]


@pytest.mark.parametrize(
    ("target", "reason"),
    [(CAROL.address, Reason.TARGET_UNAVAILABLE), (GHOST, Reason.TARGET_UNAVAILABLE)],
    ids=["suspended", "unknown"],
)
def test_alias_to_unavailable_internal_target_is_refused(target: Address, reason: Reason) -> None:
    """Ensure an alias to a suspended or missing hosted mailbox is refused, not accepted."""
    alias = rule(RuleKind.ALIAS, 5, target, expires_at=None)
    decision = route(facts(SALES, mailbox=None, aliases=(alias,)), NOW)
    assert decision.action is RouteAction.REJECT
    assert decision.reason is reason
    assert decision.reply.permanent
    assert skips(decision) == [("alias:5", reason)]


def test_alias_with_one_bad_target_still_delivers_to_the_good_one() -> None:
    """Ensure one skipped alias target does not stop the others, and the skip is traced."""
    aliases = (
        rule(RuleKind.ALIAS, 5, CAROL.address, expires_at=None),
        rule(RuleKind.ALIAS, 6, BOB.address, expires_at=None),
    )
    decision = route(facts(SALES, mailbox=None, aliases=aliases), NOW)
    assert decision.action is RouteAction.DELIVER
    assert decision.mailboxes == (BOB,)
    assert decision.rule_ids == ("alias:6",)
    assert skips(decision) == [("alias:5", Reason.TARGET_UNAVAILABLE)]


def test_forward_to_unavailable_internal_target_keeps_local_delivery() -> None:
    """Ensure a forward to a suspended or missing hosted mailbox is skipped, mail kept."""
    forwards = (
        rule(id=1, target=CAROL.address, keep_copy=False),
        rule(id=2, target=GHOST, keep_copy=False),
    )
    decision = route(facts(forwards=forwards), NOW)
    assert decision.action is RouteAction.DELIVER
    assert decision.mailboxes == (ALICE,)
    assert skips(decision) == [
        ("forward:1", Reason.TARGET_UNAVAILABLE),
        ("forward:2", Reason.TARGET_UNAVAILABLE),
    ]


# Catch-all.


def test_documented_unexpired_catch_all_delivers() -> None:
    """Ensure an enabled, documented, unexpired catch-all takes unknown addresses."""
    catch_all = rule(RuleKind.CATCHALL, 7, BOB.address)
    decision = route(facts(NOBODY, mailbox=None, catch_all=catch_all), NOW)
    assert decision.action is RouteAction.DELIVER
    assert decision.reason is Reason.DELIVER_CATCHALL
    assert decision.mailboxes == (BOB,)
    assert decision.rule_ids == ("catchall:7",)
    assert decision.trace == (TraceStep("catchall:7", "hit", Reason.DELIVER_CATCHALL),)


def test_no_catch_all_by_default() -> None:
    """Ensure that without a catch-all row an unknown address is a plain 550 5.1.1."""
    decision = route(facts(NOBODY, mailbox=None), NOW)
    assert decision.reason is Reason.UNKNOWN_RECIPIENT
    assert decision.reply == replies.UNKNOWN_RECIPIENT


@pytest.mark.parametrize(
    ("catch_all", "reason"),
    [
        (rule(RuleKind.CATCHALL, 7, BOB.address, enabled=False), Reason.RULE_DISABLED),
        (rule(RuleKind.CATCHALL, 7, BOB.address, purpose=None), Reason.RULE_UNDOCUMENTED),
        (rule(RuleKind.CATCHALL, 7, BOB.address, owner=None), Reason.RULE_UNDOCUMENTED),
        (rule(RuleKind.CATCHALL, 7, BOB.address, expires_at=None), Reason.RULE_UNDOCUMENTED),
        (rule(RuleKind.CATCHALL, 7, BOB.address, expires_at=NOW), Reason.RULE_EXPIRED),
        (rule(RuleKind.CATCHALL, 7, CAROL.address), Reason.TARGET_UNAVAILABLE),
    ],
    ids=["disabled", "no-purpose", "no-owner", "no-expiry", "expired", "suspended-target"],
)
def test_catch_all_not_applied_unless_governed(catch_all: Rule, reason: Reason) -> None:
    """Ensure a disabled, undocumented, unbounded or expired catch-all never accepts mail."""
    decision = route(facts(NOBODY, mailbox=None, catch_all=catch_all), NOW)
    assert decision.action is RouteAction.REJECT
    assert not decision.accepted
    assert decision.reply == replies.UNKNOWN_RECIPIENT
    assert decision.reason is reason
    assert decision.rule_ids == ()
    assert skips(decision) == [("catchall:7", reason)]


def test_external_catch_all_needs_external_forwarding() -> None:
    """Ensure an external catch-all obeys the domain's external-forwarding switch."""
    catch_all = rule(RuleKind.CATCHALL, 7, OUTSIDE)
    allowed = route(facts(NOBODY, mailbox=None, catch_all=catch_all), NOW)
    assert allowed.action is RouteAction.FORWARD
    assert allowed.forwards == (OUTSIDE,)
    refused = route(facts(NOBODY, domain=domain(external_forwarding=False), mailbox=None,
                          catch_all=catch_all), NOW)  # fmt: skip
    assert refused.action is RouteAction.REJECT
    assert refused.reason is Reason.EXTERNAL_FORWARDING_DISABLED


def test_existing_mailbox_wins_over_catch_all() -> None:
    """Ensure a catch-all never captures mail for an existing mailbox."""
    catch_all = rule(RuleKind.CATCHALL, 7, BOB.address)
    decision = route(facts(catch_all=catch_all), NOW)
    assert decision.mailboxes == (ALICE,)
    assert decision.rule_ids == ()


# Decision objects, trace and rule ids.


def test_rule_ids_list_only_applied_rules() -> None:
    """Ensure rule_ids names the applied rules, in order, and never a skipped one."""
    forwards = (
        rule(id=1, target=OUTSIDE),
        rule(id=2, target=OUTSIDE_2, expires_at=NOW - timedelta(days=1)),
        rule(id=3, target=BOB.address),
        rule(id=4, target=OUTSIDE_2, enabled=False),
    )
    decision = route(facts(forwards=forwards), NOW)
    assert decision.rule_ids == ("forward:1", "forward:3")
    assert decision.forwards == (OUTSIDE,)
    assert decision.mailboxes == (ALICE, BOB)


def test_trace_records_every_skip_in_order() -> None:
    """Ensure the trace (what the routing log stores) holds every hit and skip in order."""
    forwards = (
        rule(id=1, expires_at=NOW - timedelta(days=1)),
        rule(id=2, purpose=None),
        rule(id=3, enabled=False),
        rule(id=4, target=OUTSIDE_2),
        rule(id=5, target=GHOST),
    )
    decision = route(facts(forwards=forwards), NOW)
    assert decision.trace == (
        TraceStep("mailbox", "hit", Reason.DELIVER_MAILBOX),
        TraceStep("forward:1", "skip", Reason.RULE_EXPIRED),
        TraceStep("forward:2", "skip", Reason.RULE_UNDOCUMENTED),
        TraceStep("forward:3", "skip", Reason.RULE_DISABLED),
        TraceStep("forward:4", "hit", Reason.FORWARD_APPLIED),
        TraceStep("forward:5", "skip", Reason.TARGET_UNAVAILABLE),
    )


def test_decisions_and_trace_steps_are_frozen() -> None:
    """Ensure decisions cannot be altered after policy has made them."""
    decision = route(facts(forwards=(rule(),)), NOW)
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.action = RouteAction.REJECT  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.trace[0].outcome = "skip"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.reply.code = 250  # type: ignore[misc]
    assert isinstance(decision.mailboxes, tuple)
    assert isinstance(decision.forwards, tuple)
    assert isinstance(decision.trace, tuple)


def test_route_does_not_mutate_facts() -> None:
    """Ensure routing is a pure function: same facts, same decision, facts unchanged."""
    given = facts(forwards=(rule(), rule(id=2, expires_at=NOW - timedelta(days=1))))
    internal_before = dict(given.internal)
    assert route(given, NOW) == route(given, NOW)
    assert given.internal == internal_before


def test_time_is_taken_from_the_caller() -> None:
    """Ensure the same rule is applied before its expiry and skipped after it."""
    forward = rule(expires_at=NOW + timedelta(days=1))
    assert route(facts(forwards=(forward,)), NOW).forwards == (OUTSIDE,)
    later = route(facts(forwards=(forward,)), NOW + timedelta(days=1))
    assert later.forwards == ()
    assert skips(later) == [("forward:1", Reason.RULE_EXPIRED)]


def test_defer_for_quota_keeps_trace_and_answers_452() -> None:
    """Ensure a full pool turns an accepted routing into a temporary 452 4.2.2."""
    decision = defer_for_quota(route(facts(), NOW))
    assert decision.action is RouteAction.DEFER
    assert not decision.accepted
    assert decision.reason is Reason.QUOTA_EXCEEDED
    assert (decision.reply.code, decision.reply.enhanced) == (452, "4.2.2")
    assert decision.reply.temporary
    assert decision.trace == (
        TraceStep("mailbox", "hit", Reason.DELIVER_MAILBOX),
        TraceStep("quota", "refuse", Reason.QUOTA_EXCEEDED),
    )


def test_rule_defect_exempts_only_internal_aliases_from_expiry() -> None:
    """Ensure only an alias known to be internal may go without an expiry."""
    alias = rule(RuleKind.ALIAS, 5, BOB.address, expires_at=None)
    assert rule_defect(alias, DOMAIN, NOW, internal=True) is None
    assert rule_defect(alias, DOMAIN, NOW) is Reason.RULE_UNDOCUMENTED
    forward = rule(target=BOB.address, expires_at=None)
    assert rule_defect(forward, DOMAIN, NOW, internal=True) is Reason.RULE_UNDOCUMENTED
