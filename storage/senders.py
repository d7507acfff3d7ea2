"""Read side for submission: what an authenticated mailbox may send as.

``sender_facts`` gathers the frozen ``policy.sending.SenderFacts`` for one
mailbox: its own address and state, the internal aliases that point at it,
and the mailboxes that delegated to it. ``policy.sending`` decides.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from policy.addresses import Address, AddressError
from policy.routing import DomainState, MailboxState
from policy.sending import Grant, GrantKind, SenderFacts
from storage.directory import owner_label
from storage.models import Alias, Delegation, Domain, Mailbox


def sender_facts(session: Session, mailbox_id: int) -> SenderFacts | None:
    row = session.execute(
        select(Mailbox, Domain).join(Domain, Mailbox.domain_id == Domain.id)
        .where(Mailbox.id == mailbox_id)
    ).first()  # fmt: skip
    if row is None:
        return None
    mailbox, domain = row
    address = Address(mailbox.local_part, domain.name)
    active = mailbox.state == MailboxState.ACTIVE and domain.state != DomainState.SUSPENDED
    grants: list[Grant] = []

    alias_domain = aliased(Domain)
    for alias, name in session.execute(
        select(Alias, alias_domain.name)
        .join(alias_domain, Alias.domain_id == alias_domain.id)
        .where(Alias.target == str(address), Alias.external.is_(False),
               alias_domain.state != DomainState.SUSPENDED)
        .order_by(Alias.id)
    ):  # fmt: skip
        try:
            alias_address = Address.parse(f"{alias.local_part}@{name}", utf8=True)
        except AddressError:
            continue
        grants.append(
            Grant(GrantKind.ALIAS, alias.id, alias_address, owner_label(alias), alias.purpose,
                  alias.expires_at, alias.enabled)
        )  # fmt: skip

    owner_box, owner_domain = aliased(Mailbox), aliased(Domain)
    for delegation, box, dom in session.execute(
        select(Delegation, owner_box, owner_domain)
        .join(owner_box, Delegation.mailbox_id == owner_box.id)
        .join(owner_domain, owner_box.domain_id == owner_domain.id)
        .where(Delegation.delegate_mailbox_id == mailbox.id)
        .order_by(Delegation.id)
    ):  # fmt: skip
        usable = box.state == MailboxState.ACTIVE and dom.state != DomainState.SUSPENDED
        grants.append(
            Grant(GrantKind.DELEGATION, delegation.id, Address(box.local_part, dom.name),
                  owner_label(delegation), delegation.purpose, delegation.expires_at,
                  delegation.enabled, target_active=usable)
        )  # fmt: skip
    return SenderFacts(mailbox.id, address, active, tuple(grants))
