"""Who may send as which address: facts in, SendDecision out, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from policy.addresses import Address
from policy.sending import Grant, GrantKind, SenderFacts, may_send_as, may_send_from

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
ALICE = Address("alice", "example.com")
SALES = Address("sales", "example.com")
BOSS = Address("boss", "example.com")


def _facts(*grants: Grant, active: bool = True) -> SenderFacts:
    return SenderFacts(1, ALICE, active, grants)


def _grant(kind: GrantKind, address: Address, **kw) -> Grant:
    values = {"owner": "person:1", "purpose": "documented purpose", "expires_at": None} | kw
    return Grant(kind, 7, address, **values)


def test_own_address_allowed() -> None:
    """Ensure a user may send as its own mailbox."""
    decision = may_send_as(_facts(), ALICE, NOW)
    assert decision.allowed and decision.grant == "mailbox:1"


def test_other_address_refused_553() -> None:
    """Ensure any other address is refused with 553 5.7.1."""
    decision = may_send_as(_facts(), BOSS, NOW)
    assert not decision.allowed and (decision.reply.code, decision.reply.enhanced) == (553, "5.7.1")


def test_alias_and_delegation_grants() -> None:
    """Ensure documented, enabled, unexpired grants allow; anything less does not."""
    alias = _grant(GrantKind.ALIAS, SALES)
    delegation = _grant(GrantKind.DELEGATION, BOSS, expires_at=NOW + timedelta(days=1))
    assert may_send_as(_facts(alias, delegation), SALES, NOW).grant == "alias:7"
    assert may_send_as(_facts(alias, delegation), BOSS, NOW).grant == "delegation:7"
    for broken, reason in (
        (_grant(GrantKind.DELEGATION, BOSS, expires_at=NOW), "grant-expired"),
        (_grant(GrantKind.DELEGATION, BOSS, purpose=None), "grant-undocumented"),
        (_grant(GrantKind.DELEGATION, BOSS, enabled=False), "grant-disabled"),
        (_grant(GrantKind.DELEGATION, BOSS, target_active=False), "grant-target-disabled"),
    ):
        decision = may_send_as(_facts(broken), BOSS, NOW)
        assert not decision.allowed and decision.reason == reason


def test_disabled_account_cannot_send() -> None:
    """Ensure a suspended mailbox may not send even as itself."""
    assert may_send_as(_facts(active=False), ALICE, NOW).reason == "account-disabled"


def test_every_from_address_checked() -> None:
    """Ensure all From addresses must be allowed, and a missing From is refused."""
    assert may_send_from(_facts(), [ALICE], NOW).allowed
    refused = may_send_from(_facts(), [ALICE, BOSS], NOW)
    assert not refused.allowed and refused.reply.code == 553
    assert may_send_from(_facts(), [], NOW).reason == "missing-from"
