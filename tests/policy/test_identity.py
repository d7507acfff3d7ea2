"""Identity rules as pure decisions: passwords, local parts, links, resets, codes, endpoints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from admin.services.identity import common_passwords
from policy.identity import (
    APPROVAL_TTL,
    REVIEW_INTERVAL,
    TEMP_CREDENTIAL_TTL,
    EndpointFinding,
    LinkState,
    OperatorFacts,
    ResetFacts,
    ResetState,
    authorize_approval,
    authorize_cancel,
    authorize_completion,
    authorize_execution,
    authorize_request,
    check_app_password,
    check_local_part,
    check_password,
    check_recovery_endpoint,
    endpoint_findings,
    format_recovery_code,
    invite_expiry,
    link_state,
    needs_new_recovery_codes,
    normalize_recovery_code,
    parse_common_passwords,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
ACME, OTHER = 1, 2
COMMON = parse_common_passwords(["# comment", "password", "qwerty", "Dragon", "letmein", ""])


def op(name: str, *roles: tuple[str, int | None], active: bool = True) -> OperatorFacts:
    return OperatorFacts(name, active, frozenset(roles))


HELPDESK = op("carol", ("helpdesk", None), ("approver", None))
APPROVER = op("dan", ("approver", ACME))
ELSEWHERE = op("gus", ("approver", OTHER))


def request(state: ResetState = ResetState.REQUESTED, **kw: object) -> ResetFacts:
    values: dict[str, object] = {
        "state": state,
        "domain_id": ACME,
        "requested_by": "carol",
        "requested_at": NOW - timedelta(hours=1),
    }
    values.update(kw)
    return ResetFacts(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("short one", "at least 12"),
        ("password", "at least 12"),
        ("PASSWORD2024!", "commonly used"),
        ("p@ssw0rd12345", "commonly used"),
        ("  qwertyqwerty", "start or end with a space"),
        ("qwertyqwertyqwerty", "commonly used"),
        ("aaaaaaaaaaaaaaaa", "repeated"),
        ("abcabcabcabcabc", "repeated"),
        ("erin.ford@acme.test!", "address"),
        ("hello ERIN.FORD forever", "local part"),
        ("x" * 300, "at most 256"),
        ("tab\tinside password", "control characters"),
    ],
)
def test_refused_passwords_say_why(password: str, problem: str) -> None:
    """Ensure weak, common, repeated or address-containing passwords are refused with a reason."""
    verdict = check_password(password, address="erin.ford@acme.test", common=COMMON)
    assert not verdict.allowed
    assert problem in str(verdict)


def test_good_passphrases_pass() -> None:
    """Ensure long unrelated words pass even when a short local part occurs by chance."""
    for password in (
        "violet kettle drum 9 orbit",
        "Correct-Horse-Battery-Staple-7",
        "al-pine hut 42x",
    ):
        verdict = check_password(password, address="al@acme.test", common=COMMON)
        assert verdict.allowed, (password, str(verdict))


def test_bundled_common_password_list() -> None:
    """Ensure the shipped list is large, lower-case, and refuses familiar passwords and variants."""
    common = common_passwords()
    assert len(common) >= 2000
    assert all(word == word.lower() for word in common)
    for password in (
        "iloveyou123456",
        "Sunshine2024!!",
        "Qwerty123456",
        "Football1234!",
        "passwordpassword",
        "P@ssw0rd!2025",
    ):
        assert not check_password(password, common=common).allowed, password
    assert check_password("tangerine lighthouse velvet", common=common).allowed


@pytest.mark.parametrize(
    ("local_part", "allowed", "problem"),
    [
        ("erin", True, ""),
        ("Erin.Ford", True, ""),
        ("e_ford-2", True, ""),
        ("postmaster", False, "reserved"),
        ("Abuse", False, "reserved"),
        ("no-reply", False, "reserved"),
        ("mailer-daemon", False, "reserved"),
        ("admin", False, "reserved"),
        ("erin+news", False, "letters a-z"),
        (".erin", False, "letters a-z"),
        ("erin..ford", False, "letters a-z"),
        ("", False, "choose"),
        ("x" * 65, False, "at most 64"),
        ("érin", False, "letters a-z"),
    ],
)
def test_local_part_policy(local_part: str, allowed: bool, problem: str) -> None:
    """Ensure invitees choose only plain, unreserved local parts."""
    verdict = check_local_part(local_part)
    assert verdict.allowed is allowed, str(verdict)
    assert problem in str(verdict)
    if allowed:
        assert verdict.local_part == local_part.lower()


def test_taken_local_part_is_refused() -> None:
    """Ensure a local part already in use is refused even when otherwise valid."""
    assert "already in use" in str(check_local_part("erin", taken=True))


def test_link_states() -> None:
    """Ensure a one-time link is pending until used, revoked or expired, used winning over all."""
    later = NOW + timedelta(days=1)
    assert link_state(expires_at=later, used_at=None, revoked_at=None, now=NOW) is LinkState.PENDING
    assert link_state(expires_at=NOW, used_at=None, revoked_at=None, now=NOW) is LinkState.EXPIRED
    assert link_state(expires_at=later, used_at=None, revoked_at=NOW, now=NOW) is LinkState.REVOKED
    assert link_state(expires_at=NOW, used_at=NOW, revoked_at=NOW, now=NOW) is LinkState.USED
    assert invite_expiry(NOW, None) == NOW + timedelta(days=7)
    assert invite_expiry(NOW, 0) is None and invite_expiry(NOW, 31) is None


def test_reset_request_needs_a_role_and_a_reason() -> None:
    """Ensure only helpdesk-like roles open resets, with a real reason."""
    assert authorize_request(HELPDESK, domain_id=ACME, reason="lost phone and codes")
    assert not authorize_request(HELPDESK, domain_id=ACME, reason="pls")
    assert not authorize_request(APPROVER, domain_id=ACME, reason="lost phone and codes")
    inactive = op("old", ("helpdesk", None), active=False)
    assert not authorize_request(inactive, domain_id=ACME, reason="lost phone and codes")


def test_requester_never_approves_their_own_reset() -> None:
    """Ensure approval needs a different operator holding approver for the mailbox's domain."""
    own = authorize_approval(request(), HELPDESK, now=NOW)
    assert not own and "cannot approve" in own.reason
    assert not authorize_approval(request(), ELSEWHERE, now=NOW)
    assert authorize_approval(request(), APPROVER, now=NOW)
    stale = request(requested_at=NOW - timedelta(days=4))
    assert "stale" in authorize_approval(stale, APPROVER, now=NOW).reason
    assert not authorize_approval(request(ResetState.APPROVED), APPROVER, now=NOW)


