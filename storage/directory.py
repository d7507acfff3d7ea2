"""Read side of the control plane for the delivery path: facts for policy.

``recipient_facts_tx`` turns rows into the frozen values ``policy.routing``
decides on, with statements on the driver's cursor (``storage.ledger``). It
reads only what one decision needs: the recipient's domain and mailbox, the
rules attached to the address, and the state of the hosted addresses those
rules target.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sqlalchemy import bindparam, select
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


def recipient_facts(session: Session, recipient: Address) -> RecipientFacts:
    """``recipient_facts_tx`` inside an ORM session's transaction."""
    tx = Tx(session.connection())
    try:
        return recipient_facts_tx(tx, recipient)
    finally:
        tx.close()


# Every read of a decision is one indexed lookup, compiled once and run on the
# driver's cursor (storage.ledger): at a million mailboxes most recipients are
# not in the facts cache, and through the ORM a lookup cost about 3.5 ms.
_D, _M = Domain.__table__.c, Mailbox.__table__.c
_F, _A, _C = ForwardingRule.__table__.c, Alias.__table__.c, CatchAll.__table__.c
_DOMAIN = Statement(
    select(_D.id, _D.name, _D.state, _D.external_forwarding, _D.max_rule_days)
    .where(_D.name == bindparam("name"))
)
_MAILBOX = Statement(
    select(_M.id, _M.local_part, _M.state)
    .where(_M.domain_id == bindparam("domain_id"), _M.local_part == bindparam("local"))
)
_RULE_COLUMNS = ("id", "target", "owner_person_id", "owner_role_id", "purpose", "created_at",
                 "expires_at", "enabled")  # fmt: skip
_FORWARDS = Statement(
    select(*(_F[c] for c in _RULE_COLUMNS), _F.keep_copy)
    .where(_F.mailbox_id == bindparam("mailbox_id")).order_by(_F.id)
)
_ALIASES = Statement(
    select(*(_A[c] for c in _RULE_COLUMNS))
    .where(_A.domain_id == bindparam("domain_id"), _A.local_part == bindparam("local"))
    .order_by(_A.id)
)
_CATCH_ALL = Statement(
    select(*(_C[c] for c in _RULE_COLUMNS))
    .where(_C.domain_id == bindparam("domain_id")).order_by(_C.id.desc()).limit(1)
)


def recipient_facts_tx(tx: Tx, recipient: Address) -> RecipientFacts:
    """What policy needs to decide on one recipient, read in one transaction."""
    domain = tx.rows(_DOMAIN, {"name": recipient.domain})
    if not domain:
        return RecipientFacts(recipient=recipient, domain=None, mailbox=None)
    domain_id, domain_name, state, external, max_days = domain[0]
    found = tx.rows(_MAILBOX, {"domain_id": domain_id, "local": recipient.local})
    forwards: list[Rule] = []
    aliases: list[Rule] = []
    catch_all: Rule | None = None
    if found:
        rows = tx.rows(_FORWARDS, {"mailbox_id": found[0][0]})
        forwards = [r for row in rows if (r := _rule_row(RuleKind.FORWARD, row))]
    else:
        rows = tx.rows(_ALIASES, {"domain_id": domain_id, "local": recipient.local})
        aliases = [r for row in rows if (r := _rule_row(RuleKind.ALIAS, row))]
        if not aliases:
            rows = tx.rows(_CATCH_ALL, {"domain_id": domain_id})
            catch_all = _rule_row(RuleKind.CATCHALL, rows[0]) if rows else None
    targets = {r.target for r in (*forwards, *aliases, *([catch_all] if catch_all else []))}
    hosted, internal = _resolve_targets(tx, targets)
    mailbox = None
    if found:
        mailbox_id, local, mailbox_state = found[0]
        mailbox = MailboxFacts(mailbox_id, Address(local, domain_name), MailboxState(mailbox_state))
    return RecipientFacts(
        recipient=recipient,
        domain=DomainFacts(id=domain_id, name=domain_name, state=DomainState(state),
                           external_forwarding=bool(external), max_rule_days=max_days),
        mailbox=mailbox,
        forwards=tuple(forwards),
        aliases=tuple(aliases),
        catch_all=catch_all,
        internal=internal,
        hosted_domains=hosted,
    )  # fmt: skip


def _rule_row(kind: RuleKind, row: tuple[Any, ...]) -> Rule | None:
    rule_id, target, person, role, purpose, created, expires, enabled, *keep_copy = row
    try:
        address = Address.parse(target, utf8=True)
    except AddressError:
        return None  # a corrupt target is never applied
    owner = f"person:{person}" if person is not None else f"role:{role}" if role is not None \
        else None  # fmt: skip
    return Rule(kind=kind, id=rule_id, target=address, owner=owner, purpose=purpose,
                created_at=created, expires_at=expires, enabled=bool(enabled),
                keep_copy=bool(keep_copy[0]) if keep_copy else True)  # fmt: skip


def _resolve_targets(
    tx: Tx, targets: set[Address]
) -> tuple[frozenset[str], dict[Address, MailboxFacts]]:
    """Which target domains are hosted here, and the hosted target mailboxes' facts."""
    domains: dict[str, tuple[int, str]] = {}  # name → (id, state)
    for name in {t.domain for t in targets}:
        rows = tx.rows(_DOMAIN, {"name": name})
        if rows:
            domains[name] = (rows[0][0], rows[0][2])
    internal: dict[Address, MailboxFacts] = {}
    for target in targets:
        if target.domain not in domains:
            continue
        domain_id, domain_state = domains[target.domain]
        rows = tx.rows(_MAILBOX, {"domain_id": domain_id, "local": target.local})
        if rows:
            mailbox_id, local, state = rows[0]
            if domain_state == DomainState.SUSPENDED:
                state = MailboxState.SUSPENDED
            address = Address(local, target.domain)
            internal[address] = MailboxFacts(mailbox_id, address, MailboxState(state))
    return frozenset(domains), internal


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
        return self.lookup(version, recipient, lambda: recipient_facts_tx(tx, recipient))
