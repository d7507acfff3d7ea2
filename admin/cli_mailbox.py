"""``mailward mailbox``: create, list, suspend, and ``show`` — the four questions.

``mailbox show`` answers what DESIGN.md promises for any mailbox: who owns it
(with the out-of-band contacts of every person behind the owner), who can
reset it (the owner by self-service; operators holding helpdesk, approver,
owner or domain-admin over its domain for the two-person helpdesk reset),
what changed last (its audit entries, including its forwards and the aliases
and catch-alls pointing at it, each with before and after for a rollback),
and which rules route mail to or from it, with the delivery path's verdict.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from admin.cli_base import (
    Context,
    Subcommands,
    add_noun,
    add_owner_options,
    add_verb,
    count,
    owner_label,
    owner_view,
    resolve_owner,
)
from admin.cli_output import CLIError, Detail, Listing, parse_size
from admin.cli_rules import rule_status
from admin.services import directory as d
from admin.services.logs import audit_entries, audit_view
from policy.addresses import Address, AddressError
from storage.models import Alias, CatchAll, Domain, ForwardingRule, Mailbox, Operator, OperatorRole

RESET_ROLES = ("owner", "domain-admin", "helpdesk", "approver")
RECENT_CHANGES = 10


def register(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    mailbox = add_noun(commands, common, "mailbox", "mailboxes, each with an owner")
    p = add_verb(mailbox, common, "create", mailbox_create, "create a mailbox", mutates=True)
    p.add_argument("address")
    add_owner_options(p)
    p.add_argument("--quota", metavar="SIZE", help="a cap inside the pool")
    p.add_argument(
        "--allow-reserved",
        action="store_true",
        help="allow an RFC 2142 name such as postmaster or abuse",
    )
    p = add_verb(mailbox, common, "list", mailbox_list, "list mailboxes")
    p.add_argument("--domain", help="only this domain")
    p = add_verb(
        mailbox, common, "show", mailbox_show, "owner, who can reset it, what changed last, rules"
    )
    p.add_argument("address")
    p = add_verb(mailbox, common, "activate", mailbox_state, "make a mailbox active", mutates=True)
    p.add_argument("address")
    p.add_argument("--reason", required=True)
    p.set_defaults(state="active")
    from admin.cli_offboarding import register_mailbox_verbs  # suspend, transfer, export, delete

    register_mailbox_verbs(mailbox, common)


def address_of(mailbox: Mailbox) -> str:
    return f"{mailbox.local_part}@{mailbox.domain.name}"


def _mailbox_row(session: Session, mailbox: Mailbox) -> dict[str, Any]:
    owner = owner_view(session, mailbox.owner_person_id, mailbox.owner_role_id)
    forwards = count(
        session,
        select(ForwardingRule.id).where(
            ForwardingRule.mailbox_id == mailbox.id, ForwardingRule.enabled.is_(True)
        ),
    )
    return {
        "address": address_of(mailbox),
        "owner": owner_label(owner),
        "owner_kind": owner["kind"],
        "state": mailbox.state,
        "quota_bytes": mailbox.quota_bytes,
        "used_bytes": mailbox.used_bytes,
        "forwards": forwards,
        "created_at": mailbox.created_at,
    }


def mailbox_create(ctx: Context, args: argparse.Namespace) -> Detail:
    try:
        address = Address.parse(args.address)
    except AddressError as exc:
        raise CLIError(str(exc)) from exc
    quota = None if args.quota is None else parse_size(args.quota)
    with ctx.session() as session:
        actor = ctx.actor(session)
        domain = d.get_domain(session, address.domain)
        owner = resolve_owner(session, args) or d.Owner()  # no owner: the service refuses
        mailbox = d.create_mailbox(
            session,
            actor=actor,
            now=ctx.now,
            domain=domain,
            local_part=address.local,
            owner=owner,
            quota_bytes=quota,
            allow_reserved=args.allow_reserved,
        )
        row = _mailbox_row(session, mailbox)
    return Detail(row, message=f"created mailbox {row['address']} owned by {row['owner']}")


def mailbox_list(ctx: Context, args: argparse.Namespace) -> Listing:
    with ctx.session() as session:
        stmt = select(Mailbox).join(Domain, Mailbox.domain_id == Domain.id)
        if args.domain:
            stmt = stmt.where(Domain.id == d.get_domain(session, args.domain).id)
        mailboxes = session.scalars(stmt.order_by(Domain.name, Mailbox.local_part))
        return Listing([_mailbox_row(session, m) for m in mailboxes], empty="no mailboxes")


def mailbox_state(ctx: Context, args: argparse.Namespace) -> Detail:
    with ctx.session() as session:
        mailbox = d.get_mailbox(session, args.address)
        d.set_mailbox_state(
            session,
            actor=ctx.actor(session),
            now=ctx.now,
            mailbox=mailbox,
            state=args.state,
            reason=args.reason,
        )
        row = _mailbox_row(session, mailbox)
    return Detail(row, message=f"mailbox {row['address']} is now {mailbox.state}")


def can_reset(session: Session, mailbox: Mailbox) -> list[dict[str, Any]]:
    """Active operators whose roles cover the mailbox's domain for a helpdesk reset."""
    rows = session.execute(
        select(Operator, OperatorRole.role, OperatorRole.domain_id)
        .join(OperatorRole, OperatorRole.operator_id == Operator.id)
        .where(Operator.active.is_(True), OperatorRole.role.in_(RESET_ROLES))
        .where(OperatorRole.domain_id.is_(None) | (OperatorRole.domain_id == mailbox.domain_id))
        .order_by(Operator.username, OperatorRole.role)
    )
    found: dict[str, dict[str, Any]] = {}
    for operator, role, scoped in rows:
        entry = found.setdefault(
            operator.username,
            {"operator": operator.username, "person": operator.person.name, "roles": []},
        )
        entry["roles"].append(f"{role}@{mailbox.domain.name}" if scoped else role)
    return list(found.values())


