"""``mailward queue …`` and ``mailward dkim …``: the outbound queue and signing keys.

Queue changes and key rotations are audited like every other change, and
checked against ``policy.permissions`` (through ``authorize``) before the
queue or a key file is touched. Private keys never leave the data folder:
``dkim show`` prints only the public DNS records.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from sqlalchemy.orm import Session

from admin.cli_base import Context, Subcommands, add_noun, add_verb
from admin.cli_output import CLIError, Detail, Listing
from admin.services import directory
from admin.services.permissions import authorize
from mta.dkim_keys import KeyStore
from mta.queue import admin as queue_admin
from policy.permissions import Action
from storage import audit


def register(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    queue = add_noun(commands, common, "queue", "the durable outbound queue")
    p = add_verb(queue, common, "list", queue_list, "messages waiting, sending or held")
    p.add_argument("--all", action="store_true", help="also delivered and bounced messages")
    p = add_verb(queue, common, "show", queue_show, "one message with its recipients")
    p.add_argument("queue_id", metavar="ID")
    for verb, help_text in (("retry", "attempt a waiting message now"),
                            ("hold", "stop attempts until released"),
                            ("release", "resume attempts of a held message"),
                            ("delete", "drop a message: no delivery, no DSN")):  # fmt: skip
        p = add_verb(queue, common, verb, queue_change, help_text, mutates=True)
        p.add_argument("queue_id", metavar="ID")
        p.add_argument("--reason", help="why (kept in the audit log)")
        p.set_defaults(change=verb)

    dkim = add_noun(commands, common, "dkim", "DKIM signing keys per domain")
    p = add_verb(dkim, common, "show", dkim_show, "the DNS records to publish for a domain")
    p.add_argument("domain", metavar="DOMAIN")
    p = add_verb(dkim, common, "rotate", dkim_rotate, "stage new keys, or activate staged ones",
                 mutates=True)  # fmt: skip
    p.add_argument("domain", metavar="DOMAIN")
    p = add_verb(dkim, common, "retire", dkim_retire, "delete keys no longer signing",
                 mutates=True)  # fmt: skip
    p.add_argument("domain", metavar="DOMAIN")


def _row(view: queue_admin.MessageView) -> dict[str, Any]:
    data = asdict(view)
    data["recipients"] = ", ".join(view.recipients)
    return data


def queue_list(ctx: Context, args: argparse.Namespace) -> Listing:
    with ctx.session() as session:
        views = queue_admin.list_queue(session, include_final=args.all)
    return Listing([_row(v) for v in views], empty="the queue is empty",
                   columns=("queue_id", "state", "mail_from", "recipients", "size", "attempts",
                            "next_attempt_at", "last_error"))  # fmt: skip


def queue_show(ctx: Context, args: argparse.Namespace) -> Detail:
    with ctx.session() as session:
        try:
            view = queue_admin.show(session, args.queue_id.upper())
        except queue_admin.QueueError as exc:
            raise CLIError(str(exc)) from exc
    return Detail(_row(view))


def queue_change(ctx: Context, args: argparse.Namespace) -> Detail:
    change = getattr(queue_admin, args.change)
    with ctx.session() as session:
        actor = ctx.actor(session)
        authorize(session, actor, Action(f"queue.{args.change}"))
        try:
            view = change(session, args.queue_id.upper(), actor=actor, now=ctx.now,
                          reason=args.reason)  # fmt: skip
        except queue_admin.QueueError as exc:
            raise CLIError(str(exc)) from exc
    return Detail(_row(view), message=f"{view.queue_id}: {args.change} done ({view.state})")


def _keys(ctx: Context) -> KeyStore:
    return KeyStore(ctx.settings().data_dir / "dkim")


def _records(keys: KeyStore, domain: str) -> list[dict[str, str]]:
    return [{"name": r.name, "type": r.type, "value": r.value, "zone": r.zone_line()}
            for r in keys.records(domain)]  # fmt: skip


def dkim_show(ctx: Context, args: argparse.Namespace) -> Detail:
    with ctx.session() as session:
        domain = directory.get_domain(session, args.domain).name
    keys = _keys(ctx)
    state = keys.state(domain)
    records = _records(keys, domain)
    return Detail({"domain": domain, "active": state.active, "next": state.next,
                   "retiring": list(state.retiring), "records": records},
                  lines=[r["zone"] for r in records] or ["no keys yet: run dkim rotate"])


def _authorized(ctx: Context, session: Session, action: Action, name: str) -> tuple[str, str]:
    """The acting operator and the domain's name, once the operator may act on its keys."""
    actor = ctx.actor(session)
    domain = directory.get_domain(session, name)
    authorize(session, actor, action, domain)  # before any key file is written
    return actor, domain.name


def dkim_rotate(ctx: Context, args: argparse.Namespace) -> Detail:
    keys = _keys(ctx)
    with ctx.session() as session:
        actor, domain = _authorized(ctx, session, Action.DKIM_ROTATE, args.domain)
        before = asdict(keys.state(domain))
        step = keys.rotate(domain, ctx.now)
        audit.record(session, actor=actor, action=f"dkim.{step.action}",
                     target=f"domain:{domain}", now=ctx.now, before=before,
                     after=asdict(keys.state(domain)))  # fmt: skip
    records = _records(keys, domain)
    return Detail({"domain": domain, "action": step.action, "generation": step.generation,
                   "records": records}, message=step.message,
                  lines=[r["zone"] for r in records])  # fmt: skip


def dkim_retire(ctx: Context, args: argparse.Namespace) -> Detail:
    keys = _keys(ctx)
    with ctx.session() as session:
        actor, domain = _authorized(ctx, session, Action.DKIM_RETIRE, args.domain)
        before = asdict(keys.state(domain))
        retired = keys.retire(domain)
        audit.record(session, actor=actor, action="dkim.retire",
                     target=f"domain:{domain}", now=ctx.now, before=before,
                     after=asdict(keys.state(domain)))  # fmt: skip
    return Detail({"domain": domain, "retired": list(retired)},
                  message=f"retired {', '.join(retired) or 'nothing'}")  # fmt: skip
