"""May this authenticated user send as this address? Facts in, ``SendDecision`` out.

RFC 6409 §6.1 lets a submission server refuse an envelope sender the user is
not authorized for; §8.1 lets it check the From header. Mailward checks both
(Postfix's ``reject_sender_login_mismatch`` does the same): the address must
be, in this order,

1. the user's own mailbox (which must be active, on a domain that is not
   suspended);
2. an internal alias whose target is that mailbox;
3. a mailbox that delegated access to the user.

Aliases and delegations are persistence features, so only documented
(purpose and owner), enabled and unexpired ones grant anything, the same
predicates ``policy.routing.rule_defect`` applies on delivery. Anything else
is ``553 5.7.1``. Pure: the caller gathers ``SenderFacts`` and passes ``now``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from policy import replies
from policy.addresses import Address
from policy.replies import SMTPReply


class GrantKind(enum.StrEnum):
    MAILBOX = "mailbox"
    ALIAS = "alias"
    DELEGATION = "delegation"


@dataclass(frozen=True, slots=True)
class Grant:
    """An address the user may be allowed to send as, with what makes it valid."""

    kind: GrantKind
    id: int
    address: Address
    owner: str | None
    purpose: str | None
    expires_at: datetime | None
    enabled: bool = True
    target_active: bool = True  # the delegating mailbox (and its domain) is usable

    @property
    def grant_id(self) -> str:
        return f"{self.kind.value}:{self.id}"


@dataclass(frozen=True, slots=True)
class SenderFacts:
    mailbox_id: int
    address: Address
    active: bool  # mailbox active and its domain not suspended
    grants: tuple[Grant, ...] = ()


@dataclass(frozen=True, slots=True)
class SendDecision:
    allowed: bool
    reply: SMTPReply
    reason: str
    grant: str | None = None  # "mailbox:3", "alias:7", "delegation:2"


OK = SMTPReply(250, "2.1.0", "Sender OK")


def grant_defect(grant: Grant, now: datetime) -> str | None:
    """Why a grant does not authorize anything now, or None when it does."""
    if not grant.enabled:
        return "grant-disabled"
    if not (grant.purpose and grant.purpose.strip()) or not grant.owner:
        return "grant-undocumented"
    if grant.expires_at is not None and grant.expires_at <= now:
        return "grant-expired"
    if not grant.target_active:
        return "grant-target-disabled"
    return None


def may_send_as(facts: SenderFacts, address: Address, now: datetime) -> SendDecision:
    if not facts.active:
        return SendDecision(False, replies.ACCOUNT_DISABLED, "account-disabled")
    if address == facts.address:
        return SendDecision(True, OK, "own-mailbox", f"mailbox:{facts.mailbox_id}")
    refusal = "not-owned"
    for grant in facts.grants:
        if grant.address != address:
            continue
        defect = grant_defect(grant, now)
        if defect is None:
            return SendDecision(True, OK, f"{grant.kind.value}-grant", grant.grant_id)
        refusal = defect
    return SendDecision(False, replies.SENDER_NOT_ALLOWED, refusal)


def may_send_from(
    facts: SenderFacts, addresses: Iterable[Address], now: datetime
) -> SendDecision:
    """Every From address must be allowed (RFC 5322 §3.6.2 permits several)."""
    addresses = list(addresses)
    if not addresses:
        return SendDecision(False, replies.MISSING_FROM, "missing-from")
    decision = OK_DECISION
    for address in addresses:
        decision = may_send_as(facts, address, now)
        if not decision.allowed:
            reply = replies.FROM_NOT_ALLOWED if decision.reply.code == 553 else decision.reply
            return SendDecision(False, reply, decision.reason)
    return decision


OK_DECISION = SendDecision(True, OK, "own-mailbox")
