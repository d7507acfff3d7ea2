"""Credential checks for IMAP logins: a decision, not an exception.

A login succeeds with the mailbox's own password or with an app password
that is neither revoked nor expired and carries the ``imap`` scope. The
mailbox must be active and its domain not suspended; those are checked only
after the password verified, so the answer never tells a guesser whether an
account exists or is suspended.

Brute force is slowed twice, with the named limits of :class:`LoginLimits`:
failures are counted per account and per client IP in a sliding window,
and a limited account or address is refused before any password is looked
at; every failure is also answered after a pause.

argon2id is slow on purpose, so a verified password is remembered for a few
minutes (``storage.verified``: under an HMAC, never in plain, and only while
the hash it was verified against is unchanged). argon2 runs in worker
threads of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, bindparam, select

from imap.config import LoginLimits
from imap.workers import Workers
from policy.addresses import Address, AddressError
from policy.routing import DomainState, MailboxState
from storage.db import Database
from storage.failure_window import FailureWindow
from storage.identity import is_temporary_credential
from storage.models import AppPassword, Domain, Mailbox
from storage.secrets import dummy_hash, verify_password
from storage.verified import VerifiedPasswords

SCOPE = "imap"
# RFC 5321 §4.5.3.1.3 path limit: longer "user names" are not addresses.
MAX_USERNAME = 256
# argon2id takes about 64 ms of one core and 19 MiB here (storage/secrets.py):
# verifications run in threads of their own, so that a burst of logins (every
# client after a restart) never queues storage work, and two at a time, one per
# core of a small node: 50 first logins at once waited up to 3.3 s with one
# thread (40 verifications: 1.8 s with one thread, 0.9 s with two).
_VERIFIERS = Workers(threads=2, name="imap-argon2")

_ACCOUNT_COLUMNS = (
    select(Mailbox.id, Mailbox.state, Mailbox.password_hash, Domain.state)
    .join(Domain, Mailbox.domain_id == Domain.id)
)
_ACCOUNT = _ACCOUNT_COLUMNS.where(Domain.name == bindparam("domain"),
                                  Mailbox.local_part == bindparam("local"))  # fmt: skip
_ACCOUNT_BY_ID = _ACCOUNT_COLUMNS.where(Mailbox.id == bindparam("mailbox_id"))
_APP_PASSWORDS = select(
    AppPassword.id, AppPassword.password_hash, AppPassword.scopes, AppPassword.expires_at
).where(AppPassword.mailbox_id == bindparam("mailbox_id"), AppPassword.revoked_at.is_(None))


class LoginRefusal(StrEnum):
    BAD_CREDENTIALS = "bad-credentials"
    RATE_LIMITED = "rate-limited"
    DISABLED = "disabled"  # suspended or not yet activated mailbox, suspended domain
    TEMPORARY_ONLY = "temporary-only"  # a helpdesk reset credential: it only sets a password


@dataclass(frozen=True, slots=True)
class Principal:
    mailbox_id: int
    address: str
    credential: str  # "password" or "app-password:<id>"
    # A keyed digest of the stored hash the login verified against: a
    # password change or reset replaces that hash (``still_valid``).
    stamp: bytes = b""


@dataclass(frozen=True, slots=True)
class LoginOutcome:
    principal: Principal | None
    refusal: LoginRefusal | None = None

    @property
    def ok(self) -> bool:
        return self.principal is not None


@dataclass(frozen=True, slots=True)
class _Account:
    """What one verification needs, read in one short transaction."""

    mailbox_id: int
    address: str
    active: bool
    password_hash: str | None
    app_passwords: tuple[tuple[int, str], ...]  # usable (id, hash) pairs


def _credentials(account: _Account) -> list[tuple[str, str]]:
    """What may log in to the account: (credential label, stored argon2id hash)."""
    found = [("password", account.password_hash)] if account.password_hash else []
    return found + [(f"app-password:{i}", h) for i, h in account.app_passwords]


class Authenticator:
    """Verifies IMAP credentials against the directory; one per server process."""

    def __init__(
        self,
        db: Database,
        *,
        limits: LoginLimits | None = None,
        secret: bytes | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.limits = limits or LoginLimits()
        self._secret = secret or secrets.token_bytes(32)
        self._clock = clock
        self._now = now
        self._accounts = FailureWindow(self.limits.window_seconds, clock)
        self._addresses = FailureWindow(self.limits.window_seconds, clock)
        self._verified = VerifiedPasswords(seconds=self.limits.cache_seconds,
                                           entries=self.limits.cache_entries,
                                           secret=self._secret, clock=clock)  # fmt: skip

    async def login(self, username: str, password: str, client_ip: str | None) -> LoginOutcome:
        account_key = "user:" + username.strip().lower()[:MAX_USERNAME]
        address_key = f"ip:{client_ip}"
        if (
            self._accounts.count(account_key) >= self.limits.account_failures
            or self._addresses.count(address_key) >= self.limits.address_failures
        ):
            await asyncio.sleep(self.limits.failure_delay)
            return LoginOutcome(None, LoginRefusal.RATE_LIMITED)
        outcome = await _VERIFIERS.run(self._check, username, password)
        if outcome.refusal is LoginRefusal.BAD_CREDENTIALS:
            self._accounts.add(account_key)
            self._addresses.add(address_key)
            await asyncio.sleep(self.limits.failure_delay)
        elif outcome.ok:
            self._accounts.clear(account_key)
        return outcome

    # -- worker thread -------------------------------------------------------

    def _check(self, username: str, password: str) -> LoginOutcome:
        account = self._load(username) if len(username) <= MAX_USERNAME else None
        if account is None:
            verify_password(dummy_hash(), password)
            return LoginOutcome(None, LoginRefusal.BAD_CREDENTIALS)
        verified = self._verify(account, username, password)
        if verified is None:
            if not account.password_hash and self._temporary(account.mailbox_id, password):
                return LoginOutcome(None, LoginRefusal.TEMPORARY_ONLY)
            return LoginOutcome(None, LoginRefusal.BAD_CREDENTIALS)
        if not account.active:
            return LoginOutcome(None, LoginRefusal.DISABLED)
        credential, stored = verified
        return LoginOutcome(Principal(account.mailbox_id, account.address, credential,
                                      self._stamp(stored)))  # fmt: skip

    def still_valid(self, principal: Principal) -> bool:
        """Whether a logged-in session may go on (blocking: a worker thread).

        No longer once the mailbox or its domain is suspended, the password it
        logged in with was changed or reset, or its app password was revoked
        or expired: the session is then ended, as a new login would fail.
        """
        account = self._read(_ACCOUNT_BY_ID, {"mailbox_id": principal.mailbox_id},
                             principal.address)  # fmt: skip
        if account is None or not account.active:
            return False
        stored = dict(_credentials(account)).get(principal.credential)
        return stored is not None and hmac.compare_digest(self._stamp(stored), principal.stamp)

    def _stamp(self, stored: str) -> bytes:
        return hmac.new(self._secret, b"stamp\0" + stored.encode(), hashlib.sha256).digest()

    def _load(self, username: str) -> _Account | None:
        try:
            address = Address.parse(username, utf8=True)
        except AddressError:
            return None
        return self._read(_ACCOUNT, {"domain": address.domain, "local": address.local},
                          str(address))  # fmt: skip

    def _read(self, query: Select[Any], params: dict[str, Any], address: str) -> _Account | None:
        now = self._now()
        # A read snapshot: a login never waits for (or holds up) a writer.
        with self.db.reader() as session:
            conn = session.connection()
            row = conn.execute(query, params).first()
            if row is None:
                return None
            mailbox_id, state, password_hash, domain_state = row
            apps = conn.execute(_APP_PASSWORDS, {"mailbox_id": mailbox_id}).all()
        usable = tuple(
            (app_id, hashed)
            for app_id, hashed, scopes, expires_at in apps
            if SCOPE in {s.strip() for s in scopes.split(",")}
            and (expires_at is None or expires_at > now)
        )
        active = state == MailboxState.ACTIVE and domain_state != DomainState.SUSPENDED
        return _Account(mailbox_id, address, active, password_hash, usable)

    def _temporary(self, mailbox_id: int, password: str) -> bool:
        with self.db.reader() as session:
            return is_temporary_credential(session, mailbox_id, password, self._now())

    def _verify(self, account: _Account, username: str, password: str) -> tuple[str, str] | None:
        """The credential label the password matches and its stored hash, or None."""
        return self._verified.verify(account.mailbox_id, username, password,
                                     _credentials(account))  # fmt: skip
