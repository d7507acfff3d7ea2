"""Identity rules (hard rules 2-4 in DESIGN.md): decisions about credentials, not I/O.

Everything here is pure: the caller gathers the facts (the address being set
up, the bundled list of common passwords, a reset request's state, who holds
which operator role, ``now``) and gets a frozen decision back. "No" is a
decision with its reasons, never an exception. Nothing reads a clock, a file
or a database, and nothing here ever sees a secret it could keep.

- Passwords: at least 12 characters (NIST SP 800-63B §5.1.1.2 asks for 8 and
  for a blocklist of common and context-specific values; we take 12 because
  these mailboxes are how domains get taken over), not containing the address
  or its local part, not a common password or a trivial variant of one.
- Local parts chosen by invitees: a conservative alphabet, no role names
  (RFC 2142) or addresses that impersonate the service.
- Invites and setup links: one-time, with an expiry; used, expired and revoked
  links each say so.
- Helpdesk resets: ``requested → approved → executed → completed`` with two
  different operators; the approver holds the ``approver`` role for the
  mailbox's domain; every step has an expiry.
- Recovery codes: ten, one-time, the user is asked for a fresh set when fewer
  than three remain.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

# -- passwords ---------------------------------------------------------------

MIN_PASSWORD_LENGTH = 12
# argon2 hashes any length, but an unbounded form field is a cheap way to
# make the server hash megabytes; 256 characters fits every passphrase.
MAX_PASSWORD_LENGTH = 256
MIN_DISTINCT_CHARACTERS = 5  # "aaaaaaaaaaaa" and "abababababab" are not passwords
MIN_LOCAL_PART_IN_PASSWORD = 3  # shorter local parts ("al") occur in words by chance

# Substitutions people make to dress up a dictionary word ("P@ssw0rd!").
_LEET = str.maketrans(
    {
        "@": "a",
        "4": "a",
        "0": "o",
        "1": "i",
        "!": "i",
        "3": "e",
        "$": "s",
        "5": "s",
        "7": "t",
        "+": "t",
        "8": "b",
        "9": "g",
    }
)
_EDGE_NOISE = re.compile(r"^[\W\d_]+|[\W\d_]+$")


@dataclass(frozen=True, slots=True)
class PasswordCheck:
    problems: tuple[str, ...]

    @property
    def allowed(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        return "; ".join(self.problems) if self.problems else "allowed"


def _is_repetition(text: str) -> bool:
    """``abcabcabc``: the whole string is one short unit repeated."""
    n = len(text)
    return any(n % size == 0 and text[:size] * (n // size) == text for size in range(1, n // 2 + 1))


def _common_forms(password: str) -> set[str]:
    """The password and the dictionary words it may be dressed up from."""
    lowered = password.lower()
    forms: set[str] = set()
    for text in (lowered, lowered.replace(" ", "")):
        stripped = _EDGE_NOISE.sub("", text)
        forms.update((text, stripped, text.translate(_LEET), stripped.translate(_LEET)))
        forms.add(_EDGE_NOISE.sub("", text.translate(_LEET)))
    forms.discard("")
    return forms


def check_password(
    password: str,
    *,
    address: str | None = None,
    common: frozenset[str] = frozenset(),
) -> PasswordCheck:
    """Can ``password`` become the lasting password of ``address``?

    ``common`` is the bundled list of common passwords, lower-case.
    """
    problems: list[str] = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    if password != password.strip():
        problems.append("a password cannot start or end with a space")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in password):
        problems.append("a password cannot contain control characters")
    lowered = password.lower()
    if address:
        address = address.lower()
        local = address.partition("@")[0]
        if address in lowered or (len(local) >= MIN_LOCAL_PART_IN_PASSWORD and local in lowered):
            problems.append("a password cannot contain the mail address or its local part")
    if len(set(lowered)) < MIN_DISTINCT_CHARACTERS or _is_repetition(lowered):
        problems.append("a password cannot be one character or one short pattern repeated")
    forms = _common_forms(password)
    if any(form in common or (_is_repetition(form) and _unit(form) in common) for form in forms):
        problems.append("this password is on the list of commonly used passwords")
    return PasswordCheck(tuple(problems))


def _unit(text: str) -> str:
    for size in range(1, len(text) // 2 + 1):
        if len(text) % size == 0 and text[:size] * (len(text) // size) == text:
            return text[:size]
    return text


def parse_common_passwords(lines: Iterable[str]) -> frozenset[str]:
    """The bundled list: one password a line, ``#`` comments, compared lower-case."""
    return frozenset(
        line.strip().lower() for line in lines if line.strip() and not line.startswith("#")
    )


