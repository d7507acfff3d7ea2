"""``mailward alias|forward|catchall``: the governed persistence features (hard rule 5).

The CLI never pre-checks governance: purpose, owner and expiry are optional
on the command line so that ``admin.services.rules`` refuses a missing one
with the same reasons the API and web UI give, all at once. Listings show
each rule's status as the delivery path would judge it now (``active`` or the
routing reason code that makes it skip the rule).
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
    owner_label,
    owner_view,
    resolve_owner,
)
from admin.cli_output import CLIError, Detail, Listing, expiry
from admin.services import directory as d
from admin.services import rules as r
from policy.addresses import Address, AddressError
from policy.routing import DomainState, MailboxState, Reason, Rule, RuleKind, rule_defect
from storage import directory as facts
from storage.models import Alias, CatchAll, Domain, ForwardingRule, Mailbox


def register(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    alias = add_noun(commands, common, "alias", "aliases: more addresses for a mailbox")
    p = add_verb(alias, common, "add", alias_add, "add an alias", mutates=True)
    p.add_argument("address")
    p.add_argument("target")
    _governance_options(p, expiry_required=False)
    add_verb(alias, common, "list", alias_list, "list aliases")
    _disable_verb(alias, common, "alias")

    forward = add_noun(commands, common, "forward", "forwarding rules (time-boxed)")
    p = add_verb(forward, common, "add", forward_add, "add a forwarding rule", mutates=True)
    p.add_argument("mailbox")
    p.add_argument("target")
    _governance_options(p, expiry_required=True)
    p.add_argument(
        "--no-keep-copy",
        dest="keep_copy",
        action="store_false",
        help="do not also deliver to the mailbox",
    )
    p = add_verb(forward, common, "list", forward_list, "list forwarding rules")
    p.add_argument("--mailbox", help="only this mailbox's rules")
    _disable_verb(forward, common, "forward")

    catchall = add_noun(commands, common, "catchall", "catch-all addresses (time-boxed)")
    p = add_verb(catchall, common, "set", catchall_set, "set a domain's catch-all", mutates=True)
    p.add_argument("domain")
    p.add_argument("target")
    _governance_options(p, expiry_required=True)
    add_verb(catchall, common, "list", catchall_list, "list catch-alls")
    _disable_verb(catchall, common, "catchall")


def _governance_options(parser: argparse.ArgumentParser, *, expiry_required: bool) -> None:
    add_owner_options(parser)
    parser.add_argument("--purpose", help="why this rule exists (required)")
    when = parser.add_mutually_exclusive_group()
    note = "one of the two is required" if expiry_required else "required for external targets"
    when.add_argument(
        "--expires", metavar="DATE", help=f"expiry: YYYY-MM-DD (midnight UTC) or ISO time ({note})"
    )
    when.add_argument("--days", type=int, metavar="N", help=f"expire in N days ({note})")


def _disable_verb(nouns: Subcommands, common: argparse.ArgumentParser, kind: str) -> None:
    p = add_verb(nouns, common, "disable", rule_disable, f"disable a {kind} rule", mutates=True)
    p.add_argument("id", type=int)
    p.add_argument("--reason", required=True)
    p.set_defaults(kind=kind)


def rule_status(
    session: Session,
    kind: str,
    row: Alias | ForwardingRule | CatchAll,
    domain: Domain,
    now: datetime,
) -> str:
    """``active``, or the reason code the delivery path would skip this rule with now."""
    if domain.state == DomainState.SUSPENDED.value:
        return Reason.DOMAIN_SUSPENDED.value
    try:
        target = Address.parse(row.target, utf8=True)
    except AddressError:
        return Reason.TARGET_UNAVAILABLE.value
    rule = Rule(
        kind=RuleKind(kind),
        id=row.id,
        target=target,
        owner=facts.owner_label(row),
        purpose=row.purpose,
        created_at=row.created_at,
        expires_at=row.expires_at,
        enabled=row.enabled,
    )
    internal = target.domain in d.hosted_domain_names(session)
    defect = rule_defect(rule, facts.domain_facts(domain), now, internal=internal)
    if defect is not None:
        return defect.value
    if internal:
        mailbox = facts.find_mailbox(session, target)
        if mailbox is None or mailbox.state == MailboxState.SUSPENDED.value:
            return Reason.TARGET_UNAVAILABLE.value
        return "active"
    if domain.state == DomainState.FROZEN.value:
        return Reason.DOMAIN_FROZEN.value
    if not domain.external_forwarding:
        return Reason.EXTERNAL_FORWARDING_DISABLED.value
    return "active"


def _governed(session: Session, row: Alias | ForwardingRule | CatchAll) -> dict[str, Any]:
    owner = owner_view(session, row.owner_person_id, row.owner_role_id)
    return {
        "owner": owner_label(owner),
        "purpose": row.purpose,
        "expires_at": row.expires_at,
        "enabled": row.enabled,
        "created_by": row.created_by,
        "created_at": row.created_at,
    }


def _alias_row(session: Session, alias: Alias, now: datetime) -> dict[str, Any]:
    domain = session.get(Domain, alias.domain_id)
    assert domain is not None
    return {
        "id": alias.id,
        "address": f"{alias.local_part}@{domain.name}",
        "target": alias.target,
        "external": alias.external,
        **_governed(session, alias),
        "status": rule_status(session, "alias", alias, domain, now),
    }


def _forward_row(session: Session, rule: ForwardingRule, now: datetime) -> dict[str, Any]:
    mailbox = session.get(Mailbox, rule.mailbox_id)
    assert mailbox is not None
    return {
        "id": rule.id,
        "mailbox": f"{mailbox.local_part}@{mailbox.domain.name}",
        "target": rule.target,
        "external": rule.external,
        "keep_copy": rule.keep_copy,
        **_governed(session, rule),
        "status": rule_status(session, "forward", rule, mailbox.domain, now),
    }


def _catchall_row(session: Session, rule: CatchAll, now: datetime) -> dict[str, Any]:
    domain = session.get(Domain, rule.domain_id)
    assert domain is not None
    return {
        "id": rule.id,
        "domain": domain.name,
        "target": rule.target,
        **_governed(session, rule),
        "status": rule_status(session, "catchall", rule, domain, now),
    }


def _split(address: str) -> Address:
    try:
        return Address.parse(address)
    except AddressError as exc:
        raise CLIError(str(exc)) from exc


def _until(row: dict[str, Any]) -> str:
    at = row["expires_at"]
    return f"until {at:%Y-%m-%d %H:%M} UTC" if at else "without expiry"


def alias_add(ctx: Context, args: argparse.Namespace) -> Detail:
    address = _split(args.address)
    expires_at = expiry(args.expires, args.days, ctx.now)
    with ctx.session() as session:
        actor = ctx.actor(session)
        alias = r.add_alias(
            session,
            actor=actor,
            now=ctx.now,
            domain=d.get_domain(session, address.domain),
            local_part=address.local,
            target=args.target,
            owner=resolve_owner(session, args),
            purpose=args.purpose,
            expires_at=expires_at,
        )
        row = _alias_row(session, alias, ctx.now)
    return Detail(
        row,
        message=f"added alias #{row['id']}: {row['address']} -> {row['target']} "
        f"{_until(row)}, owner {row['owner']}",
    )


def alias_list(ctx: Context, args: argparse.Namespace) -> Listing:
    with ctx.session() as session:
        aliases = session.scalars(select(Alias).order_by(Alias.id))
        return Listing(
            [_alias_row(session, a, ctx.now) for a in aliases],
            empty="no aliases",
            columns=("id", "address", "target", "owner", "purpose", "expires_at", "status"),
        )


def forward_add(ctx: Context, args: argparse.Namespace) -> Detail:
    expires_at = expiry(args.expires, args.days, ctx.now)
    with ctx.session() as session:
        actor = ctx.actor(session)
        rule = r.add_forward(
            session,
            actor=actor,
            now=ctx.now,
            mailbox=d.get_mailbox(session, args.mailbox),
            target=args.target,
            owner=resolve_owner(session, args),
            purpose=args.purpose,
            expires_at=expires_at,
            keep_copy=args.keep_copy,
        )
        row = _forward_row(session, rule, ctx.now)
    copy = "keeping a copy" if row["keep_copy"] else "without a local copy"
    return Detail(
        row,
        message=f"added forward #{row['id']}: {row['mailbox']} -> {row['target']} "
        f"{_until(row)}, {copy}, owner {row['owner']}",
    )


def forward_list(ctx: Context, args: argparse.Namespace) -> Listing:
    with ctx.session() as session:
        stmt = select(ForwardingRule).order_by(ForwardingRule.id)
        if args.mailbox:
            stmt = stmt.where(ForwardingRule.mailbox_id == d.get_mailbox(session, args.mailbox).id)
        rows = [_forward_row(session, f, ctx.now) for f in session.scalars(stmt)]
        return Listing(
            rows,
            empty="no forwarding rules",
            columns=(
                "id",
                "mailbox",
                "target",
                "keep_copy",
                "owner",
                "purpose",
                "expires_at",
                "status",
            ),
        )


def catchall_set(ctx: Context, args: argparse.Namespace) -> Detail:
    expires_at = expiry(args.expires, args.days, ctx.now)
    with ctx.session() as session:
        actor = ctx.actor(session)
        rule = r.set_catch_all(
            session,
            actor=actor,
            now=ctx.now,
            domain=d.get_domain(session, args.domain),
            target=args.target,
            owner=resolve_owner(session, args),
            purpose=args.purpose,
            expires_at=expires_at,
        )
        row = _catchall_row(session, rule, ctx.now)
    return Detail(
        row,
        message=f"set catch-all #{row['id']}: *@{row['domain']} -> "
        f"{row['target']} {_until(row)}, owner {row['owner']}",
    )


def catchall_list(ctx: Context, args: argparse.Namespace) -> Listing:
    with ctx.session() as session:
        rules = session.scalars(select(CatchAll).order_by(CatchAll.id))
        return Listing(
            [_catchall_row(session, c, ctx.now) for c in rules],
            empty="no catch-alls",
            columns=("id", "domain", "target", "owner", "purpose", "expires_at", "status"),
        )


def rule_disable(ctx: Context, args: argparse.Namespace) -> Detail:
    rows = {"alias": _alias_row, "forward": _forward_row, "catchall": _catchall_row}
    with ctx.session() as session:
        rule = r.disable_rule(
            session,
            actor=ctx.actor(session),
            now=ctx.now,
            kind=args.kind,
            rule_id=args.id,
            reason=args.reason,
        )
        row = rows[args.kind](session, rule, ctx.now)  # type: ignore[operator]
    return Detail(row, message=f"disabled {args.kind} #{args.id}")
