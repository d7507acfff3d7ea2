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

from sqlalchemy import and_, bindparam, select
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
    return _owner(row.owner_person_id, row.owner_role_id)


def _owner(person_id: int | None, role_id: int | None) -> str | None:
    if person_id is not None:
        return f"person:{person_id}"
    if role_id is not None:
        return f"role:{role_id}"
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
_DOMAIN_COLUMNS = (_D.id, _D.name, _D.state, _D.external_forwarding, _D.max_rule_days)
_RULE_COLUMNS = ("id", "target", "owner_person_id", "owner_role_id", "purpose", "created_at",
                 "expires_at", "enabled")  # fmt: skip
# The recipient's domain, its mailbox if any and that mailbox's forwarding
# rules in one statement: each statement is a round trip to PostgreSQL.
_RECIPIENT = Statement(
    select(*_DOMAIN_COLUMNS, _M.id, _M.local_part, _M.state,
           *(_F[c] for c in _RULE_COLUMNS), _F.keep_copy)
    .select_from(
        Domain.__table__
        .outerjoin(Mailbox.__table__,
                   and_(_M.domain_id == _D.id, _M.local_part == bindparam("local")))
        .outerjoin(ForwardingRule.__table__, _F.mailbox_id == _M.id)
    )
    .where(_D.name == bindparam("name"))
    .order_by(_F.id)
)  # fmt: skip
# A rule's target: its domain if hosted here, and the mailbox if it exists.
_TARGET = Statement(
    select(_D.state, _M.id, _M.local_part, _M.state)
    .select_from(Domain.__table__.outerjoin(
        Mailbox.__table__, and_(_M.domain_id == _D.id, _M.local_part == bindparam("local"))))
    .where(_D.name == bindparam("name"))
)  # fmt: skip
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
    rows = tx.rows(_RECIPIENT, {"name": recipient.domain, "local": recipient.local})
    if not rows:
        return RecipientFacts(recipient=recipient, domain=None, mailbox=None)
    domain_id, domain_name, state, external, max_days, mailbox_id, local, mailbox_state = \
        rows[0][:8]  # fmt: skip
    forwards: list[Rule] = []
    aliases: list[Rule] = []
    catch_all: Rule | None = None
    mailbox = None
    if mailbox_id is not None:
        mailbox = MailboxFacts(mailbox_id, Address(local, domain_name), MailboxState(mailbox_state))
        forwards = [r for row in rows if row[8] is not None
                    and (r := _rule_row(RuleKind.FORWARD, row[8:]))]  # fmt: skip
    else:
        alias_rows = tx.rows(_ALIASES, {"domain_id": domain_id, "local": recipient.local})
        aliases = [r for row in alias_rows if (r := _rule_row(RuleKind.ALIAS, row))]
        if not aliases:
            found = tx.rows(_CATCH_ALL, {"domain_id": domain_id})
            catch_all = _rule_row(RuleKind.CATCHALL, found[0]) if found else None
    targets = {r.target for r in (*forwards, *aliases, *([catch_all] if catch_all else []))}
    hosted, internal = _resolve_targets(tx, targets)
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
    return Rule(kind=kind, id=rule_id, target=address, owner=_owner(person, role), purpose=purpose,
                created_at=created, expires_at=expires, enabled=bool(enabled),
                keep_copy=bool(keep_copy[0]) if keep_copy else True)  # fmt: skip


def _resolve_targets(
    tx: Tx, targets: set[Address]
) -> tuple[frozenset[str], dict[Address, MailboxFacts]]:
    """Which target domains are hosted here, and the hosted target mailboxes' facts."""
    hosted: set[str] = set()
    internal: dict[Address, MailboxFacts] = {}
    for target in targets:
        rows = tx.rows(_TARGET, {"name": target.domain, "local": target.local})
        if not rows:
            continue
        hosted.add(target.domain)
        domain_state, mailbox_id, local, state = rows[0]
        if mailbox_id is not None:
            if domain_state == DomainState.SUSPENDED:
                state = MailboxState.SUSPENDED
            address = Address(local, target.domain)
            internal[address] = MailboxFacts(mailbox_id, address, MailboxState(state))
    return frozenset(hosted), internal


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

    def cached(self, version: int, key: K) -> tuple[bool, V | None]:
        """(True, facts) when facts for ``key`` at this version are in memory, without
        reading anything; else (False, None)."""
        with self._lock:
            if version == self._version and key in self._facts:
                return True, self._facts[key]
        return False, None

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
