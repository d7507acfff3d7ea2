"""Self-service for mailbox owners (hard rule 3): sign-in, password change, resets.

Resets are user-driven by default: the owner proves possession of a recovery
code (burned on use) or of the current password and sets a new password. A
reset with a recovery code ends every session and revokes the app passwords,
because it is what someone does who lost control of the account; a change
with the current password ends the other sessions and keeps app passwords.

Failures say the same thing whether the address exists or not, and an
unknown address costs one argon2 verification like a known one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from admin.services import ServiceError
from admin.services.identity import (
    IdentityEnv,
    address_of,
    check_new_password,
    revoke_access,
    set_mailbox_password,
)
from admin.services.recovery import burn_code, issue_codes, remaining_codes
from policy.addresses import Address, AddressError
from policy.identity import ResetState, needs_new_recovery_codes
from policy.routing import DomainState, MailboxState
from storage import audit
from storage.directory import find_mailbox
from storage.models import Domain, Mailbox
from storage.models_identity import MailboxSession, ResetRequest
from storage.secrets import dummy_hash, hash_password, new_token, token_digest, verify_password

MAILBOX_SESSION_HOURS = 8
BAD_PROOF = "The address, recovery code or password is not right."
BAD_LOGIN = "The address or password is not right."


class ProofRefused(ServiceError):
    """The recovery code or password did not verify (deliberately vague)."""


@dataclass(frozen=True, slots=True)
class SelfReset:
    mailbox: Mailbox
    address: str
    remaining_codes: int

    @property
    def needs_new_codes(self) -> bool:
        return needs_new_recovery_codes(self.remaining_codes)


@dataclass(frozen=True, slots=True)
class OpenedSession:
    row: MailboxSession
    token: str  # goes into the cookie only


def usable_mailbox(session: Session, address: str) -> Mailbox | None:
    """The mailbox behind ``address`` if it may sign in (active, domain not suspended)."""
    try:
        parsed = Address.parse(address)
    except AddressError:
        return None
    mailbox = find_mailbox(session, parsed)
    if mailbox is None or mailbox.state != MailboxState.ACTIVE:
        return None
    domain = session.get(Domain, mailbox.domain_id)
    if domain is None or domain.state == DomainState.SUSPENDED:
        return None
    return mailbox


def open_session(
    session: Session, *, mailbox: Mailbox, now: datetime, client: str | None
) -> OpenedSession:
    token = new_token()
    row = MailboxSession(
        mailbox_id=mailbox.id,
        token_sha256=token_digest(token),
        created_at=now,
        expires_at=now + timedelta(hours=MAILBOX_SESSION_HOURS),
        client=(client or "")[:64] or None,
    )
    session.add(row)
    session.flush()
    return OpenedSession(row, token)


def login(
    session: Session, *, address: str, password: str, now: datetime, client: str | None
) -> OpenedSession:
    mailbox = usable_mailbox(session, address)
    if mailbox is None or not mailbox.password_hash:
        verify_password(dummy_hash(), password)
        raise ProofRefused(BAD_LOGIN)
    if not verify_password(mailbox.password_hash, password):
        raise ProofRefused(BAD_LOGIN)
    opened = open_session(session, mailbox=mailbox, now=now, client=client)
    audit.record(
        session,
        actor=f"mailbox:{address_of(mailbox)}",
        action="mailbox.login",
        target=f"mailbox:{address_of(mailbox)}",
        now=now,
        after={"session": opened.row.id, "client": opened.row.client},
    )
    return opened


def session_mailbox(
    session: Session, token: str, now: datetime
) -> tuple[Mailbox, MailboxSession] | None:
    if not token or len(token) > 128:
        return None
    row = session.scalars(
        select(MailboxSession).where(MailboxSession.token_sha256 == token_digest(token))
    ).first()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    mailbox = session.get(Mailbox, row.mailbox_id)
    if mailbox is None or usable_mailbox(session, address_of(mailbox)) is None:
        return None
    return mailbox, row


def logout(session: Session, token: str, now: datetime) -> None:
    session.execute(
        update(MailboxSession)
        .where(
            MailboxSession.token_sha256 == token_digest(token), MailboxSession.revoked_at.is_(None)
        )
        .values(revoked_at=now)
    )


def _close_pending_resets(session: Session, *, actor: str, now: datetime, mailbox: Mailbox) -> None:
    """A helpdesk reset still waiting for the owner is moot once the owner has a new password."""
    for row in session.scalars(
        select(ResetRequest).where(
            ResetRequest.mailbox_id == mailbox.id,
            ResetRequest.state.in_(
                [ResetState.REQUESTED, ResetState.APPROVED, ResetState.EXECUTED]
            ),
        )
    ):
        before = audit.snapshot(row)
        row.state = ResetState.CANCELLED
        row.cancelled_by = actor
        row.cancelled_at = now
        audit.record(
            session,
            actor=actor,
            action="reset.cancel",
            target=f"reset:{row.id}",
            now=now,
            before=before,
            after=audit.snapshot(row),
            reason="the owner set a new password",
        )


def self_service_reset(
    session: Session,
    env: IdentityEnv,
    *,
    address: str,
    new_password: str,
    now: datetime,
    recovery_code: str | None = None,
    current_password: str | None = None,
) -> SelfReset:
    """Set a new password with a recovery code or the current password."""
    if (recovery_code is None) == (current_password is None):
        raise ServiceError("give either a recovery code or the current password")
    mailbox = usable_mailbox(session, address)
    if mailbox is None:
        verify_password(dummy_hash(), recovery_code or current_password or "")
        raise ProofRefused(BAD_PROOF)
    addr = address_of(mailbox)
    # The new password is checked before the proof is spent: a refused
    # password must not cost the owner a recovery code.
    check_new_password(env, new_password, addr)
    actor = f"mailbox:{addr}"
    if recovery_code is not None:
        if not burn_code(session, actor=actor, now=now, mailbox=mailbox, code=recovery_code):
            raise ProofRefused(BAD_PROOF)
        how = "recovery code"
    else:
        if not verify_password(mailbox.password_hash, current_password or ""):
            raise ProofRefused(BAD_PROOF)
        how = "current password"
    set_mailbox_password(
        session,
        actor=actor,
        now=now,
        mailbox=mailbox,
        password_hash=hash_password(new_password),
        action="mailbox.password.self-reset",
        reason=f"proved with {how}",
    )
    revoke_access(
        session,
        actor=actor,
        now=now,
        mailbox=mailbox,
        reason=f"self-service reset with {how}",
        app_passwords=recovery_code is not None,
    )
    _close_pending_resets(session, actor=actor, now=now, mailbox=mailbox)
    return SelfReset(mailbox, addr, remaining_codes(session, mailbox.id))


def change_password(
    session: Session,
    env: IdentityEnv,
    *,
    mailbox: Mailbox,
    current_password: str,
    new_password: str,
    now: datetime,
    keep_session_id: int | None,
) -> None:
    addr = address_of(mailbox)
    if not verify_password(mailbox.password_hash, current_password):
        raise ProofRefused("The current password is not right.")
    check_new_password(env, new_password, addr)
    actor = f"mailbox:{addr}"
    set_mailbox_password(
        session,
        actor=actor,
        now=now,
        mailbox=mailbox,
        password_hash=hash_password(new_password),
        action="mailbox.password.change",
    )
    revoke_access(
        session,
        actor=actor,
        now=now,
        mailbox=mailbox,
        reason="password changed",
        app_passwords=False,
        keep_session_id=keep_session_id,
    )


def regenerate_codes(session: Session, *, mailbox: Mailbox, now: datetime) -> list[str]:
    return issue_codes(session, actor=f"mailbox:{address_of(mailbox)}", now=now, mailbox=mailbox)
