"""Offboarding: suspend, transfer ownership, export, delete with a grace period.

- Suspending a mailbox refuses its logins everywhere (the IMAP and SMTP
  servers check the state after the password), ends its web sessions and
  revokes its app passwords. Mail to a suspended mailbox is refused by the
  delivery path (``policy.routing``, reason ``mailbox-suspended``).
- Suspending a domain (client offboarding) does that for every mailbox of the
  domain and withdraws its pending invites.
- Transferring ownership names another person or role; the old owner's
  credentials (password, recovery codes and endpoints, app passwords,
  sessions) are revoked unless ``keep_credentials`` says the same people go
  on using it. The new owner then gets access through a helpdesk reset.
- Export writes the mailbox's Maildir++ tree as a tarball, or one mbox per
  folder in a tarball, into ``<data>/exports/`` (mode 0600) and records its
  size and SHA-256.
- Deleting schedules a purge after a grace period (default 30 days) and
  suspends the mailbox now; it needs an export first unless told otherwise.
  Within the grace period it can be cancelled. ``purge_due`` then removes the
  files and every row of the mailbox; the audit log keeps each row's last
  state.
"""

from __future__ import annotations

import hashlib
import io
import mailbox as stdlib_mailbox
import os
import secrets
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from admin.services import NotFound, ServiceError
from admin.services import directory as d
from admin.services.identity import (
    actor_of,
    address_of,
    mailbox_target,
    require,
    revoke_access,
    set_mailbox_password,
)
from policy.identity import (
    DEFAULT_DELETE_GRACE_DAYS,
    MAX_DELETE_GRACE_DAYS,
    MIN_DELETE_GRACE_DAYS,
    OFFBOARD_ROLES,
    SUSPEND_ROLES,
)
from policy.routing import DomainState, MailboxState
from storage import audit, maildir, quota
from storage.db import Database
from storage.models import (
    AppPassword,
    Delegation,
    Domain,
    ForwardingRule,
    Mailbox,
    MailFolder,
    MailMessage,
    Operator,
)
from storage.models_identity import (
    Invite,
    MailboxCredential,
    MailboxDeletion,
    MailboxExport,
    MailboxSession,
    RecoveryCode,
    RecoveryEndpoint,
    ResetRequest,
)

EXPORT_FORMATS = ("maildir", "mbox")


def suspend_mailbox(
    session: Session, *, operator: Operator, now: datetime, mailbox: Mailbox, reason: str
) -> Mailbox:
    require(session, operator, SUSPEND_ROLES, mailbox.domain_id, "suspending a mailbox")
    # Access first, the state last: "what changed last" shows the suspension.
    revoke_access(
        session, actor=actor_of(operator), now=now, mailbox=mailbox, reason=f"suspended: {reason}"
    )
    d.set_mailbox_state(
        session,
        actor=actor_of(operator),
        now=now,
        mailbox=mailbox,
        state=MailboxState.SUSPENDED,
        reason=reason,
    )
    return mailbox


def suspend_domain(
    session: Session, *, operator: Operator, now: datetime, domain: Domain, reason: str
) -> list[str]:
    """Suspend a domain and revoke access to every mailbox on it; returns their addresses."""
    require(session, operator, OFFBOARD_ROLES, domain.id, "suspending a domain")
    actor = actor_of(operator)
    d.set_domain_state(
        session, actor=actor, now=now, domain=domain, state=DomainState.SUSPENDED, reason=reason
    )
    addresses = []
    for mailbox in session.scalars(select(Mailbox).where(Mailbox.domain_id == domain.id)):
        revoke_access(
            session, actor=actor, now=now, mailbox=mailbox, reason=f"domain suspended: {reason}"
        )
        addresses.append(address_of(mailbox))
    withdrawn = session.execute(
        update(Invite)
        .where(
            Invite.domain_id == domain.id,
            Invite.used_at.is_(None),
            Invite.revoked_at.is_(None),
            Invite.expires_at > now,
        )
        .values(revoked_at=now)
    ).rowcount  # type: ignore[attr-defined]
    if withdrawn:
        audit.record(
            session,
            actor=actor,
            action="invite.revoke-domain",
            target=f"domain:{domain.name}",
            now=now,
            after={"invites_revoked": withdrawn},
            reason=reason,
        )
    return addresses


