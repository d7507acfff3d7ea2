"""Sender Rewriting Scheme: pure address tests, then forwards and bounces through the stack."""

from __future__ import annotations

import asyncio
import smtplib
from datetime import UTC, datetime, timedelta

import pytest

from admin.services import directory as d
from admin.services import rules
from mta.srs import SRS, SRSError, is_srs, load_or_create_secret
from tests.mta.conftest import seed
from tests.mta.support import HOSTNAME, Stack, outbound_stack

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SRS_OURS = SRS(b"k1", "fwd.example.net")


def test_forward_and_reverse_round_trip() -> None:
    """Ensure SRS0 rewriting reverses to the original sender, also lower-cased."""
    rewritten = SRS_OURS.forward("Jane.Doe@far.example", NOW)
    local, _, domain = rewritten.rpartition("@")
    assert domain == "fwd.example.net" and local.startswith("SRS0=") and is_srs(local)
    assert SRS_OURS.reverse(rewritten, NOW + timedelta(days=3)) == "Jane.Doe@far.example"
    assert SRS_OURS.reverse(rewritten.lower(), NOW).lower() == "jane.doe@far.example"


def test_forged_and_expired_addresses_refused() -> None:
    """Ensure a wrong key, a tampered hash or an old timestamp does not reverse."""
    rewritten = SRS_OURS.forward("a@far.example", NOW)
    with pytest.raises(SRSError):
        SRS(b"other-key", "fwd.example.net").reverse(rewritten, NOW)
    with pytest.raises(SRSError):
        SRS_OURS.reverse(rewritten.replace("far.example", "evil.example"), NOW)
    with pytest.raises(SRSError):
        SRS_OURS.reverse(rewritten, NOW + timedelta(days=22))
    with pytest.raises(SRSError):
        SRS_OURS.reverse("SRS0=zz=ab@fwd.example.net", NOW)


def test_null_and_own_senders_unchanged() -> None:
    """Ensure the null sender and addresses already on the SRS domain are not rewritten."""
    assert SRS_OURS.forward("", NOW) == ""
    ours = SRS_OURS.forward("a@far.example", NOW)
    assert SRS_OURS.forward(ours, NOW) == ours


def test_reforwarding_makes_srs1() -> None:
    """Ensure an SRS0 address of another forwarder becomes SRS1 pointing back at it."""
    first = SRS(b"k0", "first.example").forward("a@far.example", NOW)
    second = SRS_OURS.forward(first, NOW)
    assert second.startswith("SRS1=") and second.endswith("@fwd.example.net")
    assert SRS_OURS.reverse(second, NOW) == first
    assert SRS_OURS.forward(second, NOW).startswith("SRS1=")  # no growth on a third hop


def test_secret_is_kept_private(tmp_path) -> None:
    """Ensure the HMAC key is created once with 0600 and read back unchanged."""
    path = tmp_path / "srs.key"
    first = load_or_create_secret(path)
    assert load_or_create_secret(path) == first and path.stat().st_mode & 0o777 == 0o600


@pytest.fixture
async def stack(tmp_path, sqlite_db):
    now = datetime.now(UTC) - timedelta(seconds=1)
    owner = seed(sqlite_db, now)
    with sqlite_db.session() as s:
        acme = d.set_domain_policy(s, actor="t", now=now, domain=d.get_domain(s, "acme.test"),
                                   external_forwarding=True)  # fmt: skip
        rules.add_forward(s, actor="t", now=now, mailbox=d.get_mailbox(s, "bob@acme.test"),
                          target="bob.private@remote.example", owner=d.Owner(person_id=owner),
                          purpose="bob travels this month", expires_at=now + timedelta(days=9),
                          keep_copy=False)  # fmt: skip
        assert acme.external_forwarding
    async with outbound_stack(tmp_path, sqlite_db) as s:
        yield s


def _inbound(stack: Stack, sender: str, rcpt: str) -> tuple[int, bytes]:
    data = (f"From: {sender or 'MAILER-DAEMON@far.example'}\r\nTo: {rcpt}\r\n"
            "Subject: hi\r\n\r\nhello\r\n").encode()  # fmt: skip
    with smtplib.SMTP("127.0.0.1", stack.port("smtp"), timeout=10) as client:
        client.ehlo("mx.far.example")
        client.mail(sender)
        code, text = client.rcpt(rcpt)
        if code != 250:
            return code, text
        return client.data(data)


async def test_forward_leaves_with_srs_sender(stack) -> None:
    """Ensure outside mail is forwarded with an SRS0 sender that reverses to the original."""
    code, _ = await asyncio.to_thread(_inbound, stack, "jane@far.example", "bob@acme.test")
    assert code == 250
    [got] = await stack.sink.wait_for(1)
    assert got.rcpt_tos == ["bob.private@remote.example"]
    assert got.mail_from.startswith("SRS0=") and got.mail_from.endswith(f"@{HOSTNAME}")
    assert stack.srs.reverse(got.mail_from, datetime.now(UTC)) == "jane@far.example"


async def test_bounce_to_srs_address_returns_to_sender(stack) -> None:
    """Ensure a bounce to our SRS address goes back to the original sender, still from <>."""
    stack.dns.add("far.example", "MX", "10 mx.far.example.")
    stack.dns.add("mx.far.example", "A", "127.0.0.1")
    bounce_to = stack.srs.forward("jane@far.example", datetime.now(UTC))
    code, _ = await asyncio.to_thread(_inbound, stack, "", bounce_to)
    assert code == 250
    [got] = await stack.sink.wait_for(1)
    assert got.mail_from == "<>" and got.rcpt_tos == ["jane@far.example"]  # aiosmtpd spells null


async def test_forged_srs_address_refused(stack) -> None:
    """Ensure an SRS address that does not verify is refused at RCPT."""
    forged = f"SRS0=abcdef=ab=x.example=y@{HOSTNAME}"
    code, text = await asyncio.to_thread(_inbound, stack, "", forged)
    assert code == 550 and text.startswith(b"5.1.1")
