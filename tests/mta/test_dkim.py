"""DKIM keys and signatures: generation, 0600 storage, rotation order, sign and verify."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mta import dkim
from mta.dkim_keys import KeyStore

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
MESSAGE = (b"From: Alice <alice@acme.test>\r\nTo: bob@remote.example\r\nSubject: hi\r\n"
           b"Date: Sat, 28 Nov 2026 12:00:00 +0000\r\nMessage-ID: <m@acme.test>\r\n\r\n"
           b"Hello Bob.\r\n")  # fmt: skip


@pytest.fixture
def keys(tmp_path) -> KeyStore:
    return KeyStore(tmp_path / "dkim")


def _lookup(keys: KeyStore, domain: str):
    published = {r.name: r.value for r in keys.records(domain)}

    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        value = published.get(name.decode().rstrip("."))
        return value.encode() if value else None

    return lookup


def test_keys_generated_private(keys, tmp_path) -> None:
    """Ensure a domain gets RSA-2048 and Ed25519 keys, files 0600 in a 0700 folder."""
    keys.ensure("acme.test", NOW)
    folder = tmp_path / "dkim" / "acme.test"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["mw202611e.ed25519.key", "mw202611r.rsa.key", "state.json"]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in folder.iterdir())
    assert folder.stat().st_mode & 0o777 == 0o700
    [rsa, ed] = keys.records("acme.test")
    assert rsa.name == "mw202611r._domainkey.acme.test" and "k=rsa; p=MIIBIjAN" in rsa.value
    assert ed.name == "mw202611e._domainkey.acme.test" and "k=ed25519; p=" in ed.value
    assert "PRIVATE" not in rsa.zone_line() and rsa.zone_line().startswith(rsa.name + ". IN TXT")


def test_both_signatures_verify(keys) -> None:
    """Ensure sign_all adds an RSA and an Ed25519 signature that both verify with dkimpy."""
    keys.ensure("acme.test", NOW)
    signed = dkim.sign_all(MESSAGE, keys.signing_keys("acme.test"), "acme.test")
    assert signed.endswith(MESSAGE) and signed.count(b"DKIM-Signature:") == 2
    results = dkim.verify(signed, _lookup(keys, "acme.test"))
    assert [(r.algorithm, r.result) for r in results] == [
        ("rsa-sha256", "pass"), ("ed25519-sha256", "pass")]  # fmt: skip
    tampered = signed.replace(b"Hello Bob.", b"Hello Eve.")
    assert {r.result for r in dkim.verify(tampered, _lookup(keys, "acme.test"))} == {"fail"}


def test_sign_is_one_signature(keys) -> None:
    """Ensure the single-key sign() prepends exactly one signature for the given selector."""
    keys.ensure("acme.test", NOW)
    key = keys.signing_keys("acme.test")[0]
    signed = dkim.sign(MESSAGE, key, "mw202611r", "acme.test")
    assert signed.count(b"DKIM-Signature:") == 1 and b"s=mw202611r" in signed


def test_rotation_publishes_before_switching(keys) -> None:
    """Ensure rotate stages a published generation first, switches second, retire removes."""
    keys.ensure("acme.test", NOW)
    old = keys.signing_keys("acme.test")
    staged = keys.rotate("acme.test", NOW)
    assert staged.action == "staged" and staged.generation == "mw202611b"
    assert {r.name.split(".")[0] for r in staged.records} == {
        "mw202611r", "mw202611e", "mw202611br", "mw202611be"}  # fmt: skip
    assert keys.signing_keys("acme.test") == old, "nothing signs with an unpublished key"
    signed_before = dkim.sign_all(MESSAGE, old, "acme.test")
    activated = keys.rotate("acme.test", NOW)
    assert activated.action == "activated"
    assert [k.selector for k in keys.signing_keys("acme.test")] == ["mw202611br", "mw202611be"]
    # Mail signed before the switch still verifies while the old key is retiring.
    assert all(r.passed for r in dkim.verify(signed_before, _lookup(keys, "acme.test")))
    assert keys.retire("acme.test") == ("mw202611",)
    assert {r.name.split(".")[0] for r in keys.records("acme.test")} == {"mw202611br", "mw202611be"}
