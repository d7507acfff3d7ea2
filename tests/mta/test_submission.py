"""Submission over real loopback sockets: TLS before AUTH, sender rules, DKIM, routing."""

from __future__ import annotations

import asyncio
import base64
import smtplib
from datetime import UTC, datetime, timedelta

import dkim as dkimpy
import pytest
from sqlalchemy import select

from admin.services import directory as d
from admin.services import rules
from mta import dkim
from mta.resolver import DNS
from mta.smtp_auth import AuthLimits
from mta.submission import SubmissionSettings
from storage.models import AppPassword, Delegation, RoutingEntry
from tests.mta.conftest import seed
from tests.mta.support import client_tls, hash_password, outbound_stack

MESSAGE = (
    "From: Alice <alice@acme.test>\r\nTo: {to}\r\nSubject: report\r\n"
    "Date: Sat, 28 Nov 2026 12:00:00 +0000\r\nMessage-ID: <r1@acme.test>\r\n"
    "\r\nFigures attached.\r\n"
)


def _message(to: str, sender: str = "Alice <alice@acme.test>") -> bytes:
    return MESSAGE.format(to=to).replace("Alice <alice@acme.test>", sender).encode()


@pytest.fixture
async def stack(tmp_path, sqlite_db):
    now = datetime.now(UTC) - timedelta(seconds=1)
    owner = seed(sqlite_db, now)
    async with outbound_stack(tmp_path, sqlite_db) as s:
        s.owner_id, s.now = owner, now  # type: ignore[attr-defined]
        yield s


def _send(stack, sender: str, rcpts: list[str], data: bytes, **kw) -> dict:
    with stack.smtp(**kw) as client:
        return client.sendmail(sender, rcpts, data)


async def test_remote_submission_signed_and_verified(stack) -> None:
    """Ensure remote mail reaches the sink over TLS with RSA and Ed25519 signatures that verify."""
    stack.keys.ensure("acme.test", datetime.now(UTC))
    for record in stack.keys.records("acme.test"):
        stack.dns.add(record.name, "TXT", record.value)
    refused = await asyncio.to_thread(_send, stack, "alice@acme.test", ["bob@remote.example"],
                                      _message("bob@remote.example"))  # fmt: skip
    assert refused == {}
    [got] = await stack.sink.wait_for(1)
    assert got.mail_from == "alice@acme.test" and got.rcpt_tos == ["bob@remote.example"]
    assert got.tls, "STARTTLS offered by the sink was used"
    lookup = DNS(stack.dns.settings()).dkim_txt
    results = dkim.verify(got.content, lookup)
    assert {r.algorithm for r in results} == {"rsa-sha256", "ed25519-sha256"}
    assert all(r.passed and r.domain == "acme.test" for r in results), results
    # And straight through dkimpy, signature by signature.
    assert all(dkimpy.DKIM(got.content).verify(idx=i, dnsfunc=lookup) for i in range(2))


async def test_local_recipient_goes_through_the_governed_path(stack) -> None:
    """Ensure a hosted recipient is delivered by DeliveryAgent and logged in the routing log."""
    await asyncio.to_thread(_send, stack, "alice@acme.test", ["bob@acme.test"],
                            _message("bob@acme.test"), implicit=False)  # fmt: skip
    [path] = stack.maildir_new("bob@acme.test")
    content = path.read_bytes()
    assert b"DKIM-Signature:" in content and b"with ESMTPSA" in content
    with stack.db.session() as s:
        entries = list(s.scalars(select(RoutingEntry).where(
            RoutingEntry.recipient == "bob@acme.test").order_by(RoutingEntry.id)))  # fmt: skip
    assert [e.decision for e in entries] == ["accept", "deliver"]
    assert entries[0].mail_from == "alice@acme.test"


async def test_remote_recipient_logged_as_authenticated_relay(stack) -> None:
    """Ensure a remote recipient's decision is in the routing log with its queue id."""
    await asyncio.to_thread(_send, stack, "alice@acme.test", ["x@remote.example"],
                            _message("x@remote.example"))  # fmt: skip
    with stack.db.session() as s:
        entries = list(s.scalars(select(RoutingEntry).where(
            RoutingEntry.recipient == "x@remote.example").order_by(RoutingEntry.id)))  # fmt: skip
    assert [(e.decision, e.reason) for e in entries] == [
        ("accept", "relay-authenticated"), ("forward", "relay-authenticated")]
    assert entries[-1].queue_id


