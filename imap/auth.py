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
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from imap.config import LoginLimits
from imap.workers import Workers
from policy.addresses import Address, AddressError
from storage.credentials import Account, account_by_address, login_holds
from storage.db import Database
from storage.failure_window import FailureWindow
from storage.identity import is_temporary_credential
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
        self._clock = clock
        self._now = now
        self._accounts = FailureWindow(self.limits.window_seconds, clock)
        self._addresses = FailureWindow(self.limits.window_seconds, clock)
        self._verified = VerifiedPasswords(seconds=self.limits.cache_seconds,
                                           entries=self.limits.cache_entries,
                                           secret=secret, clock=clock)  # fmt: skip

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
                                      self._verified.stamp(stored)))  # fmt: skip

    def still_valid(self, principal: Principal) -> bool:
        """Whether a logged-in session may go on (blocking: a worker thread).

        No longer once the mailbox or its domain is suspended, the password it
        logged in with was changed or reset, or its app password was revoked
        or expired: the session is then ended, as a new login would fail.
        """
        return login_holds(self.db, self._verified, mailbox_id=principal.mailbox_id,
                           address=principal.address, credential=principal.credential,
                           stamp=principal.stamp, scope=SCOPE, now=self._now())  # fmt: skip

    def _load(self, username: str) -> Account | None:
        try:
            address = Address.parse(username, utf8=True)
        except AddressError:
            return None
        return account_by_address(self.db, address, SCOPE, self._now())

    def _temporary(self, mailbox_id: int, password: str) -> bool:
        with self.db.reader() as session:
            return is_temporary_credential(session, mailbox_id, password, self._now())

    def _verify(self, account: Account, username: str, password: str) -> tuple[str, str] | None:
        """The credential label the password matches and its stored hash, or None."""
        return self._verified.verify(account.mailbox_id, username, password,
                                     account.credentials())  # fmt: skip