def transfer_mailbox(
    session: Session,
    *,
    operator: Operator,
    now: datetime,
    mailbox: Mailbox,
    owner: d.Owner,
    reason: str,
    keep_credentials: bool = False,
) -> Mailbox:
    require(session, operator, OFFBOARD_ROLES, mailbox.domain_id, "transferring a mailbox")
    if not reason.strip():
        raise ServiceError("a reason is required to transfer a mailbox")
    if (owner.person_id, owner.role_id) == (mailbox.owner_person_id, mailbox.owner_role_id):
        raise ServiceError("the mailbox already has that owner")
    actor = actor_of(operator)
    before = audit.snapshot(mailbox)
    mailbox.owner_person_id, mailbox.owner_role_id = owner.person_id, owner.role_id
    audit.record(
        session,
        actor=actor,
        action="mailbox.transfer",
        target=mailbox_target(mailbox),
        now=now,
        before=before,
        after=audit.snapshot(mailbox),
        reason=reason,
    )
    if not keep_credentials:
        why = f"ownership transferred: {reason}"
        set_mailbox_password(
            session,
            actor=actor,
            now=now,
            mailbox=mailbox,
            password_hash=None,
            action="mailbox.password.clear",
            reason=why,
        )
        revoke_access(session, actor=actor, now=now, mailbox=mailbox, reason=why)
        session.execute(
            update(RecoveryCode)
            .where(
                RecoveryCode.mailbox_id == mailbox.id,
                RecoveryCode.used_at.is_(None),
                RecoveryCode.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )
        session.execute(
            update(RecoveryEndpoint)
            .where(RecoveryEndpoint.mailbox_id == mailbox.id, RecoveryEndpoint.removed_at.is_(None))
            .values(removed_at=now, verification_hash=None)
        )
    return mailbox


# -- export -----------------------------------------------------------------------------


def _folders(root: Path) -> list[tuple[str, Path]]:
    """(IMAP-ish name, directory) of INBOX and each Maildir++ folder under ``root``."""
    found = [("INBOX", root)] if (root / "cur").is_dir() or (root / "new").is_dir() else []
    if root.is_dir():
        for child in sorted(root.iterdir()):
            if child.is_dir() and child.name.startswith(".") and (child / "cur").is_dir():
                found.append((child.name[1:], child))
    return found


def _tar_maildir(root: Path, out: io.BufferedWriter, arcname: str) -> None:
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        if root.exists():
            tar.add(root, arcname=arcname)


def _tar_mbox(root: Path, out: io.BufferedWriter, arcname: str) -> None:
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, folder in _folders(root):
            target = Path(tmp) / f"{name}.mbox"
            box = stdlib_mailbox.mbox(target, create=True)
            try:
                box.lock()
                for path in maildir.Maildir(folder).messages():
                    box.add(stdlib_mailbox.mboxMessage(path.read_bytes()))
                box.flush()
            finally:
                box.unlock()
                box.close()
            tar.add(target, arcname=f"{arcname}/{name}.mbox")


@dataclass(frozen=True, slots=True)
class ExportPlan:
    mailbox_id: int
    address: str
    fmt: str
    maildir: Path
    path: Path


def plan_export(
    session: Session,
    *,
    operator: Operator,
    now: datetime,
    mailbox: Mailbox,
    mail_root: Path,
    export_root: Path,
    fmt: str = "maildir",
) -> ExportPlan:
    require(session, operator, OFFBOARD_ROLES, mailbox.domain_id, "exporting a mailbox")
    if fmt not in EXPORT_FORMATS:
        raise ServiceError(f"the export format is one of {', '.join(EXPORT_FORMATS)}")
    address = address_of(mailbox)
    root = maildir.mailbox_path(mail_root, mailbox.domain.name, mailbox.local_part)
    path = export_root / f"{address}-{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}-{fmt}.tar.gz"
    return ExportPlan(mailbox.id, address, fmt, root, path)


def write_export(plan: ExportPlan) -> tuple[int, str]:
    """Write the archive (blocking file work, outside any transaction); (size, SHA-256)."""
    plan.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(plan.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            writer = _tar_mbox if plan.fmt == "mbox" else _tar_maildir
            writer(plan.maildir, out, plan.address)  # type: ignore[arg-type]
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        plan.path.unlink(missing_ok=True)
        raise
    digest = hashlib.sha256()
    with plan.path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return plan.path.stat().st_size, digest.hexdigest()


def record_export(
    session: Session,
    *,
    operator: Operator,
    now: datetime,
    plan: ExportPlan,
    size: int,
    sha256: str,
) -> MailboxExport:
    row = MailboxExport(
        mailbox_id=plan.mailbox_id,
        address=plan.address,
        format=plan.fmt,
        path=str(plan.path),
        size=size,
        sha256=sha256,
        created_by=actor_of(operator),
        created_at=now,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor_of(operator),
        action="mailbox.export",
        target=f"mailbox:{plan.address}",
        now=now,
        after=audit.snapshot(row),
    )
    return row


def export_mailbox(
    db: Database,
    *,
    username: str,
    now: datetime,
    address: str,
    mail_root: Path,
    export_root: Path,
    fmt: str = "maildir",
) -> MailboxExport:
    """Plan, write and record an export; the archive is written between two short transactions
    so that a large mailbox never holds the database's write lock."""
    with db.session() as session:
        operator = d.find_operator(session, username)
        mailbox = d.get_mailbox(session, address)
        plan = plan_export(
            session,
            operator=operator,
            now=now,
            mailbox=mailbox,
            mail_root=mail_root,
            export_root=export_root,
            fmt=fmt,
        )
    size, sha256 = write_export(plan)
    try:
        with db.session() as session:
            operator = d.find_operator(session, username)
            return record_export(
                session, operator=operator, now=now, plan=plan, size=size, sha256=sha256
            )
    except BaseException:
        plan.path.unlink(missing_ok=True)
        raise


# -- deletion with a grace period ---------------------------------------------------------


def schedule_deletion(
    session: Session,
    *,
    operator: Operator,
    now: datetime,
    mailbox: Mailbox,
    reason: str,
    grace_days: int = DEFAULT_DELETE_GRACE_DAYS,
    without_export: bool = False,
) -> MailboxDeletion:
    require(session, operator, OFFBOARD_ROLES, mailbox.domain_id, "deleting a mailbox")
    if not reason.strip():
        raise ServiceError("a reason is required to delete a mailbox")
    if not MIN_DELETE_GRACE_DAYS <= grace_days <= MAX_DELETE_GRACE_DAYS:
        raise ServiceError(
            f"the grace period is {MIN_DELETE_GRACE_DAYS}-{MAX_DELETE_GRACE_DAYS} days"
        )
    if pending_deletion(session, mailbox.id) is not None:
        raise ServiceError("this mailbox is already scheduled for deletion")
    exported = session.scalars(
        select(MailboxExport.id).where(MailboxExport.mailbox_id == mailbox.id)
    ).first()
    if exported is None and not without_export:
        raise ServiceError(
            "export the mailbox first (mailbox export), or confirm that its mail "
            "may be lost without an export"
        )
    if mailbox.state != MailboxState.SUSPENDED:
        suspend_mailbox(
            session,
            operator=operator,
            now=now,
            mailbox=mailbox,
            reason=f"scheduled for deletion: {reason}",
        )
    row = MailboxDeletion(
        mailbox_id=mailbox.id,
        address=address_of(mailbox),
        reason=reason,
        requested_by=actor_of(operator),
        requested_at=now,
        purge_after=now + timedelta(days=grace_days),
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor_of(operator),
        action="mailbox.delete-scheduled",
        target=mailbox_target(mailbox),
        now=now,
        after=audit.snapshot(row),
        reason=reason,
    )
    return row


def pending_deletion(session: Session, mailbox_id: int) -> MailboxDeletion | None:
    return session.scalars(
        select(MailboxDeletion).where(
            MailboxDeletion.mailbox_id == mailbox_id,
            MailboxDeletion.cancelled_at.is_(None),
            MailboxDeletion.purged_at.is_(None),
        )
    ).first()


def cancel_deletion(
    session: Session, *, operator: Operator, now: datetime, mailbox: Mailbox, reason: str
) -> MailboxDeletion:
    require(session, operator, OFFBOARD_ROLES, mailbox.domain_id, "cancelling a deletion")
    row = pending_deletion(session, mailbox.id)
    if row is None:
        raise NotFound("this mailbox is not scheduled for deletion")
    before = audit.snapshot(row)
    row.cancelled_at, row.cancelled_by = now, actor_of(operator)
    audit.record(
        session,
        actor=actor_of(operator),
        action="mailbox.delete-cancelled",
        target=mailbox_target(mailbox),
        now=now,
        before=before,
        after=audit.snapshot(row),
        reason=reason,
    )
    return row  # the mailbox stays suspended until someone activates it


@dataclass(frozen=True, slots=True)
class Purged:
    address: str
    maildir: Path  # removed by ``remove_purged_files`` once the transaction committed


def purge_due(session: Session, *, actor: str, now: datetime, mail_root: Path) -> list[Purged]:
    """Delete the rows of every mailbox whose grace period is over (files: after commit)."""
    purged = []
    due = session.scalars(
        select(MailboxDeletion).where(
            MailboxDeletion.cancelled_at.is_(None),
            MailboxDeletion.purged_at.is_(None),
            MailboxDeletion.purge_after <= now,
        )
    ).all()
    for row in due:
        mailbox = session.get(Mailbox, row.mailbox_id)
        if mailbox is not None:
            root = maildir.mailbox_path(mail_root, mailbox.domain.name, mailbox.local_part)
            _purge(session, actor=actor, now=now, mailbox=mailbox)
            purged.append(Purged(row.address, root))
        row.purged_at = now
    return purged


def remove_purged_files(purged: list[Purged]) -> None:
    """Remove the Maildirs of purged mailboxes; only after their rows are gone for good."""
    for item in purged:
        if item.maildir.exists():
            shutil.rmtree(item.maildir)


def _purge(session: Session, *, actor: str, now: datetime, mailbox: Mailbox) -> None:
    target = mailbox_target(mailbox)
    for model in (ForwardingRule, Delegation):
        for rule in session.scalars(select(model).where(model.mailbox_id == mailbox.id)):
            audit.record(
                session,
                actor=actor,
                action=f"{model.__tablename__}.purge",
                target=target,
                now=now,
                before=audit.snapshot(rule),
            )
            session.delete(rule)
    delegated = select(Delegation).where(Delegation.delegate_mailbox_id == mailbox.id)
    for rule in session.scalars(delegated):
        audit.record(
            session,
            actor=actor,
            action="delegation.purge",
            target=target,
            now=now,
            before=audit.snapshot(rule),
        )
        session.delete(rule)
    if mailbox.used_bytes:
        quota.charge(session, {mailbox.id: -mailbox.used_bytes})  # give the pool its bytes back
    folders = select(MailFolder.id).where(MailFolder.mailbox_id == mailbox.id)
    session.execute(delete(MailMessage).where(MailMessage.folder_id.in_(folders)))
    session.execute(delete(MailFolder).where(MailFolder.mailbox_id == mailbox.id))
    for model in (
        AppPassword,
        RecoveryCode,
        RecoveryEndpoint,
        MailboxSession,
        ResetRequest,
        MailboxCredential,
    ):
        session.execute(delete(model).where(model.mailbox_id == mailbox.id))
    session.execute(update(Invite).where(Invite.mailbox_id == mailbox.id).values(mailbox_id=None))
    session.flush()
    session.refresh(mailbox)
    before = audit.snapshot(mailbox)
    session.delete(mailbox)
    session.flush()
    audit.record(
        session, actor=actor, action="mailbox.purge", target=target, now=now, before=before
    )


def deletion_view(row: MailboxDeletion) -> dict[str, Any]:
    state = "purged" if row.purged_at else "cancelled" if row.cancelled_at else "scheduled"
    return {
        "id": row.id,
        "mailbox": row.address,
        "state": state,
        "reason": row.reason,
        "requested_by": row.requested_by,
        "requested_at": row.requested_at,
        "purge_after": row.purge_after,
    }