async def test_domain_hosted_since_the_last_message_is_delivered_locally(stack) -> None:
    """Ensure whether a recipient's domain is hosted follows the directory from one message to
    the next: relayed while it is not, delivered to the new mailbox once it is."""
    from tests.mta.conftest import ACTOR

    await asyncio.to_thread(_send, stack, "alice@acme.test", ["x@newco.test"],
                            _message("x@newco.test"))  # fmt: skip
    with stack.db.session() as s:
        client = d.get_domain(s, "acme.test").client
        newco = d.create_domain(s, actor=ACTOR, now=stack.now, client=client, name="newco.test")
        d.create_mailbox(s, actor=ACTOR, now=stack.now, domain=newco, local_part="x",
                         owner=d.Owner(person_id=stack.owner_id))  # fmt: skip
    await asyncio.to_thread(_send, stack, "alice@acme.test", ["x@newco.test"],
                            _message("x@newco.test"))  # fmt: skip
    with stack.db.session() as s:
        entries = list(s.scalars(select(RoutingEntry).where(
            RoutingEntry.recipient == "x@newco.test").order_by(RoutingEntry.id)))  # fmt: skip
    # (The queue runner may also have delivered the first message here by now.)
    submitted = [(e.decision, e.reason) for e in entries if not e.session.startswith("queue-")]
    assert submitted == [("accept", "relay-authenticated"), ("forward", "relay-authenticated"),
                         ("accept", "deliver-mailbox"), ("deliver", "deliver-mailbox")]
    assert stack.maildir_new("x@newco.test")


async def test_sending_as_someone_else_refused(stack) -> None:
    """Ensure another user's envelope sender or From header is refused with 553 5.7.1."""

    def attempt() -> tuple[tuple[int, bytes], tuple[int, bytes]]:
        with stack.smtp() as client:
            envelope = client.mail("bob@acme.test")
            client.rset()
            client.mail("alice@acme.test")
            client.rcpt("x@remote.example")
            header = client.data(_message("x@remote.example", sender="bob@acme.test"))
            return envelope, header

    envelope, header = await asyncio.to_thread(attempt)
    assert envelope[0] == 553 and envelope[1].startswith(b"5.7.1")
    assert header[0] == 553 and header[1].startswith(b"5.7.1")
    assert stack.sink.messages == []


async def test_alias_and_delegation_may_be_sent_as(stack) -> None:
    """Ensure a documented alias and a live delegation allow sending, an expired one does not."""
    with stack.db.session() as s:
        acme = d.get_domain(s, "acme.test")
        rules.add_alias(s, actor="t", now=stack.now, domain=acme, local_part="sales",
                        target="alice@acme.test", owner=d.Owner(person_id=stack.owner_id),
                        purpose="sales desk answered by alice", expires_at=None)  # fmt: skip
        alice, bob, carol = (d.get_mailbox(s, f"{n}@acme.test") for n in ("alice", "bob", "carol"))
        for box, expires in ((bob, stack.now + timedelta(days=5)), (carol, stack.now)):
            s.add(Delegation(mailbox_id=box.id, delegate_mailbox_id=alice.id,
                             owner_person_id=stack.owner_id, purpose="assistant sends for boss",
                             created_by="t", created_at=stack.now - timedelta(days=1),
                             expires_at=expires, enabled=True))  # fmt: skip

    def attempt(sender: str) -> int:
        with stack.smtp() as client:
            return client.mail(sender)[0]

    assert await asyncio.to_thread(attempt, "sales@acme.test") == 250
    assert await asyncio.to_thread(attempt, "bob@acme.test") == 250
    assert await asyncio.to_thread(attempt, "carol@acme.test") == 553