def test_execution_by_requester_or_approver_within_the_approval_window() -> None:
    """Ensure only the requester or the approver executes, and only a fresh approval."""
    approved = request(ResetState.APPROVED, approved_by="dan", approved_at=NOW)
    assert authorize_execution(approved, HELPDESK, now=NOW)
    assert authorize_execution(approved, APPROVER, now=NOW)
    assert not authorize_execution(approved, ELSEWHERE, now=NOW)
    assert not authorize_execution(request(), HELPDESK, now=NOW)
    lapsed = authorize_execution(approved, HELPDESK, now=NOW + APPROVAL_TTL + timedelta(seconds=1))
    assert "lapsed" in lapsed.reason


def test_temporary_credential_works_once_and_expires() -> None:
    """Ensure the temporary credential completes an executed reset only until it expires, once."""
    executed = request(ResetState.EXECUTED, expires_at=NOW + TEMP_CREDENTIAL_TTL)
    assert authorize_completion(executed, now=NOW)
    assert "expired" in authorize_completion(executed, now=NOW + TEMP_CREDENTIAL_TTL).reason
    done = request(ResetState.COMPLETED, expires_at=NOW + TEMP_CREDENTIAL_TTL)
    assert "already been used" in authorize_completion(done, now=NOW).reason
    assert not authorize_completion(request(ResetState.APPROVED), now=NOW)
    assert authorize_cancel(request(), HELPDESK)
    assert not authorize_cancel(request(), ELSEWHERE)
    assert not authorize_cancel(done, HELPDESK)


