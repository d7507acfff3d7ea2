"""Read side of the control plane for the delivery path: facts for policy.

``recipient_facts`` turns rows into the frozen values ``policy.routing``
decides on. It reads only what one decision needs: the recipient's domain and
mailbox, the rules attached to the address, and the state of the hosted
addresses those rules target.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from policy.addresses import Address, AddressError
from policy.routing import (
    DomainFacts,
    DomainState,
    MailboxFacts,
    MailboxState,
    RecipientFacts,
    Rule,
    RuleKind,
)
from storage.db import Database
from storage.ledger import Statement, Tx
from storage.models import Alias, CatchAll, ChainHead, Domain, ForwardingRule, Mailbox

_AUDIT_VERSION = select(ChainHead.last_id).where(ChainHead.name == "audit")
_AUDIT_VERSION_TX = Statement(_AUDIT_VERSION)


def owner_label(row: Alias | ForwardingRule | CatchAll | Mailbox) -> str | None:
    if row.owner_person_id is not None:
        return f"person:{row.owner_person_id}"
    if row.owner_role_id is not None:
        return f"role:{row.owner_role_id}"
    return None


def domain_facts(domain: Domain) -> DomainFacts:
    return DomainFacts(
        id=domain.id,
        name=domain.name,
        state=DomainState(domain.state),
        external_forwarding=domain.external_forwarding,
        max_rule_days=domain.max_rule_days,
    )


def mailbox_facts(mailbox: Mailbox, domain_name: str) -> MailboxFacts:
    return MailboxFacts(
        id=mailbox.id,
        address=Address(mailbox.local_part, domain_name),
        state=MailboxState(mailbox.state),
    )


def _rule(kind: RuleKind, row: Alias | ForwardingRule | CatchAll) -> Rule | None:
    try:
        target = Address.parse(row.target, utf8=True)
    except AddressError:
        return None  # a corrupt target is never applied
    return Rule(
        kind=kind,
        id=row.id,
        target=target,
        owner=owner_label(row),
        purpose=row.purpose,
        created_at=row.created_at,
        expires_at=row.expires_at,
        enabled=row.enabled,
        keep_copy=getattr(row, "keep_copy", True),
    )


def recipient_facts(session: Session, recipient: Address) -> RecipientFacts:
    domain = session.scalars(select(Domain).where(Domain.name == recipient.domain)).first()
    if domain is None:
        return RecipientFacts(recipient=recipient, domain=None, mailbox=None)
    mailbox = session.scalars(
        select(Mailbox).where(
            Mailbox.domain_id == domain.id, Mailbox.local_part == recipient.local
        )
    ).first()
    forwards: list[Rule] = []
    aliases: list[Rule] = []
    catch_all: Rule | None = None
    if mailbox is not None:
        rows = session.scalars(
            select(ForwardingRule)
            .where(ForwardingRule.mailbox_id == mailbox.id)
            .order_by(ForwardingRule.id)
        )
        forwards = [r for row in rows if (r := _rule(RuleKind.FORWARD, row))]
    else:
        rows_a = session.scalars(
            select(Alias)
            .where(Alias.domain_id == domain.id, Alias.local_part == recipient.local)
            .order_by(Alias.id)
        )
        aliases = [r for row in rows_a if (r := _rule(RuleKind.ALIAS, row))]
        if not aliases:
            row_c = session.scalars(
                select(CatchAll).where(CatchAll.domain_id == domain.id).order_by(CatchAll.id.desc())
            ).first()
            catch_all = _rule(RuleKind.CATCHALL, row_c) if row_c is not None else None

    targets = {r.target for r in (*forwards, *aliases, *([catch_all] if catch_all else []))}
    hosted, internal = _resolve_targets(session, targets)
    return RecipientFacts(
        recipient=recipient,
        domain=domain_facts(domain),
        mailbox=mailbox_facts(mailbox, domain.name) if mailbox is not None else None,
        forwards=tuple(forwards),
        aliases=tuple(aliases),
        catch_all=catch_all,
        internal=internal,
        hosted_domains=hosted,
    )


def _resolve_targets(
    session: Session, targets: set[Address]
) -> tuple[frozenset[str], dict[Address, MailboxFacts]]:
    if not targets:
        return frozenset(), {}
    names = {t.domain for t in targets}
    domain_ids: dict[str, int] = {
        name: domain_id
        for name, domain_id in session.execute(
            select(Domain.name, Domain.id).where(Domain.name.in_(names))
        )
    }
    hosted = frozenset(domain_ids)
    # One (domain_id, local_part) term per target: each is a lookup in the
    # mailbox's unique index. A row-value IN over (domain name, local part)
    # made SQLite scan the whole mailbox table (0.7 s at a million mailboxes).
    wanted = [and_(Mailbox.domain_id == domain_ids[t.domain], Mailbox.local_part == t.local)
              for t in targets if t.domain in domain_ids]  # fmt: skip
    internal: dict[Address, MailboxFacts] = {}
    if wanted:
        rows = session.execute(
            select(Mailbox, Domain.name, Domain.state)
            .join(Domain, Mailbox.domain_id == Domain.id)
            .where(or_(*wanted))
        )
        for mailbox, domain_name, domain_state in rows:
            facts = mailbox_facts(mailbox, domain_name)
            if domain_state == DomainState.SUSPENDED:
                facts = MailboxFacts(facts.id, facts.address, MailboxState.SUSPENDED)
            internal[facts.address] = facts
    return hosted, internal


def find_mailbox(session: Session, address: Address) -> Mailbox | None:
    return session.scalars(
        select(Mailbox)
        .join(Domain, Mailbox.domain_id == Domain.id)
        .where(Domain.name == address.domain, Mailbox.local_part == address.local)
    ).first()


K = TypeVar("K")
V = TypeVar("V")


def current_directory_version(db: Database) -> int:
    """The audit chain's head id, from a fresh read snapshot: it moves with every
    change to the control plane (see ``VersionedCache``)."""
    return int(db.read_value(_AUDIT_VERSION_TX))


class VersionedCache(Generic[K, V]):
    """Facts reused while the directory has not changed.

    Every change to the control plane, through any interface or process,
    writes an audit entry in the same transaction, so the audit chain's head
    id is a version number of the directory: one primary-key read tells
    whether cached facts are still exact. Time-dependent checks (expiry) are
    made by policy against ``now`` at decision time, so they never go stale.
    Safe to share between threads.
    """

    def __init__(self, max_entries: int = 50_000) -> None:
        self.max_entries = max_entries
        self._version = -1
        self._facts: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def lookup(self, version: int, key: K, load: Callable[[], V]) -> V:
        with self._lock:
            if version != self._version:
                self._facts.clear()
                self._version = version
            if key in self._facts:
                self._facts.move_to_end(key)
                return self._facts[key]
        facts = load()  # outside the lock: it reads the database
        with self._lock:
            if version == self._version:
                self._facts[key] = facts
                if len(self._facts) > self.max_entries:
                    self._facts.popitem(last=False)
        return facts


class FactsCache(VersionedCache[Address, RecipientFacts]):
    """Recipient facts for the delivery path (see ``VersionedCache``)."""

    def get_tx(self, tx: Tx, recipient: Address) -> RecipientFacts:
        # One version read per group-commit transaction: the committer's
        # transaction sees one snapshot of the directory, so it cannot change
        # under the batch.
        version = tx.memo("audit_version", lambda: tx.scalar(_AUDIT_VERSION_TX))
        return self.lookup(version, recipient, lambda: recipient_facts(tx.session(), recipient))
