"""What a mailbox can log in with, for one protocol: read for IMAP LOGIN and SMTP AUTH alike.

A login may use the mailbox's own password or an app password that is
neither revoked nor expired and carries the protocol's scope (``imap``,
``smtp``). Whether the account may log in at all (an active mailbox on a
domain that is not suspended) is read in the same short snapshot, so the
caller can check it only after the password verified and never tell a
guesser whether an account exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, select

from policy.addresses import Address, AddressError
from policy.routing import DomainState, MailboxState
from storage.db import Database
from storage.models import AppPassword, Domain, Mailbox
from storage.secrets import dummy_hash, verify_password
from storage.verified import VerifiedPasswords

_ACCOUNT_COLUMNS = (
    select(Mailbox.id, Mailbox.state, Mailbox.password_hash, Domain.state)
    .join(Domain, Mailbox.domain_id == Domain.id)
)
_BY_ADDRESS = _ACCOUNT_COLUMNS.where(Domain.name == bindparam("domain"),
                                     Mailbox.local_part == bindparam("local"))  # fmt: skip
_BY_ID = _ACCOUNT_COLUMNS.where(Mailbox.id == bindparam("mailbox_id"))
_APP_PASSWORDS = select(
    AppPassword.id, AppPassword.password_hash, AppPassword.scopes, AppPassword.expires_at
).where(AppPassword.mailbox_id == bindparam("mailbox_id"), AppPassword.revoked_at.is_(None)
        ).order_by(AppPassword.id)


# RFC 5321 §4.5.3.1.3: a path is at most 256 octets; longer names are not addresses.
MAX_USERNAME = 256


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a session logged in as (IMAP LOGIN, SMTP AUTH), and with what."""

    mailbox_id: int
    address: str
    credential: str  # "password" or "app-password:<id>"
    # A keyed digest of the stored hash the login verified against: a password
    # change or reset replaces that hash (``login_holds``).
    stamp: bytes = b""


@dataclass(frozen=True, slots=True)
class Account:
    """What one verification needs, read in one short transaction."""

    mailbox_id: int
    address: str
    active: bool  # an active mailbox on a domain that is not suspended
    password_hash: str | None
    app_passwords: tuple[tuple[int, str], ...]  # (id, hash) usable with the scope now

    def credentials(self) -> list[tuple[str, str]]:
        """What may log in: (credential label, stored argon2id hash)."""
        found = [("password", self.password_hash)] if self.password_hash else []
        return found + [(f"app-password:{i}", h) for i, h in self.app_passwords]


def account_by_address(db: Database, address: Address, scope: str, now: datetime
                       ) -> Account | None:  # fmt: skip
    return _read(db, _BY_ADDRESS, {"domain": address.domain, "local": address.local},
                 str(address), scope, now)  # fmt: skip


def account_by_id(db: Database, mailbox_id: int, address: str, scope: str, now: datetime
                  ) -> Account | None:  # fmt: skip
    return _read(db, _BY_ID, {"mailbox_id": mailbox_id}, address, scope, now)


def _read(db: Database, query: Select[Any], params: dict[str, Any], address: str, scope: str,
          now: datetime) -> Account | None:  # fmt: skip
    # A read snapshot: a login never waits for (or holds up) a writer.
    with db.reader() as session:
        conn = session.connection()
        row = conn.execute(query, params).first()
        if row is None:
            return None
        mailbox_id, state, password_hash, domain_state = row
        apps = conn.execute(_APP_PASSWORDS, {"mailbox_id": mailbox_id}).all()
    usable = tuple(
        (app_id, hashed)
        for app_id, hashed, scopes, expires_at in apps
        if scope in {s.strip() for s in scopes.split(",")}
        and (expires_at is None or expires_at > now)
    )
    active = state == MailboxState.ACTIVE and domain_state != DomainState.SUSPENDED
    return Account(mailbox_id, address, active, password_hash, usable)


def verify_login(db: Database, verified: VerifiedPasswords, username: str, password: str,
                 scope: str, now: datetime) -> tuple[Account | None, Principal | None]:  # fmt: skip
    """The account a user name names and, when the password matches one of its
    credentials, who logged in (blocking: argon2 on a cache miss).

    A name that is no address, an unknown account or one without credentials
    costs a verification against a dummy hash all the same, so a guesser
    cannot tell them apart by the time an answer takes. Whether the account
    is active is left to the caller, to be checked only after the password.
    """
    account = _named(db, username, scope, now)
    credentials = account.credentials() if account is not None else []
    if account is None or not credentials:
        verify_password(dummy_hash(), password)
        return account, None
    found = verified.verify(account.mailbox_id, username, password, credentials)
    if found is None:
        return account, None
    label, stored = found
    return account, Principal(account.mailbox_id, account.address, label, verified.stamp(stored))


def _named(db: Database, username: str, scope: str, now: datetime) -> Account | None:
    if len(username) > MAX_USERNAME:
        return None
    try:
        address = Address.parse(username, utf8=True)
    except AddressError:
        return None
    return account_by_address(db, address, scope, now)


def login_holds(db: Database, verified: VerifiedPasswords, principal: Principal, scope: str,
                now: datetime) -> bool:  # fmt: skip
    """Whether a session's login would still succeed (blocking): the mailbox and its
    domain active, and the credential it used unchanged, not revoked, not expired."""
    account = account_by_id(db, principal.mailbox_id, principal.address, scope, now)
    return (account is not None and account.active
            and verified.still_holds(account.credentials(), principal.credential,
                                     principal.stamp))  # fmt: skip
