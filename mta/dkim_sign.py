"""DKIM signing, rsa-sha256 and ed25519-sha256 (RFC 6376 §3.5, §5; RFC 8463), with OpenSSL.

dkimpy signs RSA with Python's own big-number arithmetic, about 15 ms per
message for a 2048-bit key, and canonicalizes with many small regular
expressions per line: signing was most of the CPU of a submission. This
module produces the same relaxed/relaxed signatures with the key step in
OpenSSL through ``cryptography`` (well under a millisecond). Verification and
everything else stay with dkimpy, and the tests verify these signatures with
dkimpy against the published keys.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from dataclasses import dataclass
from functools import lru_cache

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

# Runs of whitespace that are not already a single space: replacing every
# lone space with itself was most of the time of relaxed canonicalization.
_WSP_RUN = re.compile(rb"\t[ \t]*| [ \t]+")
_LINE_END = re.compile(rb"\r?\n")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
MAX_LINE = 76  # fold the signature header like dkimpy does, for picky receivers


RSA_SHA256 = "rsa-sha256"
ED25519_SHA256 = "ed25519-sha256"


@lru_cache(maxsize=64)
def _private_key(pem: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key


@lru_cache(maxsize=64)
def _ed25519_key(seed_b64: bytes) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(base64.b64decode(seed_b64))


def _split(message: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Header fields as (name, raw value including folding) and the body, CRLF-normalized."""
    if message.count(b"\n") != message.count(b"\r\n"):  # two C scans; mail is CRLF already
        message = _LINE_END.sub(b"\r\n", message)
    match = _HEADER_END.search(message)
    head, body = (message[: match.start()], message[match.end():]) if match else (message, b"")
    fields: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + b"\r\n" + line)
        elif b":" in line:
            name, _, value = line.partition(b":")
            fields.append((name, value))
    return fields, body


def relaxed_header(name: bytes, value: bytes) -> bytes:
    """RFC 6376 §3.4.2."""
    value = value.replace(b"\r\n", b"")
    value = _WSP_RUN.sub(b" ", value).strip(b" ")
    return name.strip().lower() + b":" + value


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376 §3.4.4: trailing whitespace removed, runs folded, trailing empty lines dropped.

    On the whole body at once (no run of spaces and tabs spans a CRLF), not
    line by line: a Python loop per line was most of the signing time.
    """
    if b"\t" in body or b"  " in body:
        body = _WSP_RUN.sub(b" ", body)
    body = body.replace(b" \r\n", b"\r\n")
    if body.endswith(b" "):
        body = body[:-1]
    end = len(body)
    while end >= 2 and body[end - 2 : end] == b"\r\n":
        end -= 2
    return body[:end] + b"\r\n" if end else b""


@dataclass(frozen=True, slots=True)
class Canonical:
    """What every signature of one message shares: its header fields and body hash."""

    fields: list[tuple[bytes, bytes]]
    body_hash: str


def canonicalize(message: bytes) -> Canonical:
    fields, body = _split(message)
    return Canonical(fields, base64.b64encode(hashlib.sha256(relaxed_body(body)).digest()).decode())


def signature(
    message: bytes | Canonical, private: bytes, selector: str, domain: str,
    headers: list[bytes], algorithm: str = RSA_SHA256,
) -> bytes:  # fmt: skip
    """A ``DKIM-Signature:`` header line (with CRLF) for the message, relaxed/relaxed.

    ``message`` may be given already canonicalized, to sign it with several keys.

    ``private`` is the key as ``mta.dkim.SigningKey`` holds it: PEM for RSA,
    the base64 seed for Ed25519.

    ``headers`` are the field names to sign, lower case; a name listed once more
    than it occurs is "oversigned", so that adding such a field breaks the signature.
    """
    canonical = message if isinstance(message, Canonical) else canonicalize(message)
    fields, body_hash = canonical.fields, canonical.body_hash
    # RFC 6376 §5.4.2: for each listed name take the last unused instance, bottom up.
    remaining: dict[bytes, list[bytes]] = {}
    for name, value in fields:
        remaining.setdefault(name.strip().lower(), []).append(value)
    signed: list[bytes] = []
    for name in headers:
        instances = remaining.get(name)
        if instances:
            signed.append(relaxed_header(name, instances.pop()))
    tags = (
        f"v=1; a={algorithm}; c=relaxed/relaxed; d={domain}; s={selector}; "
        f"t={int(time.time())}; h={':'.join(h.decode() for h in headers)}; bh={body_hash}; b="
    )
    digest = hashlib.sha256()
    for line in signed:
        digest.update(line + b"\r\n")
    digest.update(relaxed_header(b"DKIM-Signature", b" " + tags.encode()))
    if algorithm == RSA_SHA256:
        rsa_key = _private_key(private)
        sig = rsa_key.sign(digest.digest(), padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    elif algorithm == ED25519_SHA256:
        # RFC 8463 §3: PureEdDSA over the SHA-256 hash of the signed data.
        sig = _ed25519_key(private).sign(digest.digest())
    else:
        raise ValueError(f"unsupported DKIM algorithm {algorithm}")
    return _fold(b"DKIM-Signature: " + tags.encode() + base64.b64encode(sig)) + b"\r\n"


def _fold(header: bytes) -> bytes:
    """Fold at tag boundaries, and inside b= by plain width (whitespace is ignored there)."""
    out, line = [], b""
    for part in header.split(b" "):
        while len(part) > MAX_LINE:  # only b= and bh= values are this long
            room = max(MAX_LINE - len(line) - 1, 16)
            out.append((line + b" " + part[:room]).strip())
            line, part = b"", part[room:]
        if len(line) + len(part) + 1 > MAX_LINE and line:
            out.append(line)
            line = part
        else:
            line = (line + b" " + part) if line else part
    out.append(line)
    return b"\r\n\t".join(out)
