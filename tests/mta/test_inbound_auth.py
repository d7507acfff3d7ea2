"""Inbound SPF, DKIM and DMARC on the real inbound server, against the test DNS server."""

from __future__ import annotations

import asyncio
import json
import smtplib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from admin.services import directory as d
from mta import dkim
from mta.dkim_keys import KeyStore
from storage.models import RoutingEntry
from storage.models_outbound import DomainAuthPolicy
from tests.mta.conftest import seed
from tests.mta.support import Stack, outbound_stack


def _message(sender: str, extra: str = "") -> bytes:
    return (f"From: {sender}\r\nTo: alice@acme.test\r\nSubject: statement\r\n"
            f"Message-ID: <s-{sender}@x>\r\n{extra}\r\n"
            "Your statement is ready.\r\n").encode()  # fmt: skip


@pytest.fixture
async def stack(tmp_path, sqlite_db):
    seed(sqlite_db, datetime.now(UTC) - timedelta(seconds=1))
    async with outbound_stack(tmp_path, sqlite_db, start_queue=False) as s:
        yield s


def _signed(stack: Stack, domain: str, data: bytes) -> bytes:
    keys = KeyStore(stack.data_dir / "remote-keys")
    keys.ensure(domain, datetime.now(UTC))
    for record in keys.records(domain):
        stack.dns.add(record.name, "TXT", record.value)
    return dkim.sign_all(data, keys.signing_keys(domain), domain)


def _send(stack: Stack, sender: str, data: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", stack.port("smtp"), timeout=10) as client:
        client.ehlo("mx.sender.example")
        client.mail(sender)
        client.rcpt("alice@acme.test")
        return client.data(data)


def _delivered(stack: Stack) -> bytes:
    [path] = stack.maildir_new("alice@acme.test")
    return path.read_bytes()


def _auth_results(content: bytes) -> str:
    head = content.split(b"\n\n", 1)[0].decode()
    lines = head.replace("\n\t", " ").splitlines()
    return "\n".join(x for x in lines if x.lower().startswith("authentication-results:"))


def _log(stack: Stack) -> list[RoutingEntry]:
    with stack.db.session() as s:
        return list(s.scalars(select(RoutingEntry).where(
            RoutingEntry.recipient == "alice@acme.test").order_by(RoutingEntry.id)))  # fmt: skip


async def test_spf_dkim_dmarc_pass(stack) -> None:
    """Ensure aligned SPF and DKIM passes are recorded in Authentication-Results and the log."""
    stack.dns.add("example.org", "TXT", "v=spf1 ip4:127.0.0.0/8 -all")
    stack.dns.add("_dmarc.example.org", "TXT", "v=DMARC1; p=reject; rua=mailto:d@example.org")
    data = _signed(stack, "example.org", _message("news@example.org"))
    code, _ = await asyncio.to_thread(_send, stack, "bounces@example.org", data)
    assert code == 250
    results = _auth_results(_delivered(stack))
    assert results.startswith("Authentication-Results: mail.mailward.test;")
    assert "spf=pass smtp.mailfrom=bounces@example.org" in results
    assert results.count("dkim=pass header.d=example.org") == 2
    assert "header.a=ed25519-sha256" in results and "header.a=rsa-sha256" in results
    assert "dmarc=pass (p=reject) header.from=example.org" in results
    trace = json.loads(_log(stack)[-1].trace)
    assert ["auth", "spf=pass dkim=pass dmarc=pass", "auth-checked"] in trace


async def test_dmarc_reject_refused(stack) -> None:
    """Ensure mail failing DMARC of a p=reject domain is refused and logged as a reject."""
    stack.dns.add("bank.example", "TXT", "v=spf1 ip4:192.0.2.1 -all")
    stack.dns.add("_dmarc.bank.example", "TXT", "v=DMARC1; p=reject")
    code, text = await asyncio.to_thread(_send, stack, "alerts@bank.example",
                                         _message("alerts@bank.example"))  # fmt: skip
    assert code == 550 and text.startswith(b"5.7.1")
    assert stack.maildir_new("alice@acme.test") == []
    entry = _log(stack)[-1]
    assert (entry.decision, entry.reason) == ("reject", "dmarc-reject")
    assert "spf=fail dkim=none dmarc=fail" in entry.trace


async def test_failures_shown_when_policy_is_none(stack) -> None:
    """Ensure softfail, a broken signature and a DMARC fail under p=none are delivered, marked."""
    stack.dns.add("shop.example", "TXT", "v=spf1 ip4:192.0.2.0/24 ~all")
    stack.dns.add("_dmarc.shop.example", "TXT", "v=DMARC1; p=none")
    data = _signed(stack, "shop.example", _message("offers@shop.example"))
    data = data.replace(b"Your statement", b"Your altered statement")
    code, _ = await asyncio.to_thread(_send, stack, "offers@shop.example", data)
    assert code == 250
    results = _auth_results(_delivered(stack))
    assert "spf=softfail smtp.mailfrom=offers@shop.example" in results
    assert "dkim=fail header.d=shop.example" in results
    assert "dmarc=fail (p=none) header.from=shop.example" in results


async def test_no_records_is_none(stack) -> None:
    """Ensure a domain publishing nothing gets spf=none, dkim=none, dmarc=none and is delivered."""
    code, _ = await asyncio.to_thread(_send, stack, "a@quiet.example", _message("a@quiet.example"))
    assert code == 250
    results = _auth_results(_delivered(stack))
    assert "spf=none" in results and "dkim=none" in results
    assert "dmarc=none header.from=quiet.example" in results


async def test_recipient_domain_may_opt_out_of_dmarc_reject(stack) -> None:
    """Ensure a hosted domain that turned DMARC rejection off receives the mail, marked fail."""
    with stack.db.session() as s:
        s.add(DomainAuthPolicy(domain_id=d.get_domain(s, "acme.test").id, dmarc_reject=False))
    stack.dns.add("bank.example", "TXT", "v=spf1 -all")
    stack.dns.add("_dmarc.bank.example", "TXT", "v=DMARC1; p=reject")
    code, _ = await asyncio.to_thread(_send, stack, "x@bank.example", _message("x@bank.example"))
    assert code == 250
    assert "dmarc=fail (p=reject)" in _auth_results(_delivered(stack))


@pytest.mark.parametrize("published", [None, "v=DMARC1; p=none"])
async def test_spoof_of_hosted_domain_refused(stack, published) -> None:
    """Ensure mail claiming a hosted From domain without AUTH is refused, whatever DNS says."""
    if published:
        stack.dns.add("_dmarc.acme.test", "TXT", published)
    code, text = await asyncio.to_thread(_send, stack, "bob@acme.test", _message("bob@acme.test"))
    assert code == 550 and text.startswith(b"5.7.1")
    entry = _log(stack)[-1]
    assert (entry.decision, entry.reason) == ("reject", "spoofed-hosted-domain")


async def test_forged_authentication_results_dropped(stack) -> None:
    """Ensure an Authentication-Results field claiming our name is removed, others are kept."""
    forged = ("Authentication-Results: mail.mailward.test; spf=pass\r\n\tsmtp.mailfrom=x\r\n"
              "Authentication-Results: other.example; dkim=pass\r\n")  # fmt: skip
    data = _message("a@quiet.example", extra=forged)
    code, _ = await asyncio.to_thread(_send, stack, "a@quiet.example", data)
    assert code == 250
    results = _auth_results(_delivered(stack)).splitlines()
    assert len(results) == 2
    assert "spf=none" in results[0] and "smtp.mailfrom=x" not in results[0]
    assert results[1] == "Authentication-Results: other.example; dkim=pass"
