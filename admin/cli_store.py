"""``mailward reindex``: rebuild the IMAP index from the Maildir++ folders on disk.

The acting operator is authorized for every mailbox named (``--all``: for
every domain) before any folder is read.
"""

from __future__ import annotations

import argparse

from sqlalchemy import select

from admin.cli_base import Context, Subcommands
from admin.cli_output import CLIError, Listing
from admin.services import directory
from admin.services.permissions import authorize
from policy.permissions import Action
from storage import audit
from storage.mailindex import MailStore
from storage.models import Domain, Mailbox


def register(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    help_text = "rebuild the IMAP index and quota usage of mailboxes from their Maildir folders"
    p = commands.add_parser("reindex", parents=[common], help=help_text, description=help_text)
    p.add_argument("addresses", nargs="*", metavar="ADDRESS")
    p.add_argument("--all", action="store_true", help="every mailbox")
    p.set_defaults(handler=reindex, mutates=True)


def reindex(ctx: Context, args: argparse.Namespace) -> Listing:
    if bool(args.addresses) == bool(args.all):
        raise CLIError("name mailboxes, or --all")
    db = ctx.database()
    with db.session() as session:
        actor = ctx.actor(session)  # refuse an unknown operator before touching anything
        if args.all:
            authorize(session, actor, Action.MAILBOX_REINDEX)
            rows = session.execute(
                select(Mailbox.id, Mailbox.local_part, Domain.name)
                .join(Domain, Mailbox.domain_id == Domain.id)
                .order_by(Domain.name, Mailbox.local_part)
            ).all()
            targets = [(mid, f"{local}@{dom}") for mid, local, dom in rows]
        else:
            targets = []
            for address in args.addresses:
                mailbox = directory.get_mailbox(session, address)
                authorize(session, actor, Action.MAILBOX_REINDEX, mailbox.domain)
                targets.append((mailbox.id, address))
    store = MailStore(db, ctx.settings().mail_root)
    out = []
    for mailbox_id, address in targets:
        counts = store.reindex(mailbox_id)
        with db.session() as session:
            audit.record(session, actor=actor, action="mailbox.reindex",
                         target=f"mailbox:{address}", now=ctx.now,
                         after={"messages": counts})  # fmt: skip
        out.append({"mailbox": address, "folders": len(counts),
                    "messages": sum(counts.values())})  # fmt: skip
    return Listing(out, columns=("mailbox", "folders", "messages"))
