"""Passwords verified a moment ago, so that argon2id runs once per client and not per login.

argon2id is slow on purpose (about 64 ms of one core, storage/secrets.py),
and mail clients log in often: IMAP clients open several connections, phones
submit one message per SMTP connection. As Dovecot's auth cache does, a
password that verified against a stored hash is remembered for a few minutes
under ``HMAC(server secret, mailbox, user name, password)``: the plain
password is never stored, the secret never leaves the process, and an entry
only short-cuts argon2 while the hash it was verified against is still one of
the account's (a password change or a revoked app password takes effect at
once). Safe to share between threads.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence

from storage.secrets import verify_password
from storage.workers import Workers

# argon2id takes about 64 ms of one core and 19 MiB here (storage/secrets.py):
# verifications for IMAP LOGIN and SMTP AUTH run in threads of their own, so
# that a burst of logins (every client after a restart) never queues storage
# work, and two at a time, one per core of a small node: 50 first logins at
# once waited up to 3.3 s with one thread (40 verifications: 1.8 s with one
# thread, 0.9 s with two).
VERIFIERS = Workers(threads=2, name="argon2")

# (credential label, e.g. "password" or "app-password:7"; its argon2id hash)
Credential = tuple[str, str]


class VerifiedPasswords:
    def __init__(
        self,
        *,
        seconds: float,
        entries: int,
        secret: bytes | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = seconds
        self.entries = entries
        self._secret = secret or secrets.token_bytes(32)
        self._clock = clock
        self._verified: OrderedDict[bytes, tuple[float, str]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._verified)

    def __iter__(self) -> Iterator[bytes]:
        """The keys remembered (HMACs; there is nothing else to see)."""
        with self._lock:
            return iter(list(self._verified))

    def verify(
        self, mailbox_id: int, username: str, password: str, candidates: Sequence[Credential]
    ) -> Credential | None:
        """The credential the password matches (blocking: argon2 on a miss), or None."""
        key = self._key(mailbox_id, username, password)
        cached = self._cached(key)
        if cached is not None:
            for label, stored in candidates:
                if hmac.compare_digest(stored, cached):
                    return label, stored
        for label, stored in candidates:
            if verify_password(stored, password):
                self._remember(key, stored)
                return label, stored
        return None

    def stamp(self, stored: str) -> bytes:
        """A keyed digest of a stored hash: what a session keeps to show later which
        hash its login verified against (the hash itself stays in the database)."""
        return hmac.new(self._secret, b"stamp\0" + stored.encode(), hashlib.sha256).digest()

    def still_holds(self, credentials: Sequence[Credential], label: str, stamp: bytes) -> bool:
        """Whether the credential a session logged in with is still among ``credentials``
        with the same hash (not changed, reset or revoked since)."""
        stored = dict(credentials).get(label)
        return stored is not None and hmac.compare_digest(self.stamp(stored), stamp)

    def _key(self, mailbox_id: int, username: str, password: str) -> bytes:
        material = f"{mailbox_id}\0{username.lower()}\0{password}".encode()
        return hmac.new(self._secret, material, hashlib.sha256).digest()

    def _cached(self, key: bytes) -> str | None:
        with self._lock:
            entry = self._verified.get(key)
            if entry is None:
                return None
            expires, stored = entry
            if expires <= self._clock():
                del self._verified[key]
                return None
            return stored

    def _remember(self, key: bytes, stored: str) -> None:
        with self._lock:
            self._verified[key] = (self._clock() + self.seconds, stored)
            self._verified.move_to_end(key)
            while len(self._verified) > self.entries:
                self._verified.popitem(last=False)
