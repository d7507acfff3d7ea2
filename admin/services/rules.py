"""Persistence features: aliases, forwarding rules and catch-all (hard rule 5).

Every rule is admitted by ``policy.governance.admit_rule`` first: purpose,
owner, expiry within the domain's cap, and external targets only where the
domain allows external forwarding. Rules are disabled, never deleted, so the
record of what routed mail where stays complete.

Before any of that, ``authorize`` checks the acting operator's roles
(``policy.permissions``): routing is the owner's or the domain's
domain-admin's to change, never the helpdesk's or an auditor's.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from admin.services import NotFound, ServiceError
from admin.services.directory import Owner, _flush, hosted_domain_names, validate_local_part
from admin.services.permissions import authorize
from policy.addresses import Address, AddressError
from policy.governance import RuleRequest, admit_rule
from policy.permissions import Action
from storage import audit
from storage.models import Alias, CatchAll, Domain, ForwardingRule, Mailbox

RuleRow = Alias | ForwardingRule | CatchAll

RULE_MODELS: dict[str, type[Alias] | type[ForwardingRule] | type[CatchAll]] = {
    "alias": Alias,
    "forward": ForwardingRule,
    "catchall": CatchAll,
}


def _target(session: Session, target: str) -> tuple[Address, bool]:
    try:
        address = Address.parse(target)
    except AddressError as exc:
        raise ServiceError(f"invalid target address: {exc}") from exc
    return address, address.domain not in hosted_domain_names(session)


def _admit(
    *, purpose: str | None, owner: Owner | None, expires_at: datetime | None, external: bool,
    needs_expiry: bool, domain: Domain, now: datetime,
) -> None:  # fmt: skip
    admission = admit_rule(
        RuleRequest(purpose=purpose, owner="set" if owner else None, expires_at=expires_at,
                    external=external, needs_expiry=needs_expiry),
        now=now, max_rule_days=domain.max_rule_days,
        external_forwarding=domain.external_forwarding,
    )  # fmt: skip
    if not admission.allowed:
        raise ServiceError(f"refused: {admission}")


def add_alias(
    session: Session, *, actor: str, now: datetime, domain: Domain, local_part: str, target: str,
    owner: Owner | None, purpose: str | None, expires_at: datetime | None,
) -> Alias:  # fmt: skip
    authorize(session, actor, Action.ALIAS_CREATE, domain)
    local_part = validate_local_part(local_part)
    address, external = _target(session, target)
    exists = session.scalars(
        select(Mailbox.id).where(Mailbox.domain_id == domain.id, Mailbox.local_part == local_part)
    ).first()
    if exists is not None:
        raise ServiceError(f"{local_part}@{domain.name} is a mailbox; add a forward to it instead")
    # Internal aliases cannot leak mail, so they need no expiry; external ones do.
    _admit(purpose=purpose, owner=owner, expires_at=expires_at, external=external,
           needs_expiry=external, domain=domain, now=now)  # fmt: skip
    assert owner is not None
    alias = Alias(domain_id=domain.id, local_part=local_part, target=str(address),
                  external=external, owner_person_id=owner.person_id,
                  owner_role_id=owner.role_id, purpose=purpose, created_by=actor,
                  created_at=now, expires_at=expires_at, enabled=True)  # fmt: skip
    session.add(alias)
    _flush(session, f"alias {local_part}@{domain.name} -> {address}")
    audit.record(session, actor=actor, action="alias.create", target=f"alias:{alias.id}",
                 now=now, after=audit.snapshot(alias))  # fmt: skip
    return alias


def add_forward(
    session: Session, *, actor: str, now: datetime, mailbox: Mailbox, target: str,
    owner: Owner | None, purpose: str | None, expires_at: datetime | None, keep_copy: bool = True,
) -> ForwardingRule:  # fmt: skip
    authorize(session, actor, Action.FORWARD_CREATE, mailbox.domain)
    address, external = _target(session, target)
    _admit(purpose=purpose, owner=owner, expires_at=expires_at, external=external,
           needs_expiry=True, domain=mailbox.domain, now=now)  # fmt: skip
    assert owner is not None
    rule = ForwardingRule(mailbox_id=mailbox.id, target=str(address), external=external,
                          keep_copy=keep_copy, owner_person_id=owner.person_id,
                          owner_role_id=owner.role_id, purpose=purpose, created_by=actor,
                          created_at=now, expires_at=expires_at, enabled=True)  # fmt: skip
    session.add(rule)
    _flush(session, "forwarding rule")
    audit.record(session, actor=actor, action="forward.create", target=f"forward:{rule.id}",
                 now=now, after=audit.snapshot(rule))  # fmt: skip
    return rule


def set_catch_all(
    session: Session, *, actor: str, now: datetime, domain: Domain, target: str,
    owner: Owner | None, purpose: str | None, expires_at: datetime | None,
) -> CatchAll:  # fmt: skip
    authorize(session, actor, Action.CATCHALL_CREATE, domain)
    address, external = _target(session, target)
    _admit(purpose=purpose, owner=owner, expires_at=expires_at, external=external,
           needs_expiry=True, domain=domain, now=now)  # fmt: skip
    assert owner is not None
    for old in session.scalars(
        select(CatchAll).where(CatchAll.domain_id == domain.id, CatchAll.enabled.is_(True))
    ):
        disable_rule(session, actor=actor, now=now, kind="catchall", rule_id=old.id,
                     reason="replaced by a new catch-all")  # fmt: skip
    rule = CatchAll(domain_id=domain.id, target=str(address), owner_person_id=owner.person_id,
                    owner_role_id=owner.role_id, purpose=purpose, created_by=actor,
                    created_at=now, expires_at=expires_at, enabled=True)  # fmt: skip
    session.add(rule)
    _flush(session, "catch-all")
    audit.record(session, actor=actor, action="catchall.create", target=f"catchall:{rule.id}",
                 now=now, after=audit.snapshot(rule))  # fmt: skip
    return rule


def _domain_of(session: Session, rule: RuleRow) -> Domain:
    if isinstance(rule, ForwardingRule):
        mailbox = session.get(Mailbox, rule.mailbox_id)
        assert mailbox is not None
        return mailbox.domain
    domain = session.get(Domain, rule.domain_id)
    assert domain is not None
    return domain


def disable_rule(
    session: Session, *, actor: str, now: datetime, kind: str, rule_id: int, reason: str
) -> RuleRow:
    model = RULE_MODELS.get(kind)
    if model is None:
        raise ServiceError(f"unknown rule kind {kind!r}")
    rule = session.get(model, rule_id)
    if rule is None:
        raise NotFound(f"no {kind} rule {rule_id}")
    authorize(session, actor, Action(f"{kind}.disable"), _domain_of(session, rule))
    before = audit.snapshot(rule)
    rule.enabled = False
    audit.record(session, actor=actor, action=f"{kind}.disable", target=f"{kind}:{rule_id}",
                 now=now, before=before, after=audit.snapshot(rule), reason=reason)  # fmt: skip
    return rule
