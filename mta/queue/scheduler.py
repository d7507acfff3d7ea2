"""When to try again, when to give up, and how many connections per destination.

The schedule is the classic one (RFC 5321 §4.5.4.1: retry after at least
30 minutes, give up after 4-5 days), made faster at the start: the first
retry after ``initial_retry`` (5 minutes), then doubling up to
``max_retry`` (4 hours), until the message is ``max_age`` (5 days) old.
The last retry is moved to the expiry moment so a message is never given up
without one attempt near its deadline. Every number lives in the frozen
``QueueSettings`` the composition root builds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mta.resolver import ResolverSettings


@dataclass(frozen=True, slots=True)
class QueueSettings:
    initial_retry: timedelta = timedelta(minutes=5)
    max_retry: timedelta = timedelta(hours=4)
    backoff_factor: float = 2.0
    max_age: timedelta = timedelta(days=5)
    # Runner
    poll_interval: float = 30.0  # seconds between looks at the table when not woken
    batch_size: int = 100  # rows claimed per look
    lease: timedelta = timedelta(minutes=15)  # a claimed row is retried after this if we die
    shutdown_grace: float = 10.0  # seconds stop() waits for deliveries in flight
    # Concurrency
    max_connections: int = 50  # outbound SMTP sessions in total
    per_destination: int = 5  # sessions per destination domain (or transport host)
    # Remote delivery
    smtp_port: int = 25  # port for MX hosts; tests point it at a sink
    transport: Mapping[str, str] = field(default_factory=dict)  # domain -> "host:port"
    resolver: ResolverSettings = field(default_factory=ResolverSettings)
    ipv6: bool = True
    connect_timeout: float = 30.0
    # RFC 5321 §4.5.3.2: 5 minutes for MAIL/RCPT, 10 for the end of DATA.
    command_timeout: float = 300.0
    data_timeout: float = 600.0
    # Opportunistic STARTTLS (RFC 3207, RFC 7435): used when offered, not verified
    # unless this is set (MTA-STS/DANE would say when verifying is safe).
    verify_tls: bool = False


def retry_delay(settings: QueueSettings, attempts: int) -> timedelta:
    """The pause after the ``attempts``-th failed attempt (1-based)."""
    seconds = settings.initial_retry.total_seconds() * settings.backoff_factor ** max(
        attempts - 1, 0
    )
    return min(timedelta(seconds=seconds), settings.max_retry)


def next_attempt(
    settings: QueueSettings, *, attempts: int, created_at: datetime, now: datetime
) -> datetime | None:
    """When to try again after a temporary failure; None when the message has expired."""
    deadline = created_at + settings.max_age
    if now >= deadline:
        return None
    return min(now + retry_delay(settings, attempts), deadline)


class DestinationLimiter:
    """At most ``per_destination`` sessions to one destination, ``total`` overall."""

    def __init__(self, per_destination: int, total: int) -> None:
        self.per_destination = per_destination
        self.total = asyncio.Semaphore(total)
        self._by_destination: dict[str, asyncio.Semaphore] = {}
        self._users: dict[str, int] = {}  # waiting or holding, so idle entries can go
        self._active: dict[str, int] = {}

    def acquire(self, destination: str) -> _Slot:
        return _Slot(self, destination.lower())

    def active(self, destination: str) -> int:
        return self._active.get(destination.lower(), 0)


class _Slot:
    def __init__(self, limiter: DestinationLimiter, destination: str) -> None:
        self.limiter = limiter
        self.destination = destination

    async def __aenter__(self) -> None:
        limiter = self.limiter
        sem = limiter._by_destination.setdefault(
            self.destination, asyncio.Semaphore(limiter.per_destination)
        )
        limiter._users[self.destination] = limiter._users.get(self.destination, 0) + 1
        try:
            await sem.acquire()
        except BaseException:
            self._forget()
            raise
        try:
            await limiter.total.acquire()
        except BaseException:
            sem.release()
            self._forget()
            raise
        limiter._active[self.destination] = limiter._active.get(self.destination, 0) + 1

    async def __aexit__(self, *exc: object) -> None:
        self.limiter._active[self.destination] -= 1
        if not self.limiter._active[self.destination]:
            del self.limiter._active[self.destination]
        self.limiter.total.release()
        self.limiter._by_destination[self.destination].release()
        self._forget()

    def _forget(self) -> None:
        users = self.limiter._users
        users[self.destination] -= 1
        if users[self.destination] == 0:
            # Keep the table small: drop idle destinations.
            del users[self.destination]
            del self.limiter._by_destination[self.destination]
