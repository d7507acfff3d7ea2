"""``mailward log routing|audit|verify``: read the two append-only logs, check their chains.

``log verify`` walks both hash chains and exits 1 when either is broken, so a
cron job or a monitoring check can alert on tampering by exit code alone.
"""

from __future__ import annotations

import argparse

from admin.cli_base import Context, Subcommands, add_noun, add_verb
from admin.cli_output import CLIError, Detail, Listing, parse_time
from admin.services import logs

EXIT_BROKEN = 1


def register(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    log = add_noun(commands, common, "log", "the routing and audit logs")
    p = add_verb(log, common, "routing", log_routing, "recipient decisions, newest last")
    p.add_argument("--recipient", help="an address, or a glob such as '*@acme.test'")
    p.add_argument("--decision", help="accept, deliver, forward, reject or defer")
    _window(p)
    p = add_verb(log, common, "audit", log_audit, "changes, newest last")
    p.add_argument("--actor", help="an actor such as operator:admin, or a bare operator name")
    p.add_argument("--target", help="a target such as mailbox:alice@acme.test, or a glob")
    p.add_argument("--action", help="an action such as forward.create, or a glob (forward.*)")
    _window(p)
    add_verb(log, common, "verify", log_verify, "check both hash chains; exit 1 if broken")


def _window(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since", metavar="ISO", help="only entries at or after this time (ISO 8601, or 2h, 7d)"
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=logs.DEFAULT_LIMIT,
        metavar="N",
        help=f"at most N entries, the newest (default {logs.DEFAULT_LIMIT})",
    )


def _limit(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise CLIError("--limit must be at least 1")
    return int(args.limit)


def log_routing(ctx: Context, args: argparse.Namespace) -> Listing:
    since = None if args.since is None else parse_time(args.since, ctx.now)
    with ctx.session() as session:
        entries = logs.routing_entries(
            session,
            recipient=args.recipient,
            decision=args.decision,
            since=since,
            limit=_limit(args),
        )
        return Listing(
            [logs.routing_view(e) for e in entries],
            empty="no routing entries",
            columns=(
                "id",
                "at",
                "client_ip",
                "mail_from",
                "recipient",
                "decision",
                "reason",
                "rule_ids",
                "queue_id",
            ),
        )


def log_audit(ctx: Context, args: argparse.Namespace) -> Listing:
    since = None if args.since is None else parse_time(args.since, ctx.now)
    with ctx.session() as session:
        entries = logs.audit_entries(
            session,
            actor=args.actor,
            target=args.target,
            action=args.action,
            since=since,
            limit=_limit(args),
        )
        return Listing(
            [logs.audit_view(e) for e in entries],
            empty="no audit entries",
            columns=("id", "at", "actor", "action", "target", "reason"),
        )


def log_verify(ctx: Context, args: argparse.Namespace) -> Detail:
    with ctx.session() as session:
        reports = logs.verify_chains(session)
    chains = [
        {
            "chain": r.chain,
            "ok": r.ok,
            "entries": r.entries,
            "broken_at": r.broken_at,
            "detail": r.detail,
        }
        for r in reports
    ]
    ok = all(r.ok for r in reports)
    lines = [
        f"{r.chain} log: ok, {r.entries} entries"
        if r.ok
        else f"{r.chain} log: BROKEN at entry {r.broken_at}: {r.detail}"
        for r in reports
    ]
    return Detail(
        {"ok": ok, "chains": chains},
        message=lines[0],
        lines=lines[1:],
        exit_code=0 if ok else EXIT_BROKEN,
    )
