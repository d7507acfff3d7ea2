"""Admission checks for persistence features (hard rule 5 in DESIGN.md).

Creating a forwarding rule, an external alias or a catch-all needs a documented
purpose, a named owner and an expiry inside the domain's lifetime cap. These
checks run before anything is written; the same predicates are re-applied in
the delivery path (``policy.routing.rule_defect``) because a rule that was
valid when created can expire, and a row can be edited behind our back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

DEFAULT_MAX_RULE_DAYS = 90
MIN_PURPOSE_LENGTH = 8  # "temp fwd" is the shortest purpose we still call documented


@dataclass(frozen=True, slots=True)
class RuleRequest:
    purpose: str | None
    owner: str | None
    expires_at: datetime | None
    external: bool
    needs_expiry: bool = True


@dataclass(frozen=True, slots=True)
class Admission:
    problems: tuple[str, ...]

    @property
    def allowed(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        return "; ".join(self.problems) if self.problems else "allowed"


def admit_rule(
    request: RuleRequest, *, now: datetime, max_rule_days: int, external_forwarding: bool
) -> Admission:
    problems: list[str] = []
    if not request.purpose or len(request.purpose.strip()) < MIN_PURPOSE_LENGTH:
        problems.append(f"a purpose of at least {MIN_PURPOSE_LENGTH} characters is required")
    if not request.owner:
        problems.append("a named owner (person or role) is required")
    if request.expires_at is None:
        if request.needs_expiry:
            problems.append("an expiry is required")
    elif request.expires_at <= now:
        problems.append("the expiry must be in the future")
    elif request.expires_at - now > timedelta(days=max_rule_days):
        problems.append(f"the expiry is beyond the domain's cap of {max_rule_days} days")
    if request.external and not external_forwarding:
        problems.append("external forwarding is disabled for this domain")
    return Admission(tuple(problems))
