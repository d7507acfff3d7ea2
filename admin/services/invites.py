"""Invite-based provisioning (hard rule 2): admins provision, owners set their secrets.

An operator with ``owner`` or ``domain-admin`` over the domain creates an
invite naming the owner; Mailward sends the one-time link straight to the
owner's out-of-band contact. The link is a 192-bit token stored only as its
SHA-256. Whether the creating operator may also see the link is an
organization policy, off by default (``IdentityPolicy``).

The invitee opens the link, picks the local part (``policy.identity``:
allowed characters, no reserved names, no collision with a mailbox or alias),
sets the password (length, not the address, not a common password) and is
shown ten recovery codes once. The mailbox is created at that moment, owned
by the invited person, in the same transaction that burns the invite: a link
is used exactly once, and a used, expired or revoked link says which.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from admin.notify import Delivery
from admin.services import NotFound, ServiceError
from admin.services import directory as d
from admin.services.identity import (
    IdentityEnv,
    LinkClosed,
    actor_of,
    address_of,
    check_new_password,
    identity_policy,
    notify,
    recipient,
    require,
    set_mailbox_password,
)
from admin.services.recovery import issue_codes
from policy.identity import (
    LINK_MESSAGES,
    MAX_INVITE_DAYS,
    PROVISION_ROLES,
    UNKNOWN_LINK_MESSAGE,
    LinkState,
    check_local_part,
    invite_expiry,
    link_state,
)
from policy.routing import DomainState
from storage import audit
from storage.models import Alias, Domain, Mailbox, Operator, Person
from storage.models_identity import Invite
from storage.secrets import hash_password, new_token, token_digest

INVITE_PATH = "/invite/"


@dataclass(frozen=True, slots=True)
class IssuedInvite:
    invite: Invite
    deliveries: list[Delivery]
    link: str | None  # only when the organization lets the creator see it


@dataclass(frozen=True, slots=True)
class AcceptedInvite:
    mailbox: Mailbox
    address: str
    recovery_codes: list[str]  # shown once to the invitee, never stored in clear


def invite_state(invite: Invite, now: datetime) -> LinkState:
    return link_state(
        expires_at=invite.expires_at, used_at=invite.used_at, revoked_at=invite.revoked_at, now=now
    )


def _taken(session: Session, domain: Domain, local_part: str) -> bool:
    mailbox = session.scalars(
        select(Mailbox.id).where(Mailbox.domain_id == domain.id, Mailbox.local_part == local_part)
    ).first()
    alias = session.scalars(
        select(Alias.id).where(Alias.domain_id == domain.id, Alias.local_part == local_part)
    ).first()
    return mailbox is not None or alias is not None


def check_choice(session: Session, domain: Domain, local_part: str) -> str:
    verdict = check_local_part(
        local_part, taken=_taken(session, domain, local_part.strip().lower())
    )
    if not verdict.allowed:
        raise ServiceError(str(verdict))
    return verdict.local_part


def create_invite(
    session: Session,
    env: IdentityEnv,
    *,
    operator: Operator | None,
    now: datetime,
    domain: Domain,
    owner: Person,
    local_part: str | None = None,
    days: int | None = None,
    system_actor: str | None = None,
) -> IssuedInvite:
    """Invite ``owner``; ``operator`` None with a ``system_actor`` only for ``mailward init``."""
    if operator is not None:
        require(session, operator, PROVISION_ROLES, domain.id, "inviting a mailbox owner")
        actor = actor_of(operator)
    elif system_actor and system_actor.startswith("system:"):
        actor = system_actor
    else:
        raise ServiceError("an invite is created by an operator")
    if domain.state == DomainState.SUSPENDED:
        raise ServiceError(f"domain {domain.name} is suspended; no new mailboxes")
    if owner.organization_id != domain.client.organization_id:
        raise ServiceError("the owner belongs to another organization")
    if not owner.contact_email and not owner.contact_phone:
        raise ServiceError(f"{owner.name} has no out-of-band contact to send the invite to")
    suggested = check_choice(session, domain, local_part) if local_part else None
    expires_at = invite_expiry(now, days)
    if expires_at is None:
        raise ServiceError(f"an invite lasts between 1 and {MAX_INVITE_DAYS} days")
    token = new_token()
    invite = Invite(
        token_sha256=token_digest(token),
        domain_id=domain.id,
        owner_person_id=owner.id,
        suggested_local_part=suggested,
        created_by=actor,
        created_at=now,
        expires_at=expires_at,
    )
    session.add(invite)
    session.flush()
    target = f"invite:{invite.id}"
    audit.record(
        session,
        actor=actor,
        action="invite.create",
        target=target,
        now=now,
        after=audit.snapshot(invite),
    )
    link = env.link(INVITE_PATH + token)
    body = (
        f"Hello {owner.name},\n\n"
        f"A mailbox on {domain.name} is ready for you to set up. Open this link before "
        f"{expires_at:%Y-%m-%d %H:%M} UTC:\n\n{link}\n\n"
        "You will choose your address, set your password and receive one-time recovery "
        "codes. Nobody else sees your password, including the administrators who invited "
        "you. The link works once.\n"
    )
    to = recipient(owner)
    deliveries = notify(
        session,
        env,
        actor=actor,
        now=now,
        kind="invite",
        to=to,
        subject=f"Set up your mailbox on {domain.name}",
        body=body,
        about=target,
    )
    invite.sent_to = str(to)
    policy = identity_policy(session, domain.client.organization_id)
    return IssuedInvite(invite, deliveries, link if policy.invite_link_to_creator else None)


def find_invite(session: Session, token: str, *, lock: bool = False) -> Invite | None:
    if not token or len(token) > 128:
        return None
    stmt = select(Invite).where(Invite.token_sha256 == token_digest(token))
    return session.scalars(stmt.with_for_update() if lock else stmt).first()


def open_invite(session: Session, token: str, now: datetime, *, lock: bool = False) -> Invite:
    """The pending invite behind a link, or ``LinkClosed`` saying why it cannot be used."""
    invite = find_invite(session, token, lock=lock)
    if invite is None:
        raise LinkClosed(UNKNOWN_LINK_MESSAGE)
    state = invite_state(invite, now)
    if state is not LinkState.PENDING:
        raise LinkClosed(LINK_MESSAGES[state])
    return invite


def accept_invite(
    session: Session,
    env: IdentityEnv,
    *,
    token: str,
    now: datetime,
    local_part: str,
    password: str,
) -> AcceptedInvite:
    invite = open_invite(session, token, now, lock=True)
    domain = session.get(Domain, invite.domain_id)
    assert domain is not None
    if domain.state == DomainState.SUSPENDED:
        raise ServiceError(f"domain {domain.name} is suspended; no new mailboxes")
    chosen = check_choice(session, domain, local_part)
    address = f"{chosen}@{domain.name}"
    check_new_password(env, password, address)
    actor = f"person:{invite.owner_person_id}"
    mailbox = d.create_mailbox(
        session,
        actor=actor,
        now=now,
        domain=domain,
        local_part=chosen,
        owner=d.Owner(person_id=invite.owner_person_id),
    )
    set_mailbox_password(
        session,
        actor=actor,
        now=now,
        mailbox=mailbox,
        password_hash=hash_password(password),
        action="mailbox.password.set",
    )
    codes = issue_codes(session, actor=actor, now=now, mailbox=mailbox)
    before = audit.snapshot(invite)
    invite.used_at = now
    invite.mailbox_id = mailbox.id
    audit.record(
        session,
        actor=actor,
        action="invite.accept",
        target=f"invite:{invite.id}",
        now=now,
        before=before,
        after=audit.snapshot(invite),
    )
    return AcceptedInvite(mailbox, address_of(mailbox), codes)


def revoke_invite(
    session: Session,
    *,
    operator: Operator,
    now: datetime,
    invite_id: int,
    reason: str | None = None,
) -> Invite:
    invite = session.get(Invite, invite_id)
    if invite is None:
        raise NotFound(f"no invite {invite_id}")
    require(session, operator, PROVISION_ROLES, invite.domain_id, "revoking an invite")
    state = invite_state(invite, now)
    if state is not LinkState.PENDING:
        raise ServiceError(f"invite {invite_id} is already {state.value}")
    before = audit.snapshot(invite)
    invite.revoked_at = now
    audit.record(
        session,
        actor=actor_of(operator),
        action="invite.revoke",
        target=f"invite:{invite.id}",
        now=now,
        before=before,
        after=audit.snapshot(invite),
        reason=reason,
    )
    return invite


def invite_view(session: Session, invite: Invite, now: datetime) -> dict[str, Any]:
    domain = session.get(Domain, invite.domain_id)
    owner = session.get(Person, invite.owner_person_id)
    mailbox = session.get(Mailbox, invite.mailbox_id) if invite.mailbox_id else None
    return {
        "id": invite.id,
        "domain": domain.name if domain else None,
        "owner": owner.name if owner else None,
        "suggested_local_part": invite.suggested_local_part,
        "state": invite_state(invite, now).value,
        "sent_to": invite.sent_to,
        "created_by": invite.created_by,
        "created_at": invite.created_at,
        "expires_at": invite.expires_at,
        "mailbox": address_of(mailbox) if mailbox else None,
    }


def list_invites(
    session: Session, *, now: datetime, domain: Domain | None = None, pending_only: bool = False
) -> list[dict[str, Any]]:
    stmt = select(Invite).order_by(Invite.id)
    if domain is not None:
        stmt = stmt.where(Invite.domain_id == domain.id)
    views = [invite_view(session, invite, now) for invite in session.scalars(stmt)]
    return [v for v in views if v["state"] == "pending"] if pending_only else views


BULK_COLUMNS = ("domain", "owner", "local_part", "days", "owner_email", "owner_phone")


def read_bulk_file(handle: TextIO) -> list[dict[str, str]]:
    """Rows of an invite CSV whose header names ``BULK_COLUMNS`` (domain and owner required)."""
    reader = csv.DictReader(handle)
    fields = set(reader.fieldnames or ())
    if not {"domain", "owner"} <= fields:
        raise ServiceError("the CSV needs a header with at least the columns domain and owner")
    unknown = fields - set(BULK_COLUMNS)
    if unknown:
        raise ServiceError(f"unknown CSV column(s): {', '.join(sorted(unknown))}")
    return [{k: (v or "").strip() for k, v in row.items()} for row in reader]


def bulk_invites(
    session: Session,
    env: IdentityEnv,
    *,
    operator: Operator,
    now: datetime,
    rows: list[dict[str, str]],
) -> list[IssuedInvite]:
    """One invite per row, all or nothing: a bad row refuses the whole file, naming its line."""
    issued: list[IssuedInvite] = []
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        try:
            domain = d.get_domain(session, row["domain"])
            owner = _bulk_owner(session, operator, now, domain, row)
            days = int(row["days"]) if row.get("days") else None
            issued.append(
                create_invite(
                    session,
                    env,
                    operator=operator,
                    now=now,
                    domain=domain,
                    owner=owner,
                    local_part=row.get("local_part") or None,
                    days=days,
                )
            )
        except (ServiceError, ValueError) as exc:
            raise ServiceError(f"line {line}: {exc}") from exc
    return issued


def _bulk_owner(
    session: Session, operator: Operator, now: datetime, domain: Domain, row: dict[str, str]
) -> Person:
    try:
        return d.find_person(session, row["owner"])
    except NotFound:
        if not (row.get("owner_email") or row.get("owner_phone")):
            raise
    return d.create_person(
        session,
        actor=actor_of(operator),
        now=now,
        organization=domain.client.organization,
        name=row["owner"],
        contact_email=row.get("owner_email") or None,
        contact_phone=row.get("owner_phone") or None,
    )
