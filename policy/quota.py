"""Pooled quota as a pure decision.

The organization owns the pool; clients, domains and mailboxes may carry caps
inside it. A message fits when it fits every level that has a limit. The
atomic charge happens in storage; this answers the question asked at RCPT time
("is the pool already full?") and names the level that limits the user, which
IMAP's QUOTA extension reports.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class QuotaLevel:
    scope: str  # "organization", "client", "domain" or "mailbox"
    name: str
    used: int
    limit: int | None  # bytes; None means uncapped at this level

    @property
    def free(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.used)


@dataclass(frozen=True, slots=True)
class QuotaSnapshot:
    levels: tuple[QuotaLevel, ...]

    def fits(self, size: int) -> bool:
        return all(lvl.limit is None or lvl.used + size <= lvl.limit for lvl in self.levels)

    def limiting(self) -> QuotaLevel | None:
        """The capped level with the least free space: the one the user runs into."""
        capped = [lvl for lvl in self.levels if lvl.limit is not None]
        return min(capped, key=lambda lvl: lvl.free or 0, default=None)
