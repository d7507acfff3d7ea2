"""``mailward mailbox suspend|transfer|export|delete|restore|purge`` and ``domain suspend``.

Offboarding through ``admin.services.offboarding``: suspending revokes every
session and app password as well as refusing logins; a deletion is scheduled
with a grace period, after an export, and ``mailbox purge`` (run daily, e.g.
from cron) removes what is due.
"""

from __future__ import annotations

import argparse

from admin.cli_base import Context, Subcommands, add_owner_options, add_verb, resolve_owner
from admin.cli_identity import acting
from admin.cli_output import CLIError, Detail, Listing
from admin.services import directory as d
from admin.services import offboarding as off
from policy.identity import DEFAULT_DELETE_GRACE_DAYS


def register_mailbox_verbs(mailbox: Subcommands, common: argparse.ArgumentParser) -> None:
    """Verbs added to ``mailward mailbox`` (registered by ``cli_mailbox``)."""
    p = add_verb(
        mailbox,
        common,
        "suspend",
        mailbox_suspend,
        "refuse logins everywhere and revoke sessions and app passwords",
        mutates=True,
    )
    p.add_argument("address")
    p.add_argument("--reason", required=True)
    p = add_verb(
        mailbox, common, "transfer", mailbox_transfer, "give a mailbox another owner", mutates=True
    )
    p.add_argument("address")
    add_owner_options(p)
    p.add_argument("--reason", required=True)
    p.add_argument(
        "--keep-credentials",
        action="store_true",
        help="keep password, codes and app passwords (the same people go on using it)",
    )
    p = add_verb(
        mailbox,
        common,
        "export",
        mailbox_export,
        "write a Maildir tarball or mbox archive into <data>/exports",
        mutates=True,
    )
    p.add_argument("address")
    p.add_argument("--format", choices=off.EXPORT_FORMATS, default="maildir")
    p = add_verb(
        mailbox,
        common,
        "delete",
        mailbox_delete,
        "suspend now and delete after a grace period",
        mutates=True,
    )
    p.add_argument("address")
    p.add_argument("--reason", required=True)
    p.add_argument("--grace-days", type=int, default=DEFAULT_DELETE_GRACE_DAYS)
    p.add_argument(
        "--without-export",
        action="store_true",
        help="delete even though the mailbox was never exported",
    )
    p = add_verb(
        mailbox,
        common,
        "restore",
        mailbox_restore,
        "cancel a scheduled deletion (the mailbox stays suspended)",
        mutates=True,
    )
    p.add_argument("address")
    p.add_argument("--reason", required=True)
    add_verb(
        mailbox,
        common,
        "purge",
        mailbox_purge,
        "delete the mailboxes whose grace period is over",
        mutates=True,
    )


def register_domain_verbs(domain: Subcommands, common: argparse.ArgumentParser) -> None:
    """``mailward domain suspend`` (registered by ``cli_directory``)."""
    p = add_verb(
        domain,
        common,
        "suspend",
        domain_suspend,
        "suspend a domain and revoke access to all its mailboxes",
        mutates=True,
    )
    p.add_argument("name")
    p.add_argument("--reason", required=True)


def _mailbox_detail(ctx: Context, address: str, message: str) -> Detail:
    from admin.cli_mailbox import _mailbox_row  # cli_mailbox registers this module

    with ctx.session() as session:
        row = _mailbox_row(session, d.get_mailbox(session, address))
    return Detail(row, message=message)


def mailbox_suspend(ctx: Context, args: argparse.Namespace) -> Detail:
    with ctx.session() as session:
        mailbox = d.get_mailbox(session, args.address)
        off.suspend_mailbox(
            session, operator=acting(ctx, session), now=ctx.now, mailbox=mailbox, reason=args.reason
        )
    return _mailbox_detail(
        ctx,
        args.address,
        f"mailbox {args.address} is now suspended; its sessions and app passwords are revoked",
    )


def mailbox_transfer(ctx: Context, args: argparse.Namespace) -> Detail:
    with ctx.session() as session:
        owner = resolve_owner(session, args)
        if owner is None:
            raise CLIError("name the new owner with --owner PERSON or --owner-role ROLE")
        off.transfer_mailbox(
            session,
            operator=acting(ctx, session),
            now=ctx.now,
            mailbox=d.get_mailbox(session, args.address),
            owner=owner,
            reason=args.reason,
            keep_credentials=args.keep_credentials,
        )
    after = (
        "credentials kept"
        if args.keep_credentials
        else "its credentials are revoked; the new owner gets access through a helpdesk reset"
    )
    return _mailbox_detail(ctx, args.address, f"mailbox {args.address} transferred; {after}")


def mailbox_export(ctx: Context, args: argparse.Namespace) -> Detail:
    settings = ctx.settings()
    if not ctx.operator:
        raise CLIError("name the acting operator with --as USERNAME")
    row = off.export_mailbox(
        ctx.database(),
        username=ctx.operator,
        now=ctx.now,
        address=args.address,
        mail_root=settings.mail_root,
        export_root=ctx.data_dir / "exports",
        fmt=args.format,
    )
    view = {
        "mailbox": row.address,
        "format": row.format,
        "path": row.path,
        "size_bytes": row.size,
        "sha256": row.sha256,
    }
    return Detail(view, message=f"exported {row.address} ({row.format}) to {row.path}")


def mailbox_delete(ctx: Context, args: argparse.Namespace) -> Detail:
    with ctx.session() as session:
        row = off.schedule_deletion(
            session,
            operator=acting(ctx, session),
            now=ctx.now,
            mailbox=d.get_mailbox(session, args.address),
            reason=args.reason,
            grace_days=args.grace_days,
            without_export=args.without_export,
        )
        view = off.deletion_view(row)
    return Detail(
        view,
        message=f"mailbox {args.address} is suspended and will be deleted after "
        f"{row.purge_after:%Y-%m-%d %H:%M} UTC (mailbox restore cancels)",
    )


def mailbox_restore(ctx: Context, args: argparse.Namespace) -> Detail:
    with ctx.session() as session:
        row = off.cancel_deletion(
            session,
            operator=acting(ctx, session),
            now=ctx.now,
            mailbox=d.get_mailbox(session, args.address),
            reason=args.reason,
        )
        view = off.deletion_view(row)
    return Detail(
        view,
        message=f"the deletion of {args.address} is cancelled; it stays suspended "
        "until `mailbox activate`",
    )


def mailbox_purge(ctx: Context, args: argparse.Namespace) -> Listing:
    settings = ctx.settings()
    with ctx.session() as session:
        operator = acting(ctx, session)
        from admin.services.identity import require

        require(session, operator, ("owner",), None, "purging deleted mailboxes")
        purged = off.purge_due(
            session,
            actor=f"operator:{operator.username}",
            now=ctx.now,
            mail_root=settings.mail_root,
        )
    off.remove_purged_files(purged)  # only now that the rows are gone for good
    return Listing(
        [{"mailbox": p.address, "maildir": str(p.maildir)} for p in purged],
        empty="nothing is due for deletion",
    )


def domain_suspend(ctx: Context, args: argparse.Namespace) -> Detail:
    with ctx.session() as session:
        domain = d.get_domain(session, args.name)
        addresses = off.suspend_domain(
            session, operator=acting(ctx, session), now=ctx.now, domain=domain, reason=args.reason
        )
        view = {"domain": domain.name, "state": domain.state, "mailboxes": addresses}
    return Detail(
        view,
        message=f"domain {domain.name} is now suspended; access to "
        f"{len(addresses)} mailbox(es) revoked",
    )