async def test_auth_without_tls_refused(stack) -> None:
    """Ensure port 587 neither offers nor accepts AUTH before STARTTLS."""

    def attempt() -> tuple[bool, int, int]:
        with smtplib.SMTP("127.0.0.1", stack.port("submission"), timeout=10) as client:
            client.ehlo("client.example")
            offered = client.has_extn("auth")
            code, _ = client.docmd("AUTH", "PLAIN AGFsaWNlQGFjbWUudGVzdABhbGljZS1wYXNzd29yZC0x")
            mail, _ = client.mail("alice@acme.test")
            return offered, code, mail

    offered, code, mail = await asyncio.to_thread(attempt)
    assert not offered
    assert code in (530, 538)
    assert mail == 530


async def test_plaintext_auth_on_loopback_when_configured(tmp_path, sqlite_db) -> None:
    """Ensure ``submission_plaintext_on_loopback`` lets a loopback client AUTH in clear (the
    load tests' setting), and that such a session still goes through the governed path."""
    seed(sqlite_db, datetime.now(UTC) - timedelta(seconds=1))
    settings = SubmissionSettings(plaintext_on_loopback=True)
    async with outbound_stack(tmp_path, sqlite_db, submission=settings) as s:

        def attempt() -> tuple[bool, dict]:
            with smtplib.SMTP("127.0.0.1", s.port("submission"), timeout=10) as client:
                client.ehlo("client.example")
                offered = client.has_extn("auth")
                client.login("alice@acme.test", "alice-password-1")
                refused = client.sendmail("alice@acme.test", ["bob@acme.test"],
                                          _message("bob@acme.test"))  # fmt: skip
                return offered, refused

        offered, refused = await asyncio.to_thread(attempt)
        assert offered and refused == {}
        assert list((tmp_path / "mail" / "acme.test" / "bob" / "new").iterdir())


async def test_auth_over_implicit_tls(stack) -> None:
    """Ensure port 465 offers AUTH at once (aio-libs/aiosmtpd#281) and both mechanisms work."""

    def attempt() -> tuple[str, int, int]:
        with smtplib.SMTP_SSL("127.0.0.1", stack.port("submissions"), context=client_tls(),
                              timeout=10) as client:  # fmt: skip
            client.ehlo("client.example")
            client.user, client.password = "alice@acme.test", "alice-password-1"
            plain = client.auth("PLAIN", client.auth_plain)[0]
            mail = client.mail("alice@acme.test")[0]
            features = client.esmtp_features.get("auth", "")
        with smtplib.SMTP_SSL("127.0.0.1", stack.port("submissions"), context=client_tls(),
                              timeout=10) as client:  # fmt: skip
            client.ehlo("client.example")
            client.user, client.password = "alice@acme.test", "alice-password-1"
            login = client.auth("LOGIN", client.auth_login, initial_response_ok=False)[0]
        return features, plain, login + mail - 250

    features, plain, login = await asyncio.to_thread(attempt)
    assert "PLAIN" in features and "LOGIN" in features
    assert plain == 235 and login == 235


async def test_mail_needs_authentication(stack) -> None:
    """Ensure MAIL on an encrypted but unauthenticated session is refused with 530."""

    def attempt() -> int:
        with stack.smtp(login=None) as client:
            return client.mail("alice@acme.test")[0]

    assert await asyncio.to_thread(attempt) == 530


async def test_app_password_needs_smtp_scope(stack) -> None:
    """Ensure an app password works for SMTP only with the smtp scope."""
    with stack.db.session() as s:
        alice = d.get_mailbox(s, "alice@acme.test")
        for name, scopes in (("phone", "imap"), ("laptop", "imap,smtp")):
            s.add(AppPassword(mailbox_id=alice.id, name=name, scopes=scopes,
                              password_hash=hash_password(f"{name}-app-secret"),
                              created_at=stack.now))  # fmt: skip

    def attempt(password: str) -> int:
        try:
            with stack.smtp(password=password):
                return 235
        except smtplib.SMTPAuthenticationError as exc:
            return exc.smtp_code

    assert await asyncio.to_thread(attempt, "phone-app-secret") == 535
    assert await asyncio.to_thread(attempt, "laptop-app-secret") == 235


