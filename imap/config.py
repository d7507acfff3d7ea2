"""Settings of the IMAP server, as frozen values handed in by the composition root.

Every limit has a name and the reason behind it. The composition root reads
configuration once and builds these; the server never reads configuration.
"""

from __future__ import annotations

from dataclasses import dataclass

from imap.proto.limits import MAX_LINE_LENGTH, MAX_LITERAL_SIZE

# RFC 3501 §5.4: an inactivity autologout timer "MUST be at least 30 minutes".
IDLE_TIMEOUT_SECONDS = 30 * 60
# Before LOGIN a client has nothing to wait for; RFC 3501 §5.4 lets the
# server choose, and a short timer bounds what half-open connections cost.
UNAUTHENTICATED_TIMEOUT_SECONDS = 60.0
# How often a session re-reads its folder when nothing woke it, so changes
# made by other processes (another server, a Maildir tool) are seen.
POLL_INTERVAL_SECONDS = 2.0
# Literals before authentication only carry a user name and a password.
MAX_LITERAL_BEFORE_AUTH = 4096
# Literals other than APPEND's message (search strings, mailbox names).
MAX_COMMAND_LITERAL = 1024 * 1024
# FETCH renders this many messages per worker-thread call, then writes them.
FETCH_BATCH = 64
RECHECK_LOGIN_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class IMAPSettings:
    # RFC 7162 §4: at least 8192 octets per command line, literals excluded.
    max_line_length: int = MAX_LINE_LENGTH
    # RFC 7889 (APPENDLIMIT): the largest message APPEND accepts.
    max_append_size: int = MAX_LITERAL_SIZE
    max_literal_before_auth: int = MAX_LITERAL_BEFORE_AUTH
    max_command_literal: int = MAX_COMMAND_LITERAL
    idle_timeout: float = IDLE_TIMEOUT_SECONDS
    unauthenticated_timeout: float = UNAUTHENTICATED_TIMEOUT_SECONDS
    poll_interval: float = POLL_INTERVAL_SECONDS
    # RFC 3501 §11.1 / RFC 8314: passwords only under TLS. Loopback is exempt
    # only when this is set (a development stack, or a local proxy).
    allow_plaintext_on_loopback: bool = False
    fetch_batch: int = FETCH_BATCH
    # How often a logged-in session checks that its login still holds (the
    # password unchanged, the app password not revoked, the mailbox active).
    recheck_login: float = RECHECK_LOGIN_SECONDS


# Failed-login limits (RFC 3501 §11 leaves brute-force defence to servers;
# these follow the common fail2ban-style window).
ACCOUNT_FAILURES = 5  # failures per account within the window
ADDRESS_FAILURES = 20  # failures per client IP within the window (NAT shares IPs)
FAILURE_WINDOW_SECONDS = 5 * 60
# Answering a failure after a pause slows guessing on one connection.
FAILURE_DELAY_SECONDS = 1.0
# A successful verification is remembered this long, so a client opening
# several connections does not pay argon2 each time.
VERIFY_CACHE_SECONDS = 5 * 60
VERIFY_CACHE_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class LoginLimits:
    account_failures: int = ACCOUNT_FAILURES
    address_failures: int = ADDRESS_FAILURES
    window_seconds: float = FAILURE_WINDOW_SECONDS
    failure_delay: float = FAILURE_DELAY_SECONDS
    cache_seconds: float = VERIFY_CACHE_SECONDS
    cache_entries: int = VERIFY_CACHE_ENTRIES
