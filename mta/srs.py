"""Sender Rewriting Scheme: forwarded mail keeps passing SPF at its destination.

A forward leaves from our servers with the original envelope sender, which
the sender's SPF record does not authorize. So the queue rewrites a sender
that is not on a hosted domain into an address of ours (Shevek's SRS, as
libsrs2 and postsrsd do)::

    SRS0=HHHHHH=TT=remote.example=user@<srs domain>

``TT`` is the day (base32, modulo 1024) and ``HHHHHH`` an HMAC over ``TT``,
domain and local part, so only we can mint addresses that reverse and a
bounce address stops working after ``max_age_days``. Re-forwarding an
address that is already SRS0 of another forwarder makes an SRS1 address
that points back at that forwarder instead of growing without end.

Our inbound server lower-cases local parts, so the hash and timestamp use
lower-case base32 rather than libsrs2's case-sensitive base64.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from policy.addresses import MAX_LOCAL_PART

HASH_LENGTH = 6  # base32 characters: 30 bits
DEFAULT_MAX_AGE_DAYS = 21  # libsrs2's default bounce lifetime
_B32 = "abcdefghijklmnopqrstuvwxyz234567"
TIME_SLOTS = 1024  # RFC-less convention of libsrs2: 10 bits of days
SEP = "="


class SRSError(ValueError):
    """An SRS address that is malformed, forged or too old."""


def _day(now: datetime) -> int:
    return int(now.astimezone(UTC).timestamp() // 86400)


def _timestamp(now: datetime) -> str:
    day = _day(now) % TIME_SLOTS
    return _B32[day >> 5] + _B32[day & 31]


def is_srs(local: str) -> bool:
    head = local[:5].lower()
    return head in ("srs0=", "srs1=", "srs0+", "srs0-", "srs1+", "srs1-")


@dataclass(frozen=True, slots=True)
class SRS:
    secret: bytes
    domain: str
    max_age_days: int = DEFAULT_MAX_AGE_DAYS

    def _hash(self, *parts: str) -> str:
        mac = hmac.new(self.secret, "\0".join(p.lower() for p in parts).encode(), hashlib.sha256)
        return base64.b32encode(mac.digest()).decode().lower()[:HASH_LENGTH]

    def forward(self, sender: str, now: datetime) -> str:
        """The envelope sender to use when forwarding mail from ``sender``."""
        if not sender:
            return sender  # the null sender stays null (RFC 5321 §4.5.5)
        local, _, domain = sender.rpartition("@")
        domain = domain.lower()
        if domain == self.domain.lower():
            return sender  # already ours
        if is_srs(local) and local[:4].lower() == "srs0":
            # SRS0=HHH=TT=dom=local@first.forwarder -> SRS1=ours=first.forwarder==HHH=TT=...
            opaque = local[5:]
            rewritten = f"SRS1={self._hash(domain, opaque)}={domain}=={opaque}"
        elif is_srs(local):
            # SRS1=HHH=first==rest@other -> keep pointing at the first forwarder
            first, _, rest = local[5:].partition(SEP)[2].partition("==")
            rewritten = f"SRS1={self._hash(first, rest)}={first}=={rest}"
        else:
            stamp = _timestamp(now)
            rewritten = f"SRS0={self._hash(stamp, domain, local)}={stamp}={domain}={local}"
        if len(rewritten.encode()) > MAX_LOCAL_PART:
            # RFC 5321 §4.5.3.1.1: such a local part may be refused on the way
            # back; sending with the original sender is the lesser harm.
            return sender
        return f"{rewritten}@{self.domain}"

    def reverse(self, address: str, now: datetime) -> str:
        """The address a bounce to an SRS address must go to; ``SRSError`` if forged."""
        local, _, domain = address.rpartition("@")
        if domain.lower() != self.domain.lower() or not is_srs(local):
            raise SRSError("not an SRS address of ours")
        kind, body = local[:4].lower(), local[5:]
        if kind == "srs1":
            mac, _, rest = body.partition(SEP)
            first, sep, opaque = rest.partition("==")
            if not sep or not hmac.compare_digest(mac.lower(), self._hash(first, opaque)):
                raise SRSError("bad SRS1 hash")
            return f"SRS0={opaque}@{first}"
        fields = body.split(SEP, 3)
        if len(fields) != 4:
            raise SRSError("malformed SRS0 address")
        mac, stamp, orig_domain, orig_local = fields
        if not hmac.compare_digest(mac.lower(), self._hash(stamp, orig_domain, orig_local)):
            raise SRSError("bad SRS0 hash")
        if len(stamp) != 2 or any(c not in _B32 for c in stamp.lower()):
            raise SRSError("bad SRS0 timestamp")
        then = (_B32.index(stamp[0].lower()) << 5) | _B32.index(stamp[1].lower())
        age = (_day(now) - then) % TIME_SLOTS
        if age > self.max_age_days:
            raise SRSError("SRS0 address expired")
        return f"{orig_local}@{orig_domain}"


def load_or_create_secret(path: Path) -> bytes:
    """The HMAC key, made on first start (0600) and kept: old bounces must still verify."""
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secret)
        os.fsync(fd)
    finally:
        os.close(fd)
    return secret
