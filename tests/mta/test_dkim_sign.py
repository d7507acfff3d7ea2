"""The OpenSSL RSA signer against dkimpy's verifier, on awkward messages."""

from __future__ import annotations

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mta import dkim_sign
from mta.dkim import Algorithm, SigningKey, sign

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption())  # fmt: skip
PUBLIC = KEY.public_key().public_bytes(serialization.Encoding.DER,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)  # fmt: skip


def _lookup(name: bytes, timeout: float = 5) -> bytes:
    import base64

    assert name == b"sel._domainkey.acme.test."
    return b"v=DKIM1; k=rsa; p=" + base64.b64encode(PUBLIC)


MESSAGES = {
    "plain": b"From: a@acme.test\r\nTo: b@x.example\r\nSubject: hi\r\n\r\nbody\r\n",
    "folded and spaced": (b"From: Alice  <a@acme.test>  \r\nSubject: a long\r\n"
                          b"\t folded   subject\r\nTo: b@x.example\r\n\r\n"
                          b"line with trailing   \r\n\r\n\r\n"),
    "empty body": b"From: a@acme.test\r\nSubject: nothing\r\n\r\n",
    "lf endings": b"From: a@acme.test\nTo: b@x.example\nSubject: lf\n\nbody\nmore\n",
    "two to fields": b"From: a@acme.test\r\nTo: b@x.example\r\nTo: c@y.example\r\n\r\nx\r\n",
    "long body": b"From: a@acme.test\r\nSubject: big\r\n\r\n" + b"0123456789 \t x\r\n" * 2000,
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_signature_verifies_with_dkimpy(name: str) -> None:
    """Ensure every awkward message signed by the OpenSSL path verifies with dkimpy."""
    message = MESSAGES[name].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    signed = sign(message, SigningKey(Algorithm.RSA, "sel", PEM), None, "acme.test")
    assert dkim.verify(signed, dnsfunc=_lookup)


def test_tampering_breaks_the_signature() -> None:
    """Ensure a changed body or an added From header fails verification (From is oversigned)."""
    message = MESSAGES["plain"]
    signed = sign(message, SigningKey(Algorithm.RSA, "sel", PEM), None, "acme.test")
    assert not dkim.verify(signed.replace(b"body", b"bodx"), dnsfunc=_lookup)
    header_end = signed.index(b"\r\n\r\n")
    extra = signed[:header_end] + b"\r\nFrom: evil@x.example" + signed[header_end:]
    assert not dkim.verify(extra, dnsfunc=_lookup)


def test_relaxed_canonicalization_rules() -> None:
    """Ensure header and body canonicalization follow RFC 6376 §3.4.2 and §3.4.4."""
    assert dkim_sign.relaxed_header(b"SubJect ", b" a \r\n\t b  ") == b"subject:a b"
    assert dkim_sign.relaxed_body(b"a  b \r\n\r\n\r\n") == b"a b\r\n"
    assert dkim_sign.relaxed_body(b"") == b""


def _relaxed_body_by_line(body: bytes) -> bytes:
    """RFC 6376 §3.4.4 spelled out line by line: the reference for the whole-body version."""
    import re

    lines = [re.sub(rb"[ \t]+", b" ", line).rstrip(b" ") for line in body.split(b"\r\n")]
    while lines and lines[-1] == b"":
        lines.pop()
    return b"".join(line + b"\r\n" for line in lines)


def test_whole_body_canonicalization_matches_the_line_by_line_rules() -> None:
    """Ensure the fast relaxed body equals the line-by-line definition on random bodies."""
    import random

    rng = random.Random(6376)
    alphabet = [b"a", b"b", b" ", b"\t", b"\r\n", b"\r", b"\n", b"  ", b"\r\n\r\n", b"\xc3\xa9"]
    for _ in range(20_000):
        body = b"".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 14)))
        assert dkim_sign.relaxed_body(body) == _relaxed_body_by_line(body), body


def test_several_keys_share_one_canonicalization() -> None:
    """Ensure signing with RSA and Ed25519 at once gives two signatures dkimpy verifies."""
    import base64

    from cryptography.hazmat.primitives.asymmetric import ed25519

    from mta.dkim import sign_all

    ed = ed25519.Ed25519PrivateKey.generate()
    seed = ed.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())  # fmt: skip
    ed_public = ed.public_key().public_bytes(serialization.Encoding.Raw,
                                             serialization.PublicFormat.Raw)  # fmt: skip
    keys = [SigningKey(Algorithm.RSA, "sel", PEM),
            SigningKey(Algorithm.ED25519, "ed", base64.b64encode(seed))]  # fmt: skip

    def lookup(name: bytes, timeout: float = 5) -> bytes:
        if name == b"ed._domainkey.acme.test.":
            return b"v=DKIM1; k=ed25519; p=" + base64.b64encode(ed_public)
        return _lookup(name)

    signed = sign_all(MESSAGES["folded and spaced"], keys, "acme.test")
    assert signed.count(b"DKIM-Signature:") == 2
    verifier = dkim.DKIM(signed)
    assert verifier.verify(idx=0, dnsfunc=lookup)
    assert verifier.verify(idx=1, dnsfunc=lookup)
