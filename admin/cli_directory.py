"""``mailward org|client|domain|quota``: the tenancy tree and its pooled quota."""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from admin.cli_base import Context, Subcommands, add_noun, add_verb, count
from admin.cli_output import CLIError, Detail, Listing, parse_quota, parse_size
from admin.services import directory as d
from policy.quota import QuotaLevel, QuotaSnapshot
from storage.models import (
    Alias,
    CatchAll,
    Client,
    Domain,
    ForwardingRule,
    Mailbox,
    Operator,
    OperatorRole,
    Organization,
)

LEVELS = {
    "org": "organization",
    "organization": "organization",
    "client": "client",
    "domain": "domain",
    "mailbox": "mailbox",
}


def register(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    org = add_noun(commands, common, "org", "the agency: the organization owning the quota pool")
    p = add_verb(org, common, "create", org_create, "create an organization", mutates=True)
    p.add_argument("name")
    p.add_argument("--quota", metavar="SIZE", help="the pool size (e.g. 500M, 2G)")
    add_verb(org, common, "list", org_list, "list organizations")

    client = add_noun(commands, common, "client", "the agency's clients")
    p = add_verb(client, common, "create", client_create, "create a client", mutates=True)
    p.add_argument("name")
    p.add_argument("--org", help="the organization (default: the only one)")
    p.add_argument("--quota", metavar="SIZE", help="a cap inside the pool")
    add_verb(client, common, "list", client_list, "list clients")

    domain = add_noun(commands, common, "domain", "hosted domains")
    p = add_verb(domain, common, "create", domain_create, "host a domain", mutates=True)
    p.add_argument("name")
    p.add_argument("--client", required=True)
    p.add_argument("--quota", metavar="SIZE", help="a cap inside the pool")
    add_verb(domain, common, "list", domain_list, "list hosted domains")
    p = add_verb(domain, common, "show", domain_show, "show a domain, its rules and admins")
    p.add_argument("name")
    p = add_verb(domain, common, "activate", domain_state, "make a domain active", mutates=True)
    p.add_argument("name")
    p.add_argument("--reason", required=True)
    p.set_defaults(state="active")
    from admin.cli_offboarding import register_domain_verbs  # suspend revokes access too

    register_domain_verbs(domain, common)
    p = add_verb(
        domain, common, "policy", domain_policy, "set a domain's forwarding policy", mutates=True
    )
    p.add_argument("name")
    p.add_argument("--external-forwarding", choices=("on", "off"))
    p.add_argument(
        "--max-rule-days",
        type=int,
        metavar="N",
        help="the longest lifetime of a forward, external alias or catch-all",
    )

    quota = add_noun(commands, common, "quota", "pooled storage quota")
    p = add_verb(quota, common, "set", quota_set, "set or clear a quota", mutates=True)
    p.add_argument("level", choices=sorted(LEVELS))
    p.add_argument("name")
    p.add_argument("size", metavar="SIZE|none")
    p = add_verb(
        quota,
        common,
        "show",
        quota_show,
        "used/limit of every org, client and domain, or of one item up to the pool",
    )
    p.add_argument("level", nargs="?", choices=sorted(LEVELS))
    p.add_argument("name", nargs="?")


def _size(text: str | None) -> int | None:
    return None if text is None else parse_size(text)


def _org_row(session: Session, org: Organization) -> dict[str, Any]:
    clients = count(session, select(Client.id).where(Client.organization_id == org.id))
    return {
        "name": org.name,
        "quota_bytes": org.quota_bytes,
        "used_bytes": org.used_bytes,
        "clients": clients,
        "created_at": org.created_at,
    }


def org_create(ctx: Context, args: argparse.Namespace) -> Detail:
    with ctx.session() as session:
        org = d.create_organization(
            session,
            actor=ctx.actor(session),
            now=ctx.now,
            name=args.name,
            quota_bytes=_size(args.quota),
        )
        row = _org_row(session, org)
    return Detail(row, message=f"created organization {org.name!r}")


def org_list(ctx: Context, args: argparse.Namespace) -> Listing:
    with ctx.session() as session:
        orgs = session.scalars(select(Organization).order_by(Organization.name))
        return Listing([_org_row(session, o) for o in orgs], empty="no organizations")


def _client_row(session: Session, client: Client) -> dict[str, Any]:
    domains = count(session, select(Domain.id).where(Domain.client_id == client.id))
    return {
        "name": client.name,
        "organization": client.organization.name,
        "quota_bytes": client.quota_bytes,
        "used_bytes": client.used_bytes,
        "domains": domains,
        "created_at": client.created_at,
    }


def client_create(ctx: Context, args: argparse.Namespace) -> Detail:
    with ctx.session() as session:
        org = d.get_organization(session, args.org) if args.org else d.default_organization(session)
        client = d.create_client(
            session,
            actor=ctx.actor(session),
            now=ctx.now,
            organization=org,
            name=args.name,
            quota_bytes=_size(args.quota),
        )
        row = _client_row(session, client)
    return Detail(row, message=f"created client {client.name!r} in {org.name!r}")


def client_list(ctx: Context, args: argparse.Namespace) -> Listing:
    with ctx.session() as session:
        clients = session.scalars(select(Client).order_by(Client.name))
        return Listing([_client_row(session, c) for c in clients], empty="no clients")


def _domain_row(session: Session, domain: Domain) -> dict[str, Any]:
    mailboxes = count(session, select(Mailbox.id).where(Mailbox.domain_id == domain.id))
    return {
        "name": domain.name,
        "client": domain.client.name,
        "state": domain.state,
        "external_forwarding": domain.external_forwarding,
        "max_rule_days": domain.max_rule_days,
        "mailboxes": mailboxes,
        "quota_bytes": domain.quota_bytes,
        "used_bytes": domain.used_bytes,
        "created_at": domain.created_at,
    }


def domain_create(ctx: Context, args: argparse.Namespace) -> Detail:
    with ctx.session() as session:
        client = d.get_client(session, args.client)
        domain = d.create_domain(
            session,
            actor=ctx.actor(session),
            now=ctx.now,
            client=client,
            name=args.name,
            quota_bytes=_size(args.quota),
        )
        row = _domain_row(session, domain)
    return Detail(row, message=f"created domain {domain.name} for client {client.name!r}")


def domain_list(ctx: Context, args: argparse.Namespace) -> Listing:
    with ctx.session() as session:
        domains = session.scalars(select(Domain).order_by(Domain.name))
        return Listing([_domain_row(session, x) for x in domains], empty="no domains")


def domain_admins(session: Session, domain: Domain) -> list[dict[str, Any]]:
    """Active operators holding a role over the domain, organization-wide or scoped to it."""
    rows = session.execute(
        select(Operator.username, OperatorRole.role, OperatorRole.domain_id)
        .join(OperatorRole, OperatorRole.operator_id == Operator.id)
        .where(Operator.active.is_(True))
        .where(OperatorRole.domain_id.is_(None) | (OperatorRole.domain_id == domain.id))
        .order_by(Operator.username, OperatorRole.role)
    )
    roles: dict[str, list[str]] = {}
    for username, role, scoped in rows:
        roles.setdefault(username, []).append(f"{role}@{domain.name}" if scoped else role)
    return [{"operator": u, "roles": r} for u, r in roles.items()]


def domain_show(ctx: Context, args: argparse.Namespace) -> Detail:
    with ctx.session() as session:
        domain = d.get_domain(session, args.name)
        row = _domain_row(session, domain)
        enabled_forwards = (
            select(ForwardingRule.id)
            .join(Mailbox, ForwardingRule.mailbox_id == Mailbox.id)
            .where(Mailbox.domain_id == domain.id, ForwardingRule.enabled.is_(True))
        )
        row["aliases"] = count(
            session, select(Alias.id).where(Alias.domain_id == domain.id, Alias.enabled.is_(True))
        )
        row["forwards"] = count(session, enabled_forwards)
        catch_all = session.scalars(
            select(CatchAll).where(CatchAll.domain_id == domain.id, CatchAll.enabled.is_(True))
        ).first()
        row["catch_all"] = None if catch_all is None else (f"#{catch_all.id} -> {catch_all.target}")
        row["operators"] = domain_admins(session, domain)
    return Detail(row)


def domain_state(ctx: Context, args: argparse.Namespace) -> Detail:
    with ctx.session() as session:
        domain = d.get_domain(session, args.name)
        d.set_domain_state(
            session,
            actor=ctx.actor(session),
            now=ctx.now,
            domain=domain,
            state=args.state,
            reason=args.reason,
        )
        row = _domain_row(session, domain)
    return Detail(row, message=f"domain {domain.name} is now {domain.state}")


def domain_policy(ctx: Context, args: argparse.Namespace) -> Detail:
    if args.external_forwarding is None and args.max_rule_days is None:
        raise CLIError("nothing to change: give --external-forwarding and/or --max-rule-days")
    with ctx.session() as session:
        domain = d.get_domain(session, args.name)
        forwarding = (
            None if args.external_forwarding is None else (args.external_forwarding == "on")
        )
        d.set_domain_policy(
            session,
            actor=ctx.actor(session),
            now=ctx.now,
            domain=domain,
            external_forwarding=forwarding,
            max_rule_days=args.max_rule_days,
        )
        row = _domain_row(session, domain)
    state = "on" if domain.external_forwarding else "off"
    return Detail(
        row,
        message=f"domain {domain.name}: external forwarding {state}, "
        f"rules at most {domain.max_rule_days} days",
    )


def _find(session: Session, level: str, name: str) -> Organization | Client | Domain | Mailbox:
    finders = {
        "organization": d.get_organization,
        "client": d.get_client,
        "domain": d.get_domain,
        "mailbox": d.get_mailbox,
    }
    return finders[LEVELS[level]](session, name)


def quota_set(ctx: Context, args: argparse.Namespace) -> Detail:
    quota = parse_quota(args.size)
    with ctx.session() as session:
        row = _find(session, args.level, args.name)
        d.set_quota(session, actor=ctx.actor(session), now=ctx.now, row=row, quota_bytes=quota)
        levels = _chain(row)
    return Detail(
        _quota_rows(levels[:1])[0],
        message=f"{LEVELS[args.level]} {args.name}: quota "
        f"{'removed' if quota is None else args.size}",
    )


def _chain(row: Organization | Client | Domain | Mailbox) -> list[QuotaLevel]:
    """The row and every level above it, up to the organization's pool."""
    levels: list[QuotaLevel] = []
    if isinstance(row, Mailbox):
        levels.append(
            QuotaLevel(
                "mailbox", f"{row.local_part}@{row.domain.name}", row.used_bytes, row.quota_bytes
            )
        )
        row = row.domain
    if isinstance(row, Domain):
        levels.append(QuotaLevel("domain", row.name, row.used_bytes, row.quota_bytes))
        row = row.client
    if isinstance(row, Client):
        levels.append(QuotaLevel("client", row.name, row.used_bytes, row.quota_bytes))
        row = row.organization
    levels.append(QuotaLevel("organization", row.name, row.used_bytes, row.quota_bytes))
    return levels


def _quota_rows(levels: list[QuotaLevel]) -> list[dict[str, Any]]:
    limiting = QuotaSnapshot(tuple(levels)).limiting()
    return [
        {
            "level": lvl.scope,
            "name": lvl.name,
            "used_bytes": lvl.used,
            "quota_bytes": lvl.limit,
            "free_bytes": lvl.free,
            "used_percent": None if not lvl.limit else round(100 * lvl.used / lvl.limit, 1),
            "limiting": lvl is limiting,
        }
        for lvl in levels
    ]


def quota_show(ctx: Context, args: argparse.Namespace) -> Listing:
    if (args.level is None) != (args.name is None):
        raise CLIError("name both the level and the item (e.g. quota show domain acme.test)")
    with ctx.session() as session:
        if args.level is not None:
            return Listing(_quota_rows(_chain(_find(session, args.level, args.name))))
        levels = [
            QuotaLevel("organization", o.name, o.used_bytes, o.quota_bytes)
            for o in session.scalars(select(Organization).order_by(Organization.name))
        ]
        levels += [
            QuotaLevel("client", c.name, c.used_bytes, c.quota_bytes)
            for c in session.scalars(select(Client).order_by(Client.name))
        ]
        levels += [
            QuotaLevel("domain", x.name, x.used_bytes, x.quota_bytes)
            for x in session.scalars(select(Domain).order_by(Domain.name))
        ]
        rows = _quota_rows(levels)
        for row in rows:
            row.pop("limiting")  # only meaningful along one chain
        return Listing(rows, empty="no organizations")
