"""DKIM signing and verification (RFC 6376, RFC 8463) as pure functions over bytes.

``sign`` returns the message with one DKIM-Signature prepended; ``sign_all``
adds one signature per key (Mailward signs with RSA-2048 and Ed25519: RFC
8463 §1 expects Ed25519 next to RSA until verifiers catch up). Every
signature covers the message as submitted, never another DKIM-Signature.
dkimpy does the cryptography; DNS is an argument (``TxtLookup``), so tests
and the inbound checker choose the resolver.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dkim

from mta import dkim_sign

log = logging.getLogger("mailward.dkim")

# relaxed/relaxed survives the header refolding and whitespace changes of
# relays (RFC 6376 §3.4); simple body canonicalization breaks on them.
CANONICALIZE = (b"relaxed", b"relaxed")
# RFC 6376 §5.4.1 recommends these; From is signed twice (oversigned) by
# dkimpy's frozen list so a second From cannot be added unnoticed.
SIGNED_HEADERS = (
    b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"reply-to", b"in-reply-to",
    b"references", b"mime-version", b"content-type", b"content-transfer-encoding",
    b"list-unsubscribe", b"list-unsubscribe-post",
)  # fmt: skip

# (name, timeout) -> the TXT record's bytes, or None when there is none.
TxtLookup = Callable[..., bytes | None]


class Algorithm(enum.StrEnum):
    RSA = "rsa-sha256"
    ED25519 = "ed25519-sha256"


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key in the form dkimpy takes: PKCS#1 PEM (RSA) or base64 seed (Ed25519)."""

    algorithm: Algorithm
    selector: str
    private: bytes


@dataclass(frozen=True, slots=True)
class SignatureResult:
    domain: str
    selector: str
    algorithm: str
    result: str  # RFC 8601 §2.7.1: pass, fail, neutral, temperror, permerror
    b: str = ""  # the first characters of b=, to tell signatures apart (RFC 6008)

    @property
    def passed(self) -> bool:
        return self.result == "pass"


def sign(message: bytes, key: SigningKey, selector: str | None, domain: str) -> bytes:
    """The message with a DKIM-Signature for ``domain`` prepended."""
    return signature(message, key, selector, domain) + message


def signature(message: bytes, key: SigningKey, selector: str | None, domain: str) -> bytes:
    return _signatures(message, [(key, selector or key.selector)], domain)


def sign_all(message: bytes, keys: Sequence[SigningKey], domain: str) -> bytes:
    """One signature per key, each over the unsigned message (canonicalized once)."""
    return _signatures(message, [(key, key.selector) for key in keys], domain) + message


def _signatures(message: bytes, keys: Sequence[tuple[SigningKey, str]], domain: str) -> bytes:
    canonical = dkim_sign.canonicalize(message)
    present = {name.strip().lower() for name, _value in canonical.fields}
    include = [h for h in SIGNED_HEADERS if h in present] or [b"from"]
    # OpenSSL for the key step (mta.dkim_sign); From is oversigned as dkimpy does.
    return b"".join(
        dkim_sign.signature(canonical, key.private, selector, domain.encode("idna").decode(),
                            [*include, b"from"], algorithm=key.algorithm.value)
        for key, selector in keys
    )  # fmt: skip


def verify(message: bytes, lookup: TxtLookup) -> list[SignatureResult]:
    """Verify every DKIM-Signature of a message; one result each, in header order."""
    try:
        verifier = dkim.DKIM(message, logger=log, timeout=5)
    except dkim.MessageFormatError:
        return []
    count = sum(1 for name, _ in verifier.headers if name.lower() == b"dkim-signature")
    results: list[SignatureResult] = []
    for index in range(count):
        verifier = dkim.DKIM(message, logger=log, timeout=5)
        try:
            ok = verifier.verify(idx=index, dnsfunc=lookup)
            result = "pass" if ok else "fail"
        except dkim.DnsTimeoutError:
            result = "temperror"
        except (dkim.KeyFormatError, dkim.ValidationError, dkim.MessageFormatError):
            result = "permerror" if not getattr(verifier, "domain", None) else "fail"
        except dkim.DKIMException:
            result = "permerror"
        fields = getattr(verifier, "signature_fields", None) or {}
        results.append(
            SignatureResult(
                domain=_text(fields.get(b"d", b"")).lower(),
                selector=_text(fields.get(b"s", b"")),
                algorithm=_text(fields.get(b"a", b"")),
                result=result,
                b=re.sub(r"\s+", "", _text(fields.get(b"b", b"")))[:8],
            )
        )
    return results


def _text(value: bytes | str) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value
