"""Hashing of secrets: argon2id for passwords, SHA-256 for high-entropy tokens.

Nothing secret is stored or logged in clear. Passwords chosen by people get
argon2id (slow on purpose); random tokens with at least 128 bits of entropy
get SHA-256, which is enough because they cannot be guessed and lets a token
be found by its hash in one indexed lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# argon2id with OWASP's recommended parameters (19 MiB, 2 passes, 1 lane).
# The library default (RFC 9106's 64 MiB, 4 lanes) made every IMAP/SMTP login
# of a mail server that phones reconnect to all day allocate 64 MiB: after a
# restart, 50 clients logging in at once raised the process's peak memory by
# that much and queued for seconds. Hashes made with other parameters still
# verify: the parameters are part of each encoded hash.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


@cache
def dummy_hash() -> str:
    """A hash of nothing anyone knows: unknown users are checked against it, so a
    guesser cannot tell them from known ones by the time an answer takes."""
    return hash_password(secrets.token_urlsafe(16))


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_token(nbytes: int = 24) -> str:
    """A URL-safe random token; 24 bytes is 192 bits."""
    return secrets.token_urlsafe(nbytes)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a, b)
