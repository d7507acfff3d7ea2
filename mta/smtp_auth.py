"""Credential checks for SMTP AUTH (RFC 4954, PLAIN RFC 4616 and LOGIN).

A user authenticates with the mailbox's own password or with an app password
that carries the ``smtp`` scope and is neither revoked nor expired; both are
argon2id hashes, verified in a worker thread (argon2 is slow on purpose and
must not stall the event loop) and then remembered for a few minutes
(``storage.verified``), so a client that connects for every message pays
for argon2 once, not every time. Unknown users are verified against a dummy
hash so that they cost the same time. Suspended mailboxes and mailboxes on
suspended domains are refused, but only after the password verified, so the
answer never tells a guesser whether an account exists.

Failed attempts are counted per account and per client IP in a sliding
window (the named limits of :class:`AuthLimits`); over either limit the
server answers ``454 4.7.0`` without looking at the password, and every
failure is answered after a pause.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from policy.replies import SMTPReply
from storage.credentials import MAX_USERNAME, Principal, login_holds, verify_login
from storage.db import Database
from storage.failure_window import FailureWindow
from storage.verified import VERIFIERS, VerifiedPasswords

SCOPE = "smtp"

# RFC 4954 §6 replies.
AUTH_OK = SMTPReply(235, "2.7.0", "Authentication successful")
AUTH_INVALID = SMTPReply(535, "5.7.8", "Authentication credentials invalid")
AUTH_DISABLED = SMTPReply(535, "5.7.8", "Account disabled")
AUTH_RATE_LIMITED = SMTPReply(454, "4.7.0", "Too many failed authentication attempts, try later")
AUTH_UNAVAILABLE = SMTPReply(454, "4.7.0", "Temporary authentication failure")


@dataclass(frozen=True, slots=True)
class AuthLimits:
    account_failures: int = 5  # failures per account within the window
    address_failures: int = 20  # per client IP (NAT shares addresses)
    window_seconds: float = 5 * 60
    failure_delay: float = 1.0  # seconds before a failure is answered
    cache_seconds: float = 5 * 60  # a verified password skips argon2 this long
    cache_entries: int = 10_000
    # How often a session's login is checked again (a database read) at MAIL.
    recheck_seconds: float = 30.0


class AuthRefusal(StrEnum):
    BAD_CREDENTIALS = "bad-credentials"
    RATE_LIMITED = "rate-limited"
    DISABLED = "disabled"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    principal: Principal | None
    refusal: AuthRefusal | None = None

    @property
    def reply(self) -> SMTPReply:
        return {
            None: AUTH_OK,
            AuthRefusal.BAD_CREDENTIALS: AUTH_INVALID,
            AuthRefusal.DISABLED: AUTH_DISABLED,
            AuthRefusal.RATE_LIMITED: AUTH_RATE_LIMITED,
            AuthRefusal.UNAVAILABLE: AUTH_UNAVAILABLE,
        }[self.refusal]


class SMTPAuthenticator:
    """One per process; shared by the 587 and 465 listeners."""

    def __init__(
        self,
        db: Database,
        *,
        limits: AuthLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.limits = limits or AuthLimits()
        self._now = now
        self._accounts = FailureWindow(self.limits.window_seconds, clock)
        self._addresses = FailureWindow(self.limits.window_seconds, clock)
        self._verified = VerifiedPasswords(seconds=self.limits.cache_seconds,
                                           entries=self.limits.cache_entries, clock=clock)

    async def authenticate(
        self, username: str, password: str, client_ip: str | None
    ) -> AuthOutcome:
        account_key = username.strip().lower()[:MAX_USERNAME]
        address_key = client_ip or "unknown"
        if (
            self._accounts.count(account_key) >= self.limits.account_failures
            or self._addresses.count(address_key) >= self.limits.address_failures
        ):
            await asyncio.sleep(self.limits.failure_delay)
            return AuthOutcome(None, AuthRefusal.RATE_LIMITED)
        try:
            outcome = await VERIFIERS.run(self._check, username, password)
        except Exception:
            return AuthOutcome(None, AuthRefusal.UNAVAILABLE)
        if outcome.refusal is AuthRefusal.BAD_CREDENTIALS:
            self._accounts.add(account_key)
            self._addresses.add(address_key)
            await asyncio.sleep(self.limits.failure_delay)
        elif outcome.principal is not None:
            self._accounts.clear(account_key)
        return outcome

    # -- worker thread -------------------------------------------------------

    def _check(self, username: str, password: str) -> AuthOutcome:
        account, principal = verify_login(self.db, self._verified, username, password, SCOPE,
                                          self._now())  # fmt: skip
        if principal is None:
            return AuthOutcome(None, AuthRefusal.BAD_CREDENTIALS)
        assert account is not None
        if not account.active:
            return AuthOutcome(None, AuthRefusal.DISABLED)
        return AuthOutcome(principal)

    def still_valid(self, principal: Principal) -> bool:
        """Whether an authenticated session may go on (blocking: a worker thread).

        No longer once the mailbox or its domain is suspended, the password it
        authenticated with was changed or reset, or its app password was
        revoked or expired: a new AUTH would fail too.
        """
        return login_holds(self.db, self._verified, principal, SCOPE, self._now())