def attached_rules(session: Session, mailbox: Mailbox, now: datetime) -> list[dict[str, Any]]:
    """Forwards from the mailbox, and aliases and catch-alls that deliver into it."""
    address = address_of(mailbox)
    domain = mailbox.domain
    rules: list[tuple[str, Alias | ForwardingRule | CatchAll, str, Domain]] = []
    for fwd in session.scalars(
        select(ForwardingRule).where(ForwardingRule.mailbox_id == mailbox.id)
    ):
        rules.append(("forward", fwd, address, domain))
    for alias in session.scalars(select(Alias).where(Alias.target == address)):
        source = session.get(Domain, alias.domain_id)
        assert source is not None
        rules.append(("alias", alias, f"{alias.local_part}@{source.name}", source))
    for catch_all in session.scalars(select(CatchAll).where(CatchAll.target == address)):
        source = session.get(Domain, catch_all.domain_id)
        assert source is not None
        rules.append(("catchall", catch_all, f"*@{source.name}", source))
    views = []
    for kind, rule, source_address, source_domain in rules:
        owner = owner_view(session, rule.owner_person_id, rule.owner_role_id)
        views.append(
            {
                "kind": kind,
                "id": rule.id,
                "from": source_address,
                "to": rule.target,
                "owner": owner_label(owner),
                "purpose": rule.purpose,
                "expires_at": rule.expires_at,
                "status": rule_status(session, kind, rule, source_domain, now),
            }
        )
    return views


def _rule_targets(rules: list[dict[str, Any]]) -> list[str]:
    return [f"{r['kind']}:{r['id']}" for r in rules]


def describe_mailbox(session: Session, mailbox: Mailbox, now: datetime) -> dict[str, Any]:
    address = address_of(mailbox)
    rules = attached_rules(session, mailbox, now)
    entries = audit_entries(
        session, targets=[f"mailbox:{address}", *_rule_targets(rules)], limit=RECENT_CHANGES
    )
    changes = []
    for entry in reversed(entries):  # newest first
        view = audit_view(entry)
        view.pop("hash")
        changes.append(view)
    last = changes[0] if changes else None
    return {
        "address": address,
        "state": mailbox.state,
        "domain": mailbox.domain.name,
        "domain_state": mailbox.domain.state,
        "client": mailbox.domain.client.name,
        "quota_bytes": mailbox.quota_bytes,
        "used_bytes": mailbox.used_bytes,
        "password_set": mailbox.password_hash is not None,
        "created_at": mailbox.created_at,
        "owner": owner_view(session, mailbox.owner_person_id, mailbox.owner_role_id),
        "self_service_reset": "the owner, with a one-time recovery code",
        "helpdesk_reset": "requested by one operator, approved by another holding approver",
        "can_reset": can_reset(session, mailbox),
        "last_change": None
        if last is None
        else {k: last[k] for k in ("at", "actor", "action", "target", "reason")},
        "recent_changes": changes,
        "rules": rules,
    }


def mailbox_show(ctx: Context, args: argparse.Namespace) -> Detail:
    with ctx.session() as session:
        mailbox = d.get_mailbox(session, args.address)
        return Detail(describe_mailbox(session, mailbox, ctx.now))
