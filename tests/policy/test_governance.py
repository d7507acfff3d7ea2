"""Admission of persistence features: purpose, owner, expiry, cap, external switch."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from policy.governance import (
    DEFAULT_MAX_RULE_DAYS,
    MIN_PURPOSE_LENGTH,
    Admission,
    RuleRequest,
    admit_rule,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
GOOD = RuleRequest(
    purpose="forward invoices to the bookkeeper during handover",
    owner="person:1",
    expires_at=NOW + timedelta(days=30),
    external=True,
)


def admit(
    request: RuleRequest, *, max_rule_days: int = 90, external_forwarding: bool = True
) -> Admission:
    return admit_rule(
        request, now=NOW, max_rule_days=max_rule_days, external_forwarding=external_forwarding
    )


def request(**changes: object) -> RuleRequest:
    return dataclasses.replace(GOOD, **changes)  # type: ignore[arg-type]


def test_documented_time_boxed_rule_is_allowed() -> None:
    """Ensure a rule with purpose, owner and an expiry within the cap is admitted."""
    admission = admit(GOOD)
    assert admission.allowed
    assert admission.problems == ()
    assert str(admission) == "allowed"


@pytest.mark.parametrize("purpose", [None, "", "        ", "temp", "  short  "])
def test_purpose_is_required(purpose: str | None) -> None:
    """Ensure a missing, blank or too-short purpose is refused."""
    admission = admit(request(purpose=purpose))
    assert not admission.allowed
    assert len(admission.problems) == 1
    assert "purpose" in admission.problems[0]


def test_purpose_of_minimum_length_is_enough() -> None:
    """Ensure a purpose of exactly the minimum length counts as documented."""
    assert len("temp fwd") == MIN_PURPOSE_LENGTH
    assert admit(request(purpose="temp fwd")).allowed
    assert not admit(request(purpose="temp fw")).allowed


@pytest.mark.parametrize("owner", [None, ""])
def test_owner_is_required(owner: str | None) -> None:
    """Ensure a rule without a named owner is refused (hard rule 1)."""
    admission = admit(request(owner=owner))
    assert not admission.allowed
    assert len(admission.problems) == 1
    assert "owner" in admission.problems[0]


def test_expiry_is_required_by_default() -> None:
    """Ensure a rule without an expiry is refused when one is needed."""
    admission = admit(request(expires_at=None))
    assert not admission.allowed
    assert admission.problems == ("an expiry is required",)


@pytest.mark.parametrize("expires_at", [NOW, NOW - timedelta(seconds=1), NOW - timedelta(days=5)])
def test_expiry_in_the_past_is_refused(expires_at: datetime) -> None:
    """Ensure an expiry at or before now is refused."""
    admission = admit(request(expires_at=expires_at))
    assert not admission.allowed
    assert admission.problems == ("the expiry must be in the future",)


def test_expiry_beyond_the_domain_cap_is_refused() -> None:
    """Ensure an expiry further away than the domain's cap is refused, naming the cap."""
    admission = admit(request(expires_at=NOW + timedelta(days=30, seconds=1)), max_rule_days=30)
    assert not admission.allowed
    assert len(admission.problems) == 1
    assert "30 days" in admission.problems[0]


def test_expiry_exactly_at_the_cap_is_allowed() -> None:
    """Ensure the cap is inclusive."""
    at_cap = request(expires_at=NOW + timedelta(days=DEFAULT_MAX_RULE_DAYS))
    assert admit(at_cap, max_rule_days=DEFAULT_MAX_RULE_DAYS).allowed


def test_external_target_refused_when_domain_disallows_it() -> None:
    """Ensure external rules are refused while the domain's external forwarding is off."""
    admission = admit(GOOD, external_forwarding=False)
    assert not admission.allowed
    assert admission.problems == ("external forwarding is disabled for this domain",)


def test_internal_target_allowed_when_external_forwarding_is_off() -> None:
    """Ensure the external-forwarding switch does not block internal rules."""
    assert admit(request(external=False), external_forwarding=False).allowed


def test_internal_alias_without_expiry_allowed_when_expiry_not_needed() -> None:
    """Ensure an internal alias (needs_expiry=False) is admitted without an expiry."""
    alias = request(external=False, needs_expiry=False, expires_at=None)
    assert admit(alias, external_forwarding=False).allowed


def test_expiry_still_checked_when_not_needed_but_given() -> None:
    """Ensure an optional expiry that is given must still be valid."""
    alias = request(external=False, needs_expiry=False, expires_at=NOW - timedelta(days=1))
    assert admit(alias).problems == ("the expiry must be in the future",)


def test_every_problem_is_reported_at_once() -> None:
    """Ensure all problems are listed together, joined in the string form."""
    admission = admit(
        RuleRequest(purpose=None, owner=None, expires_at=None, external=True),
        external_forwarding=False,
    )
    assert len(admission.problems) == 4
    assert str(admission) == "; ".join(admission.problems)


def test_admission_is_frozen() -> None:
    """Ensure an admission cannot be altered after the decision."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        admit(GOOD).problems = ()  # type: ignore[misc]
