"""``mailward init``: the data folder, the schema, and the first people in it.

``init`` is idempotent: it creates the folder, upgrades the schema to head
and, on a second run, writes nothing else. It acts as ``system:init``, the
only change the CLI makes without ``--as``, because before it there is no
operator to name. It seeds either the demo agency (``--demo``) or, for a real
installation, the organization and its first owner operator (``--org``,
``--operator``, ``--person`` and an out-of-band ``--email`` or ``--phone``);
every other operator is then created by an existing one with ``--as``.

No password is printed or chosen here: the first operator receives a one-time
setup link through the notification channel (the file sink,
``<data>/outbox/``, in a fresh data folder) and sets their own password in
the browser. The demo also leaves a pending mailbox invite there, so a
newcomer can open it and set up a mailbox the way an owner would.
"""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.engine import make_url

from admin.cli_base import Context, Subcommands
from admin.cli_identity import identity_env
from admin.cli_output import CLIError, Detail
from admin.demo import DEMO_ORGANIZATION, INIT_ACTOR, seed_demo, seed_demo_identity
from admin.services import directory as d
from admin.services.operators import create_setup_link
from storage.db import Database
from storage.models import Operator, Organization

_FIRST = ("org", "first_operator", "person")


def register(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    init = commands.add_parser(
        "init",
        parents=[common],
        help="create the data folder and schema",
        description="Create the data folder and schema (idempotent), then optionally seed the "
        "demo agency or a real organization with its first owner operator. Acts as system:init.",
    )
    init.add_argument("--demo", action="store_true", help="also seed a small demo agency")
    first = init.add_argument_group("first operator (a real installation)")
    first.add_argument("--org", metavar="NAME", help="the organization (the agency)")
    first.add_argument(
        "--operator",
        dest="first_operator",
        metavar="USERNAME",
        help="the username of the first operator, who gets the owner role",
    )
    first.add_argument("--person", metavar="NAME", help="the full name of that operator")
    first.add_argument("--email", help="their out-of-band contact email")
    first.add_argument("--phone", help="their out-of-band contact phone")
    init.set_defaults(handler=cmd_init, mutates=False)


def _label(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def cmd_init(ctx: Context, args: argparse.Namespace) -> Detail:
    given = [getattr(args, name) is not None for name in _FIRST]
    if any(given) and not all(given):
        raise CLIError("the first operator needs --org, --operator and --person together")
    if all(given) and args.demo:
        raise CLIError("choose --demo or a first operator, not both")
    ctx.data_dir.mkdir(parents=True, exist_ok=True)
    db = ctx.database(create=True)
    fresh = not inspect(db.engine).has_table("alembic_version")
    db.migrate()
    data_dir = str(ctx.data_dir.resolve())
    state = "initialized" if fresh else "already initialized; schema up to date in"
    lines = [f"{state} {data_dir}", f"database: {_label(db.url)}"]
    result: dict[str, Any] = {"data_dir": data_dir, "database": _label(db.url), "created": fresh}
    if args.demo:
        result["demo"] = _demo(ctx, db, lines)
    elif all(given):
        result["operator"] = _first_operator(ctx, db, args, lines)
    return Detail(result, message=lines[0], lines=lines[1:])


def _demo(ctx: Context, db: Database, lines: list[str]) -> dict[str, Any] | str:
    with db.session() as session:
        names = list(session.scalars(select(Organization.name)))
    if DEMO_ORGANIZATION in names:
        lines.append(f"demo: {DEMO_ORGANIZATION!r} is already present; nothing added")
        return "present"
    summary = seed_demo(db, ctx.now)  # refuses a control plane that holds other data
    links = seed_demo_identity(db, identity_env(ctx), ctx.now)
    lines.append(f"demo: seeded organization {summary.organization!r}")
    for key, values in summary.as_dict().items():
        if isinstance(values, list):
            lines += [f"  {key}:"] + [f"    {v}" for v in values]
    outbox = ctx.data_dir / "outbox"
    lines.append(f"try: mailward --data {ctx.data_dir} mailbox show alice@acme.test")
    lines.append(f"invite: Erin Ford is invited to acme.test; the link is in {outbox}/ "
                 f"({links.invite}): run `mailward serve` and open it in a browser")  # fmt: skip
    lines.append(f"operator: the setup link for 'admin' is in {outbox}/ ({links.operator_setup})")
    return {**summary.as_dict(), "invite": links.invite, "operator_setup": links.operator_setup}


def _first_operator(
    ctx: Context, db: Database, args: argparse.Namespace, lines: list[str]
) -> dict[str, Any] | str:
    with db.session() as session:
        if session.scalars(
            select(Operator.id).where(Operator.username == args.first_operator)
        ).first():
            lines.append(f"operator {args.first_operator!r} is already present; nothing added")
            return "present"
        if session.scalars(select(Operator.id).limit(1)).first() is not None:
            raise CLIError(
                "this control plane already has operators: an existing one adds more with "
                "`mailward operator create ... --as USERNAME`"
            )
        org = session.scalars(select(Organization).where(Organization.name == args.org)).first()
        if org is None:
            org = d.create_organization(session, actor=INIT_ACTOR, now=ctx.now, name=args.org)
        person = d.create_person(
            session,
            actor=INIT_ACTOR,
            now=ctx.now,
            organization=org,
            name=args.person,
            contact_email=args.email,
            contact_phone=args.phone,
        )
        operator = d.create_operator(
            session,
            actor=INIT_ACTOR,
            now=ctx.now,
            person=person,
            username=args.first_operator,
            roles=[("owner", None)],
        )
        setup = create_setup_link(
            session, identity_env(ctx), actor=INIT_ACTOR, now=ctx.now, operator=operator
        )
    sent = ", ".join(f"{x.channel}:{x.reference}" for x in setup.deliveries)
    lines.append(
        f"organization {org.name!r} with owner operator {args.first_operator!r} "
        f"({person.name}); act as them with --as {args.first_operator}"
    )
    contact = person.contact_email or person.contact_phone
    lines.append(
        f"a one-time setup link for {args.first_operator!r} went to {contact} ({sent}; the file "
        f"sink writes {ctx.data_dir / 'outbox'}/): they choose their own password there"
    )
    return {
        "organization": org.name,
        "username": args.first_operator,
        "person": person.name,
        "roles": ["owner"],
        "setup_link_sent": sent,
    }
