"""``mailward invite|reset|app-password|identity`` and the operator account verbs.

A thin layer over the identity services, like every command module: the
acting operator (``--as``) is resolved inside the transaction and the
services check its roles and write the audit entries. Nothing here prints a
mailbox owner's secret: an invite's link goes to the owner through the
notification channels (the development file sink writes ``<data>/outbox/``),
a reset's temporary credential likewise. The one secret printed is a new
API token, to the operator who asked for it for themselves.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from admin.cli_base import Context, Subcommands, add_noun, add_verb
from admin.cli_output import CLIError, Detail, Listing
from admin.notify import NotifySettings, build_notifier
from admin.services import app_passwords as ap
from admin.services import directory as d
from admin.services import invites, resets
from admin.services import operators as ops
from admin.services.identity import IdentityEnv, identity_policy, set_identity_policy
from admin.services.totp import SecretBox
from admin.web.context import public_url
from storage.models import Operator


def identity_env(ctx: Context) -> IdentityEnv:
    """Notifier, link base and TOTP key for the data folder (the file sink by default)."""
    settings = ctx.settings()
    listen = settings.listen
    notifier = build_notifier(NotifySettings(), data_dir=ctx.data_dir, hostname=settings.hostname)
    return IdentityEnv(
        notifier=notifier,
        public_url=public_url(listen.host, listen.admin_port),
        box=SecretBox.from_data_dir(ctx.data_dir),
    )


def acting(ctx: Context, session: Session) -> Operator:
    if not ctx.operator:
        raise CLIError("name the acting operator with --as USERNAME")
    return d.find_operator(session, ctx.operator)


def _sent(deliveries: list[Any]) -> str:
    return ", ".join(f"{x.channel} ({x.reference})" for x in deliveries)


def register(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    invite = add_noun(commands, common, "invite", "one-time invites: the owner sets up the mailbox")
    p = add_verb(
        invite, common, "create", invite_create, "invite an owner to set up a mailbox", mutates=True
    )
    p.add_argument("domain")
    p.add_argument("--owner", required=True, metavar="PERSON", help="the owner (id or name)")
    p.add_argument("--local-part", help="a suggested local part (the owner may change it)")
    p.add_argument("--days", type=int, help="days until the link expires (default 7)")
    p = add_verb(invite, common, "bulk", invite_bulk, "invites from a CSV file", mutates=True)
    p.add_argument(
        "file",
        type=Path,
        help="columns: domain, owner[, local_part, days, owner_email, owner_phone]",
    )
    p = add_verb(invite, common, "list", invite_list, "list invites and their state")
    p.add_argument("--domain")
    p.add_argument("--pending", action="store_true", help="only invites still usable")
    p = add_verb(invite, common, "revoke", invite_revoke, "withdraw a pending invite", mutates=True)
    p.add_argument("id", type=int)
    p.add_argument("--reason")

    reset = add_noun(commands, common, "reset", "helpdesk resets: requested, approved, executed")
    p = add_verb(reset, common, "request", reset_request, "open a reset request", mutates=True)
    p.add_argument("mailbox")
    p.add_argument("--reason", required=True)
    for verb, handler, help_text in (
        ("approve", reset_approve, "approve another operator's request (approver role)"),
        ("execute", reset_execute, "send the owner a one-time credential"),
    ):
        p = add_verb(reset, common, verb, handler, help_text, mutates=True)
        p.add_argument("id", type=int)
    p = add_verb(reset, common, "cancel", reset_cancel, "cancel a reset request", mutates=True)
    p.add_argument("id", type=int)
    p.add_argument("--reason", required=True)
    p = add_verb(reset, common, "list", reset_list, "list reset requests")
    p.add_argument("--open", action="store_true", help="only requests still in progress")

    app = add_noun(commands, common, "app-password", "app passwords of mailboxes")
    p = add_verb(app, common, "list", app_password_list, "list app passwords (never the secret)")
    p.add_argument("mailbox", nargs="?")
    p.add_argument("--active", action="store_true")
    p = add_verb(app, common, "revoke", app_password_revoke, "revoke an app password", mutates=True)
    p.add_argument("id", type=int)
    p.add_argument("--reason", required=True)

    policy = add_noun(commands, common, "identity", "the organization's identity policy")
    add_verb(policy, common, "show", identity_show, "show the identity policy")
    p = add_verb(policy, common, "set", identity_set, "change the identity policy", mutates=True)
    p.add_argument(
        "--invite-link-to-creator",
        choices=("on", "off"),
        help="whether the operator creating an invite also sees its link",
    )
    p.add_argument("--require-totp", choices=("on", "off"), help="operators must use TOTP")


def register_operator_verbs(operator: Subcommands, common: argparse.ArgumentParser) -> None:
    """Verbs added to ``mailward operator`` (registered by ``cli_people``)."""
    p = add_verb(
        operator,
        common,
        "setup-link",
        operator_setup_link,
        "send an operator a one-time link to set their password",
        mutates=True,
    )
    p.add_argument("username")
    p = add_verb(operator, common, "sessions", operator_sessions, "list sign-in sessions")
    p.add_argument("username", nargs="?", help="whose (default: the --as operator)")
    p = add_verb(
        operator,
        common,
        "revoke-session",
        operator_revoke_session,
        "end a sign-in session",
        mutates=True,
    )
    p.add_argument("id", type=int)
    p = add_verb(
        operator,
        common,
        "api-token",
        operator_api_token,
        "create an API token for the --as operator (shown once)",
        mutates=True,
    )
    p.add_argument("--name", required=True)
    p.add_argument("--days", type=int)


# -- invites -----------------------------------------------------------------------------


def invite_create(ctx: Context, args: argparse.Namespace) -> Detail:
    env = identity_env(ctx)
    with ctx.session() as session:
        issued = invites.create_invite(
            session,
            env,
            operator=acting(ctx, session),
            now=ctx.now,
            domain=d.get_domain(session, args.domain),
            owner=d.find_person(session, args.owner),
            local_part=args.local_part,
            days=args.days,
        )
        view = invites.invite_view(session, issued.invite, ctx.now)
    message = (
        f"invite #{view['id']} for {view['owner']} on {view['domain']} sent to "
        f"{view['sent_to']} via {_sent(issued.deliveries)}; expires {view['expires_at']:%Y-%m-%d}"
    )
    if issued.link:
        view["link"] = issued.link
    return Detail(view, message=message, lines=[f"link: {issued.link}"] if issued.link else [])


def invite_bulk(ctx: Context, args: argparse.Namespace) -> Listing:
    env = identity_env(ctx)
    try:
        with args.file.open(newline="", encoding="utf-8") as handle:
            rows = invites.read_bulk_file(handle)
    except OSError as exc:
        raise CLIError(f"cannot read {args.file}: {exc.strerror}") from exc
    with ctx.session() as session:
        issued = invites.bulk_invites(
            session, env, operator=acting(ctx, session), now=ctx.now, rows=rows
        )
        views = [invites.invite_view(session, i.invite, ctx.now) for i in issued]
    return Listing(
        views,
        columns=("id", "domain", "owner", "suggested_local_part", "sent_to", "expires_at"),
        empty="the file has no rows",
    )


def invite_list(ctx: Context, args: argparse.Namespace) -> Listing:
    with ctx.session() as session:
        domain = d.get_domain(session, args.domain) if args.domain else None
        rows = invites.list_invites(session, now=ctx.now, domain=domain, pending_only=args.pending)
    return Listing(
        rows,
        columns=(
            "id",
            "domain",
            "owner",
            "state",
            "sent_to",
            "created_by",
            "expires_at",
            "mailbox",
        ),
        empty="no invites",
    )


def invite_revoke(ctx: Context, args: argparse.Namespace) -> Detail:
    with ctx.session() as session:
        invite = invites.revoke_invite(
            session,
            operator=acting(ctx, session),
            now=ctx.now,
            invite_id=args.id,
            reason=args.reason,
        )
        view = invites.invite_view(session, invite, ctx.now)
    return Detail(view, message=f"invite #{args.id} is revoked; its link no longer works")


# -- helpdesk resets ------------------------------------------------------------------------


def _reset_detail(view: dict[str, Any], message: str) -> Detail:
    return Detail(view, message=message)


def reset_request(ctx: Context, args: argparse.Namespace) -> Detail:
    with ctx.session() as session:
        row = resets.request_reset(
            session,
            operator=acting(ctx, session),
            now=ctx.now,
            mailbox=d.get_mailbox(session, args.mailbox),
            reason=args.reason,
        )
        view = resets.reset_view(session, row, ctx.now)
    return _reset_detail(
        view,
        f"reset #{row.id} for {view['mailbox']} requested; another "
        f"operator with the approver role approves it: "
        f"mailward reset approve {row.id} --as USERNAME",
    )


def reset_approve(ctx: Context, args: argparse.Namespace) -> Detail:
    with ctx.session() as session:
        row = resets.approve_reset(
            session, operator=acting(ctx, session), now=ctx.now, request_id=args.id
        )
        view = resets.reset_view(session, row, ctx.now)
    return _reset_detail(view, f"reset #{row.id} approved by {row.approved_by}")


def reset_execute(ctx: Context, args: argparse.Namespace) -> Detail:
    env = identity_env(ctx)
    with ctx.session() as session:
        row = resets.execute_reset(
            session, env, operator=acting(ctx, session), now=ctx.now, request_id=args.id
        )
        view = resets.reset_view(session, row, ctx.now)
    return _reset_detail(
        view,
        f"reset #{row.id} executed: a one-time credential went to "
        f"{row.sent_to}, valid until {row.expires_at:%H:%M} UTC; "
        "no operator sees it",
    )


def reset_cancel(ctx: Context, args: argparse.Namespace) -> Detail:
    with ctx.session() as session:
        row = resets.cancel_reset(
            session,
            operator=acting(ctx, session),
            now=ctx.now,
            request_id=args.id,
            reason=args.reason,
        )
        view = resets.reset_view(session, row, ctx.now)
    return _reset_detail(view, f"reset #{row.id} cancelled")


def reset_list(ctx: Context, args: argparse.Namespace) -> Listing:
    with ctx.session() as session:
        rows = resets.list_resets(session, now=ctx.now, open_only=args.open)
    return Listing(
        rows,
        columns=(
            "id",
            "mailbox",
            "state",
            "requested_by",
            "approved_by",
            "executed_by",
            "requested_at",
            "expires_at",
        ),
        empty="no reset requests",
    )


# -- app passwords -------------------------------------------------------------------------


def app_password_list(ctx: Context, args: argparse.Namespace) -> Listing:
    with ctx.session() as session:
        mailbox = d.get_mailbox(session, args.mailbox) if args.mailbox else None
        rows = ap.list_app_passwords(session, now=ctx.now, mailbox=mailbox, active_only=args.active)
    return Listing(
        rows,
        columns=("id", "mailbox", "name", "scopes", "state", "created_at", "expires_at"),
        empty="no app passwords",
    )


def app_password_revoke(ctx: Context, args: argparse.Namespace) -> Detail:
    from admin.services.identity import actor_of, require
    from policy.identity import SUSPEND_ROLES
    from storage.models import AppPassword, Mailbox

    with ctx.session() as session:
        operator = acting(ctx, session)
        row = session.get(AppPassword, args.id)
        mailbox = session.get(Mailbox, row.mailbox_id) if row else None
        if row is None or mailbox is None:
            raise CLIError(f"no app password {args.id}")
        require(session, operator, SUSPEND_ROLES, mailbox.domain_id, "revoking an app password")
        ap.revoke_app_password(
            session,
            actor=actor_of(operator),
            now=ctx.now,
            app_password_id=args.id,
            reason=args.reason,
        )
        view = ap.view(row, mailbox, ctx.now)
    return Detail(
        view, message=f"app password #{args.id} ({view['name']}) of {view['mailbox']} is revoked"
    )


# -- identity policy -------------------------------------------------------------------------


def _policy_view(session: Session) -> dict[str, Any]:
    org = d.default_organization(session)
    row = identity_policy(session, org.id)
    return {
        "organization": org.name,
        "invite_link_to_creator": row.invite_link_to_creator,
        "require_totp": row.operator_totp_required,
    }


def identity_show(ctx: Context, args: argparse.Namespace) -> Detail:
    with ctx.session() as session:
        return Detail(_policy_view(session))


def identity_set(ctx: Context, args: argparse.Namespace) -> Detail:
    if args.invite_link_to_creator is None and args.require_totp is None:
        raise CLIError("nothing to change: give --invite-link-to-creator and/or --require-totp")
    with ctx.session() as session:
        set_identity_policy(
            session,
            operator=acting(ctx, session),
            now=ctx.now,
            organization=d.default_organization(session),
            invite_link_to_creator=None
            if args.invite_link_to_creator is None
            else args.invite_link_to_creator == "on",
            operator_totp_required=None if args.require_totp is None else args.require_totp == "on",
        )
        return Detail(_policy_view(session))


# -- operator accounts ------------------------------------------------------------------------


def operator_setup_link(ctx: Context, args: argparse.Namespace) -> Detail:
    env = identity_env(ctx)
    with ctx.session() as session:
        by = acting(ctx, session)
        operator = d.find_operator(session, args.username)
        link = ops.create_setup_link(
            session, env, actor=f"operator:{by.username}", now=ctx.now, operator=operator, by=by
        ).row
        person = operator.person
        view = {
            "username": operator.username,
            "sent_to": person.contact_email or person.contact_phone,
            "expires_at": link.expires_at,
        }
    return Detail(
        view,
        message=f"a one-time setup link for {args.username!r} went to "
        f"{view['sent_to']}; it expires {link.expires_at:%Y-%m-%d %H:%M} UTC",
    )


def operator_sessions(ctx: Context, args: argparse.Namespace) -> Listing:
    with ctx.session() as session:
        rows = ops.list_sessions(
            session, viewer=acting(ctx, session), now=ctx.now, username=args.username
        )
    return Listing(rows, empty="no active sessions")


def operator_revoke_session(ctx: Context, args: argparse.Namespace) -> Detail:
    with ctx.session() as session:
        operator = acting(ctx, session)
        row = ops.revoke_session(session, operator=operator, now=ctx.now, session_id=args.id)
        owner = session.get(Operator, row.operator_id)
        assert owner is not None
        view = ops.session_view(row, owner, ctx.now)
    return Detail(view, message=f"session #{args.id} of {view['operator']} is revoked")


def operator_api_token(ctx: Context, args: argparse.Namespace) -> Detail:
    with ctx.session() as session:
        created = ops.create_api_token(
            session, operator=acting(ctx, session), now=ctx.now, name=args.name, days=args.days
        )
        view = {
            "id": created.row.id,
            "name": created.row.name,
            "token": created.token,
            "expires_at": created.row.expires_at,
        }
    return Detail(
        view,
        message=f"API token #{view['id']} {args.name!r} (shown only now):",
        lines=[created.token],
    )