async def test_suspended_mailbox_cannot_submit(stack) -> None:
    """Ensure a suspended mailbox is refused even with the right password."""
    with stack.db.session() as s:
        d.get_mailbox(s, "alice@acme.test").state = "suspended"

    with pytest.raises(smtplib.SMTPAuthenticationError) as info:
        await asyncio.to_thread(stack.smtp)
    assert info.value.smtp_code == 535 and b"disabled" in info.value.smtp_error


async def test_failed_auth_rate_limited(tmp_path, sqlite_db) -> None:
    """Ensure repeated failures lock the account out, even for the right password."""
    seed(sqlite_db, datetime.now(UTC))
    limits = AuthLimits(account_failures=3, address_failures=100, failure_delay=0)
    async with outbound_stack(tmp_path, sqlite_db, auth=limits, start_queue=False) as stack:

        def attempt(password: str, user: str = "alice@acme.test") -> int:
            blob = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
            with stack.smtp(login=None) as client:
                return client.docmd("AUTH", f"PLAIN {blob}")[0]

        codes = [await asyncio.to_thread(attempt, "wrong") for _ in range(3)]
        assert codes == [535, 535, 535]
        assert await asyncio.to_thread(attempt, "alice-password-1") == 454
        assert await asyncio.to_thread(attempt, "bob-password-22", "bob@acme.test") == 235


async def test_repeat_auth_skips_argon2_until_the_password_changes(stack) -> None:
    """Ensure an AUTH on a new connection is answered from the verification cache (kept under
    an HMAC, never the password) and that a changed password ends that at once."""
    auth = stack.handler.authenticator
    first = await auth.authenticate("alice@acme.test", "alice-password-1", "127.0.0.1")
    assert first.principal is not None and len(auth._verified) == 1
    assert all(b"alice-password-1" not in key for key in auth._verified)
    again = await auth.authenticate("alice@acme.test", "alice-password-1", "127.0.0.1")
    assert again.principal == first.principal and len(auth._verified) == 1
    with stack.db.session() as s:
        d.get_mailbox(s, "alice@acme.test").password_hash = hash_password("a new one")
    stale = await auth.authenticate("alice@acme.test", "alice-password-1", "127.0.0.1")
    assert stale.principal is None and stale.reply.code == 535
    fresh = await auth.authenticate("alice@acme.test", "a new one", "127.0.0.1")
    assert fresh.principal is not None


@pytest.mark.parametrize("change", ["password", "app-password"])
async def test_session_ends_when_its_login_no_longer_holds(tmp_path, sqlite_db, change) -> None:
    """Ensure an authenticated session's next MAIL after a password change (or the revocation
    of the app password it used) gets 421 and the connection is closed."""
    seed(sqlite_db, datetime.now(UTC))
    limits = AuthLimits(failure_delay=0, recheck_seconds=0)
    async with outbound_stack(tmp_path, sqlite_db, auth=limits, start_queue=False) as stack:
        password = None
        if change == "app-password":
            with stack.db.session() as s:
                s.add(AppPassword(mailbox_id=d.get_mailbox(s, "alice@acme.test").id,
                                  name="phone", scopes="smtp", created_at=datetime.now(UTC),
                                  password_hash=hash_password("phone-app-secret")))  # fmt: skip
            password = "phone-app-secret"

        def session() -> tuple[dict, int, bytes, bool]:
            with stack.smtp(password=password) as client:
                first = client.sendmail("alice@acme.test", ["bob@acme.test"],
                                        _message("bob@acme.test"))  # fmt: skip
                with stack.db.session() as s:
                    mailbox = d.get_mailbox(s, "alice@acme.test")
                    if change == "password":
                        mailbox.password_hash = hash_password("changed by a reset")
                    else:
                        for app in s.scalars(select(AppPassword)):
                            app.revoked_at = datetime.now(UTC)
                code, text = client.mail("alice@acme.test")
                try:
                    client.noop()
                    closed = False
                except smtplib.SMTPServerDisconnected:
                    closed = True
                return first, code, text, closed

        first, code, text, closed = await asyncio.to_thread(session)
    assert first == {}
    assert code == 421 and b"no longer valid" in text
    assert closed
