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
from storage.credentials import MAX_USERNAME, Principal, login_holds, verify_login
from storage.db import Database
from storage.failure_window import FailureWindow
from storage.identity import is_temporary_credential
from storage.verified import VERIFIERS, VerifiedPasswords

SCOPE = "imap"

class LoginRefusal(StrEnum):
    BAD_CREDENTIALS = "bad-credentials"
    RATE_LIMITED = "rate-limited"
    DISABLED = "disabled"  # suspended or not yet activated mailbox, suspended domain
    TEMPORARY_ONLY = "temporary-only"  # a helpdesk reset credential: it only sets a password


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
        outcome = await VERIFIERS.run(self._check, username, password)
        if outcome.refusal is LoginRefusal.BAD_CREDENTIALS:
            self._accounts.add(account_key)
            self._addresses.add(address_key)
            await asyncio.sleep(self.limits.failure_delay)
        elif outcome.ok:
            self._accounts.clear(account_key)
        return outcome

    # -- worker thread -------------------------------------------------------

    def _check(self, username: str, password: str) -> LoginOutcome:
        account, principal = verify_login(self.db, self._verified, username, password, SCOPE,
                                          self._now())  # fmt: skip
        if principal is None:
            if (account is not None and not account.password_hash
                    and self._temporary(account.mailbox_id, password)):  # fmt: skip
                return LoginOutcome(None, LoginRefusal.TEMPORARY_ONLY)
            return LoginOutcome(None, LoginRefusal.BAD_CREDENTIALS)
        assert account is not None
        if not account.active:
            return LoginOutcome(None, LoginRefusal.DISABLED)
        return LoginOutcome(principal)

    def still_valid(self, principal: Principal) -> bool:
        """Whether a logged-in session may go on (blocking: a worker thread).

        No longer once the mailbox or its domain is suspended, the password it
        logged in with was changed or reset, or its app password was revoked
        or expired: the session is then ended, as a new login would fail.
        """
        return login_holds(self.db, self._verified, principal, SCOPE, self._now())

    def _temporary(self, mailbox_id: int, password: str) -> bool:
        with self.db.reader() as session:
            return is_temporary_credential(session, mailbox_id, password, self._now())