# -- local parts chosen by invitees -------------------------------------------

# RFC 2142 role mailboxes, names used by mail software, and names that would
# let one person impersonate the organization or the service to everyone else.
RESERVED_LOCAL_PARTS = frozenset(
    {
        # RFC 2142 §3-§5
        "info",
        "marketing",
        "sales",
        "support",
        "abuse",
        "noc",
        "security",
        "postmaster",
        "hostmaster",
        "usenet",
        "news",
        "webmaster",
        "www",
        "uucp",
        "ftp",
        # mail software and common operational names
        "mailer-daemon",
        "mailerdaemon",
        "root",
        "admin",
        "administrator",
        "sysadmin",
        "ssl-admin",
        "daemon",
        "nobody",
        "operator",
        "system",
        "mail",
        "email",
        "smtp",
        "imap",
        "pop",
        "pop3",
        "dmarc",
        "dmarc-reports",
        "tls-rpt",
        "mta-sts",
        "bounce",
        "bounces",
        "noreply",
        "no-reply",
        "donotreply",
        "do-not-reply",
        "help",
        "helpdesk",
        "billing",
        "accounts",
        "it",
        "legal",
        "privacy",
        "compliance",
        "ceo",
        "cfo",
        "mailward",
        "autoconfig",
        "autodiscover",
        "list",
        "lists",
        "listmaster",
        "owner",
    }
)
MAX_LOCAL_PART = 64  # RFC 5321 §4.5.3.1.1
# Stricter than RFC 5322 dot-atom on purpose: no "+" (subaddress separator),
# no case (addresses fold to lower case), letters or digits at both ends.
_INVITE_LOCAL_PART = re.compile(r"^[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class LocalPartCheck:
    local_part: str  # normalized (stripped, lower case)
    problems: tuple[str, ...]

    @property
    def allowed(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        return "; ".join(self.problems) if self.problems else "allowed"


def check_local_part(
    local_part: str, *, taken: bool = False, reserved: frozenset[str] = RESERVED_LOCAL_PARTS
) -> LocalPartCheck:
    """Can an invitee claim ``local_part``? ``taken``: a mailbox or alias already has it."""
    value = local_part.strip().lower()
    problems: list[str] = []
    if not value:
        problems.append("choose the part of the address before the @")
    elif len(value) > MAX_LOCAL_PART:
        problems.append(f"the part before the @ has at most {MAX_LOCAL_PART} characters")
    elif not _INVITE_LOCAL_PART.match(value) or ".." in value:
        problems.append(
            "use letters a-z, digits and . _ - only, starting and ending with a letter or digit"
        )
    if value in reserved or value.replace(".", "").replace("-", "") in reserved:
        problems.append(f"{value!r} is reserved for the organization and cannot be chosen")
    if taken:
        problems.append(f"{value!r} is already in use on this domain")
    return LocalPartCheck(value, tuple(problems))


# -- one-time links: invites and operator setup links --------------------------

DEFAULT_INVITE_DAYS = 7
MAX_INVITE_DAYS = 30
SETUP_LINK_HOURS = 72
# Tokens carry at least 128 bits of entropy (RFC 4086 §8); 24 random bytes.
MIN_TOKEN_BITS = 128


class LinkState(enum.StrEnum):
    PENDING = "pending"
    USED = "used"
    EXPIRED = "expired"
    REVOKED = "revoked"


def link_state(
    *, expires_at: datetime, used_at: datetime | None, revoked_at: datetime | None, now: datetime
) -> LinkState:
    if used_at is not None:
        return LinkState.USED
    if revoked_at is not None:
        return LinkState.REVOKED
    if expires_at <= now:
        return LinkState.EXPIRED
    return LinkState.PENDING


LINK_MESSAGES = {
    LinkState.USED: "This link has already been used. Each link works once; ask for a new one.",
    LinkState.EXPIRED: "This link has expired. Ask the person who sent it for a new one.",
    LinkState.REVOKED: "This link was withdrawn and no longer works. Ask for a new one.",
}
UNKNOWN_LINK_MESSAGE = "This link is not valid. Check that it was copied completely."


def invite_expiry(now: datetime, days: int | None) -> datetime | None:
    """When an invite made now expires; None when ``days`` is out of bounds."""
    days = DEFAULT_INVITE_DAYS if days is None else days
    if not 1 <= days <= MAX_INVITE_DAYS:
        return None
    return now + timedelta(days=days)


# -- operators and their roles -------------------------------------------------

OWNER, DOMAIN_ADMIN, HELPDESK, APPROVER, AUDITOR = (
    "owner",
    "domain-admin",
    "helpdesk",
    "approver",
    "auditor",
)


@dataclass(frozen=True, slots=True)
class OperatorFacts:
    username: str
    active: bool
    roles: frozenset[tuple[str, int | None]]  # (role, domain id or None for organization-wide)

    def holds(self, role: str, domain_id: int | None) -> bool:
        """The role, organization-wide or scoped to ``domain_id``."""
        if not self.active:
            return False
        return (role, None) in self.roles or (
            domain_id is not None and (role, domain_id) in self.roles
        )

    def holds_any(self, roles: Iterable[str], domain_id: int | None) -> bool:
        return any(self.holds(role, domain_id) for role in roles)


# Who may provision (invites), who may open a helpdesk reset, who may offboard.
PROVISION_ROLES = (OWNER, DOMAIN_ADMIN)
REQUEST_RESET_ROLES = (HELPDESK, OWNER, DOMAIN_ADMIN)
SUSPEND_ROLES = (OWNER, DOMAIN_ADMIN, HELPDESK)  # suspending only ever removes access
OFFBOARD_ROLES = (OWNER, DOMAIN_ADMIN)


@dataclass(frozen=True, slots=True)
class Permission:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


def may(
    operator: OperatorFacts, roles: Iterable[str], domain_id: int | None, what: str
) -> Permission:
    roles = tuple(roles)
    if not operator.active:
        return Permission(False, f"operator {operator.username!r} is not active")
    if operator.holds_any(roles, domain_id):
        return Permission(True, "allowed")
    return Permission(False, f"{what} needs one of the roles {', '.join(roles)} for this domain")


# -- helpdesk resets (hard rule 3) --------------------------------------------

MIN_REASON_LENGTH = 8
REQUEST_TTL = timedelta(days=3)  # an unapproved request goes stale
APPROVAL_TTL = timedelta(hours=24)  # an approval must be acted on soon
TEMP_CREDENTIAL_TTL = timedelta(hours=1)


class ResetState(enum.StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    EXECUTED = "executed"  # the temporary credential is out, waiting for the owner
    COMPLETED = "completed"  # the owner set a new password with it
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class ResetFacts:
    state: ResetState
    domain_id: int
    requested_by: str
    requested_at: datetime
    approved_by: str | None = None
    approved_at: datetime | None = None
    expires_at: datetime | None = None  # of the temporary credential


@dataclass(frozen=True, slots=True)
class ResetAuthorization:
    """Whether one step of a helpdesk reset may happen, and why (not)."""

    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


def _no(reason: str) -> ResetAuthorization:
    return ResetAuthorization(False, reason)


_YES = ResetAuthorization(True, "allowed")


def authorize_request(
    requester: OperatorFacts, *, domain_id: int, reason: str
) -> ResetAuthorization:
    if not requester.active:
        return _no(f"operator {requester.username!r} is not active")
    if not requester.holds_any(REQUEST_RESET_ROLES, domain_id):
        return _no("opening a reset needs the helpdesk role (or owner/domain-admin) for the domain")
    if len(reason.strip()) < MIN_REASON_LENGTH:
        return _no(f"a reason of at least {MIN_REASON_LENGTH} characters is required")
    return _YES


def authorize_approval(
    request: ResetFacts, approver: OperatorFacts, *, now: datetime
) -> ResetAuthorization:
    if request.state is not ResetState.REQUESTED:
        return _no(f"the request is {request.state.value}, not waiting for approval")
    if now - request.requested_at > REQUEST_TTL:
        return _no("the request is stale; open a new one")
    if approver.username == request.requested_by:
        return _no("the operator who requested a reset cannot approve it; ask another approver")
    if not approver.holds(APPROVER, request.domain_id):
        return _no("approving a reset needs the approver role for the mailbox's domain")
    return _YES


def authorize_execution(
    request: ResetFacts, executor: OperatorFacts, *, now: datetime
) -> ResetAuthorization:
    """The requester or the approver executes; the log records all three names."""
    if request.state is not ResetState.APPROVED:
        return _no(f"the request is {request.state.value}; only an approved request is executed")
    assert request.approved_at is not None
    if now - request.approved_at > APPROVAL_TTL:
        return _no("the approval has lapsed; ask for a new approval")
    if not executor.active:
        return _no(f"operator {executor.username!r} is not active")
    if executor.username not in (request.requested_by, request.approved_by):
        return _no("only the requester or the approver of a reset can execute it")
    return _YES


def authorize_completion(request: ResetFacts, *, now: datetime) -> ResetAuthorization:
    """Can the owner use the temporary credential to set a new password now?"""
    if request.state is ResetState.COMPLETED:
        return _no("This temporary credential has already been used. It works once.")
    if request.state is not ResetState.EXECUTED or request.expires_at is None:
        return _no("This temporary credential is not valid.")
    if request.expires_at <= now:
        return _no("This temporary credential has expired. Ask the helpdesk for a new reset.")
    return _YES


def authorize_cancel(request: ResetFacts, operator: OperatorFacts) -> ResetAuthorization:
    if request.state in (ResetState.COMPLETED, ResetState.CANCELLED):
        return _no(f"the request is already {request.state.value}")
    if operator.username in (request.requested_by, request.approved_by) or operator.holds(
        OWNER, request.domain_id
    ):
        return _YES
    return _no("only the requester, the approver or an owner can cancel a reset")


# -- recovery codes (hard rule 4) ---------------------------------------------

RECOVERY_CODE_COUNT = 10
RECOVERY_CODES_LOW = 3  # below this many unused codes, ask for a fresh set
# Crockford-style base32 without I, L, O, U: nothing to misread when typed
# from paper. Ten characters: 50 bits per code, hashed with argon2id.
RECOVERY_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
RECOVERY_CODE_LENGTH = 10
_RECOVERY_CONFUSABLE = str.maketrans({"i": "1", "l": "1", "o": "0", "u": "v"})


def normalize_recovery_code(text: str) -> str | None:
    """The code as stored: lower case, no spaces or dashes; None if it cannot be one."""
    value = re.sub(r"[\s-]", "", text.lower()).translate(_RECOVERY_CONFUSABLE)
    if len(value) != RECOVERY_CODE_LENGTH or any(ch not in RECOVERY_ALPHABET for ch in value):
        return None
    return value


def format_recovery_code(code: str) -> str:
    half = RECOVERY_CODE_LENGTH // 2
    return f"{code[:half]}-{code[half:]}"


def needs_new_recovery_codes(remaining: int) -> bool:
    return remaining < RECOVERY_CODES_LOW


# -- recovery endpoints (hard rule 4) -----------------------------------------

ENDPOINT_KINDS = ("email", "phone")
REVIEW_INTERVAL = timedelta(days=90)
VERIFICATION_TTL = timedelta(minutes=30)
MAX_VERIFICATION_ATTEMPTS = 5
_PHONE = re.compile(r"^\+?[0-9][0-9 ().-]{5,30}$")


@dataclass(frozen=True, slots=True)
class EndpointCheck:
    problems: tuple[str, ...]

    @property
    def allowed(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        return "; ".join(self.problems) if self.problems else "allowed"


def check_recovery_endpoint(
    kind: str, value: str, *, mailbox_domain: str, hosted_domains: frozenset[str]
) -> EndpointCheck:
    """A recovery endpoint must be reachable when the mailbox and its domain are not."""
    problems: list[str] = []
    if kind not in ENDPOINT_KINDS:
        problems.append(f"a recovery endpoint is one of {', '.join(ENDPOINT_KINDS)}")
    elif kind == "email":
        domain = value.rpartition("@")[2].lower()
        if "@" not in value:
            problems.append("not an email address")
        elif domain == mailbox_domain or domain.endswith("." + mailbox_domain):
            problems.append("a recovery email cannot be on the mailbox's own domain")
        elif domain in hosted_domains:
            problems.append("a recovery email cannot be on a domain hosted here")
    elif not _PHONE.match(value.strip()):
        problems.append("not a phone number (digits, optionally starting with +)")
    return EndpointCheck(tuple(problems))


class EndpointFinding(enum.StrEnum):
    UNVERIFIED = "unverified"
    UNREVIEWED = "unreviewed-90-days"
    SAME_DOMAIN = "same-domain"
    HOSTED_DOMAIN = "hosted-domain"


def endpoint_findings(
    *,
    kind: str,
    value: str,
    verified_at: datetime | None,
    reviewed_at: datetime | None,
    mailbox_domain: str,
    hosted_domains: frozenset[str],
    now: datetime,
) -> tuple[EndpointFinding, ...]:
    """What the pre-incident audit flags about one recovery endpoint."""
    found: list[EndpointFinding] = []
    if verified_at is None:
        found.append(EndpointFinding.UNVERIFIED)
    last = reviewed_at or verified_at
    if last is None or now - last > REVIEW_INTERVAL:
        found.append(EndpointFinding.UNREVIEWED)
    if kind == "email":
        domain = value.rpartition("@")[2].lower()
        if domain == mailbox_domain:
            found.append(EndpointFinding.SAME_DOMAIN)
        elif domain in hosted_domains:
            found.append(EndpointFinding.HOSTED_DOMAIN)
    return tuple(found)


# -- app passwords --------------------------------------------------------------

APP_PASSWORD_SCOPES = frozenset({"imap", "smtp"})
MAX_APP_PASSWORD_DAYS = 365


def check_app_password(
    *, name: str, scopes: Iterable[str], expires_at: datetime | None, now: datetime
) -> tuple[str, ...]:
    problems: list[str] = []
    if not name.strip() or len(name.strip()) > 64:
        problems.append("an app password needs a name of 1-64 characters (the client using it)")
    chosen = set(scopes)
    if not chosen:
        problems.append("choose at least one scope: imap, smtp")
    elif not chosen <= APP_PASSWORD_SCOPES:
        problems.append(f"unknown scope(s): {', '.join(sorted(chosen - APP_PASSWORD_SCOPES))}")
    if expires_at is not None:
        if expires_at <= now:
            problems.append("the expiry must be in the future")
        elif expires_at - now > timedelta(days=MAX_APP_PASSWORD_DAYS):
            problems.append(f"an app password lives at most {MAX_APP_PASSWORD_DAYS} days")
    return tuple(problems)


# -- offboarding ----------------------------------------------------------------

DEFAULT_DELETE_GRACE_DAYS = 30
MIN_DELETE_GRACE_DAYS = 1
MAX_DELETE_GRACE_DAYS = 365