def test_recovery_codes_normalize_and_run_low() -> None:
    """Ensure codes are typed forgivingly (case, dashes, look-alikes) and three is the floor."""
    assert normalize_recovery_code("ABCDE-FGH1J") == "abcdefgh1j"
    assert normalize_recovery_code("abcde fghij") == "abcdefgh1j"  # i is read as 1
    assert normalize_recovery_code("0o0o0-llll1") == "00000" + "11111"
    assert normalize_recovery_code("short") is None
    assert normalize_recovery_code("abcde-fghi!") is None
    assert format_recovery_code("abcdefgh1j") == "abcde-fgh1j"
    assert needs_new_recovery_codes(2) and not needs_new_recovery_codes(3)


def test_recovery_endpoints_stay_off_hosted_domains() -> None:
    """Ensure recovery emails on the mailbox's domain or any hosted domain are refused."""
    hosted = frozenset({"acme.test", "other.test"})
    check = check_recovery_endpoint
    assert "own domain" in str(
        check("email", "me@acme.test", mailbox_domain="acme.test", hosted_domains=hosted)
    )
    assert "own domain" in str(
        check("email", "me@mail.acme.test", mailbox_domain="acme.test", hosted_domains=hosted)
    )
    assert "hosted here" in str(
        check("email", "me@other.test", mailbox_domain="acme.test", hosted_domains=hosted)
    )
    assert check(
        "email", "me@example.net", mailbox_domain="acme.test", hosted_domains=hosted
    ).allowed
    assert check("phone", "+1 555 0100", mailbox_domain="acme.test", hosted_domains=hosted).allowed
    assert not check("phone", "call me", mailbox_domain="acme.test", hosted_domains=hosted).allowed
    assert not check("fax", "123", mailbox_domain="acme.test", hosted_domains=hosted).allowed


def test_endpoint_findings_for_the_audit() -> None:
    """Ensure unverified, unreviewed and same-domain endpoints are flagged."""
    hosted = frozenset({"acme.test"})
    old = NOW - REVIEW_INTERVAL - timedelta(days=1)
    findings = endpoint_findings(
        kind="email",
        value="me@acme.test",
        verified_at=None,
        reviewed_at=None,
        mailbox_domain="acme.test",
        hosted_domains=hosted,
        now=NOW,
    )
    assert set(findings) == {
        EndpointFinding.UNVERIFIED,
        EndpointFinding.UNREVIEWED,
        EndpointFinding.SAME_DOMAIN,
    }
    stale = endpoint_findings(
        kind="phone",
        value="+1 555",
        verified_at=old,
        reviewed_at=old,
        mailbox_domain="acme.test",
        hosted_domains=hosted,
        now=NOW,
    )
    assert stale == (EndpointFinding.UNREVIEWED,)
    fresh = endpoint_findings(
        kind="email",
        value="me@example.net",
        verified_at=NOW,
        reviewed_at=NOW,
        mailbox_domain="acme.test",
        hosted_domains=hosted,
        now=NOW,
    )
    assert fresh == ()


def test_app_password_rules() -> None:
    """Ensure app passwords need a name, known scopes and a bounded future expiry."""
    assert check_app_password(name="phone", scopes=["imap"], expires_at=None, now=NOW) == ()
    assert check_app_password(name="", scopes=["imap"], expires_at=None, now=NOW)
    assert check_app_password(name="x", scopes=[], expires_at=None, now=NOW)
    assert check_app_password(name="x", scopes=["pop3"], expires_at=None, now=NOW)
    assert check_app_password(name="x", scopes=["smtp"], expires_at=NOW, now=NOW)
    assert check_app_password(
        name="x", scopes=["smtp"], expires_at=NOW + timedelta(days=400), now=NOW
    )
