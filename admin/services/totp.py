"""RFC 6238 TOTP for operators, and the box that keeps TOTP seeds encrypted at rest.

A TOTP seed must be readable to check a code, so it cannot be hashed like a
password. It is sealed with AES-256-GCM under a key kept in the data folder
(``<data>/secrets/identity.key``, mode 0600), never in the database: a stolen
database alone yields no second factor. The operator id is bound as
associated data so a sealed seed cannot be moved to another operator's row.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import struct
from pathlib import Path
from urllib.parse import quote

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

TOTP_STEP_SECONDS = 30  # RFC 6238 §4.1 default X
TOTP_DIGITS = 6  # RFC 4226 §5.3
TOTP_WINDOW = 1  # accept one step either side for clock drift (RFC 6238 §5.2)
SECRET_BYTES = 20  # RFC 4226 §4 recommends 160 bits
KEY_FILE = "secrets/identity.key"
_NONCE_BYTES = 12


def hotp(secret: bytes, counter: int, digits: int = TOTP_DIGITS) -> str:
    """RFC 4226 §5.3 HOTP with HMAC-SHA-1."""
    digest = hmac.new(secret, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def totp_step(unix_time: float, step: int = TOTP_STEP_SECONDS) -> int:
    return int(unix_time // step)


def totp(secret: bytes, unix_time: float) -> str:
    return hotp(secret, totp_step(unix_time))


def verify_totp(secret: bytes, code: str, unix_time: float, *, last_step: int = 0) -> int | None:
    """The time step the code matches (never one at or before ``last_step``), or None."""
    code = code.strip().replace(" ", "")
    if len(code) != TOTP_DIGITS or not code.isdigit():
        return None
    now_step = totp_step(unix_time)
    for step in range(now_step - TOTP_WINDOW, now_step + TOTP_WINDOW + 1):
        if step > last_step and hmac.compare_digest(hotp(secret, step), code):
            return step
    return None


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def b32(secret: bytes) -> str:
    return base64.b32encode(secret).decode().rstrip("=")


def from_b32(text: str) -> bytes:
    text = text.strip().replace(" ", "").upper()
    return base64.b32decode(text + "=" * (-len(text) % 8))


def provisioning_uri(secret: bytes, *, account: str, issuer: str = "Mailward") -> str:
    """The otpauth:// URI authenticator apps import (Google Authenticator key URI format)."""
    label = quote(f"{issuer}:{account}")
    return (
        f"otpauth://totp/{label}?secret={b32(secret)}&issuer={quote(issuer)}&digits={TOTP_DIGITS}"
    )


class SecretBox:
    """AES-256-GCM sealing of small secrets under a data-folder key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the identity key must be 32 bytes")
        self._aead = AESGCM(key)

    @classmethod
    def from_data_dir(cls, data_dir: Path) -> SecretBox:
        """Load ``<data>/secrets/identity.key``, creating it (0600) on first use."""
        path = data_dir / KEY_FILE
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process made it first
            else:
                try:
                    os.write(fd, secrets.token_bytes(32))
                    os.fsync(fd)
                finally:
                    os.close(fd)
        return cls(path.read_bytes())

    def seal(self, secret: bytes, *, context: str) -> str:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, secret, context.encode())
        return base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, sealed: str, *, context: str) -> bytes | None:
        try:
            raw = base64.urlsafe_b64decode(sealed.encode())
            return self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode())
        except (InvalidTag, ValueError):
            return None
