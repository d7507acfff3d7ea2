"""Greeting, CAPABILITY, LOGIN, AUTHENTICATE, STARTTLS and the login limits over real sockets."""

from __future__ import annotations

import asyncio
import base64
import imaplib
import ssl
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from imap.config import LoginLimits
from storage.db import Database
from storage.models import AppPassword, Domain, Mailbox
from tests.imap.conftest import (
    ALICE,
    PASSWORD,
    IMAPWorld,
    Transcript,
    cheap_hash,
    running_imap,
    settings,
)


def _plain(user: str, password: str, authzid: str = "") -> bytes:
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode())


async def test_capability_login_logout(world: IMAPWorld) -> None:
    """Ensure the greeting, CAPABILITY before and after LOGIN, and LOGOUT's BYE."""

    def conversation() -> tuple[tuple[str, ...], tuple[str, ...], str, str]:
        client = imaplib.IMAP4("127.0.0.1", world.port, timeout=10)
        greeting = client.welcome.decode()
        before = client.capabilities
        typ, _ = client.login(ALICE, PASSWORD)
        _, data = client.capability()
        after = tuple(data[0].decode().split())
        bye, _ = client.logout()
        return before, after, greeting + typ, bye

    before, after, greeting, bye = await world.run(conversation)
    assert greeting.startswith("* OK [CAPABILITY IMAP4rev1") and greeting.endswith("OK")
    for cap in ("IMAP4REV1", "LITERAL+", "SASL-IR", "AUTH=PLAIN", "IDLE", "UIDPLUS", "MOVE"):
        assert cap in before
    assert "LOGINDISABLED" not in before and "STARTTLS" not in before
    for cap in ("CONDSTORE", "QUOTA", "SPECIAL-USE", "CHILDREN", "NAMESPACE", "UNSELECT"):
        assert cap in after
    assert "AUTH=PLAIN" not in after
    assert bye == "BYE"


async def test_wrong_password_refused_session_goes_on(world: IMAPWorld, transcript) -> None:
    """Ensure a wrong password gets NO [AUTHENTICATIONFAILED] and a later right one works."""
    t = await transcript()
    await t.expect(b"* OK*")
    await t.send(b"a1 LOGIN alice@acme.test wrong")
    await t.expect(b"a1 NO [AUTHENTICATIONFAILED]*")
    await t.send(b"a2 LOGIN nobody@acme.test wrong")
    await t.expect(b"a2 NO [AUTHENTICATIONFAILED]*")
    await t.send(b'a3 LOGIN alice@acme.test "correct horse battery"')
    await t.expect(b"a3 OK [CAPABILITY IMAP4rev1*")
    await t.send(b"a4 LOGIN alice@acme.test x")
    await t.expect(b"a4 BAD *not allowed*")


async def test_failed_logins_rate_limited(tmp_path: Path, sqlite_db: Database) -> None:
    """Ensure after N failures even the right password is refused with NO [UNAVAILABLE]."""
    limits = LoginLimits(account_failures=3, address_failures=50, failure_delay=0.0)
    async with running_imap(tmp_path, sqlite_db, limits=limits) as world:
        t = await Transcript.open(world.port)
        await t.expect(b"* OK*")
        for n in range(3):
            await t.send(b"f%d LOGIN alice@acme.test nope" % n)
            await t.expect(b"f%d NO [AUTHENTICATIONFAILED]*" % n)
        await t.send(b'f9 LOGIN alice@acme.test "correct horse battery"')
        await t.expect(b"f9 NO [UNAVAILABLE]*")
        # Another account from the same address is still allowed.
        await t.send(b'g1 LOGIN bob@acme.test "correct horse battery"')
        await t.expect(b"g1 OK*")
        await t.close()


async def test_rate_limit_per_client_address(tmp_path: Path, sqlite_db: Database) -> None:
    """Ensure one address spraying many accounts is limited too."""
    limits = LoginLimits(account_failures=50, address_failures=2, failure_delay=0.0)
    async with running_imap(tmp_path, sqlite_db, limits=limits) as world:
        t = await Transcript.open(world.port)
        await t.expect(b"* OK*")
        await t.send(b"a LOGIN carol@acme.test x")
        await t.expect(b"a NO [AUTHENTICATIONFAILED]*")
        await t.send(b"b LOGIN zed@acme.test x")
        await t.expect(b"b NO [AUTHENTICATIONFAILED]*")
        await t.send(b'c LOGIN alice@acme.test "correct horse battery"')
        await t.expect(b"c NO [UNAVAILABLE]*")
        await t.close()


async def test_logindisabled_without_tls(tmp_path: Path, sqlite_db: Database, tls_pair) -> None:
    """Ensure plaintext LOGIN is refused (LOGINDISABLED) and works after STARTTLS."""
    server_ctx, client_ctx = tls_pair
    no_plain = settings(allow_plaintext_on_loopback=False)
    async with running_imap(tmp_path, sqlite_db, settings=no_plain, tls_context=server_ctx) as w:
        t = await Transcript.open(w.port)
        greeting = (await t.expect(b"* OK*"))[0]
        assert b"LOGINDISABLED" in greeting and b"STARTTLS" in greeting
        assert b"AUTH=PLAIN" not in greeting
        await t.send(b'a1 LOGIN alice@acme.test "correct horse battery"')
        await t.expect(b"a1 NO [PRIVACYREQUIRED]*")
        await t.send(b"a2 AUTHENTICATE PLAIN " + _plain(ALICE, PASSWORD))
        await t.expect(b"a2 NO [PRIVACYREQUIRED]*")
        await t.close()

        def over_starttls() -> tuple[tuple[str, ...], str]:
            client = imaplib.IMAP4("127.0.0.1", w.port, timeout=10)
            client.starttls(ssl_context=client_ctx)
            caps = client.capabilities
            typ, _ = client.login(ALICE, PASSWORD)
            client.logout()
            return caps, typ

        caps, typ = await w.run(over_starttls)
        assert "AUTH=PLAIN" in caps and "LOGINDISABLED" not in caps and "STARTTLS" not in caps
        assert typ == "OK"


async def test_implicit_tls(tmp_path: Path, sqlite_db: Database, tls_pair) -> None:
    """Ensure the implicit-TLS listener (port 993 role) serves IMAP over TLS."""
    server_ctx, client_ctx = tls_pair
    no_plain = settings(allow_plaintext_on_loopback=False)
    async with running_imap(
        tmp_path, sqlite_db, settings=no_plain, tls_context=server_ctx, implicit_tls=True
    ) as w:
        t = await Transcript.open(w.port, client_ctx)
        greeting = (await t.expect(b"* OK*"))[0]
        assert b"AUTH=PLAIN" in greeting and b"STARTTLS" not in greeting
        await t.send(b'a1 LOGIN alice@acme.test "correct horse battery"')
        await t.expect(b"a1 OK*")
        await t.close()


async def test_starttls_refuses_pipelined_plaintext(
    tmp_path: Path, sqlite_db: Database, tls_pair
) -> None:
    """Ensure commands pipelined after STARTTLS in plaintext are never executed."""
    server_ctx, _ = tls_pair
    async with running_imap(tmp_path, sqlite_db, tls_context=server_ctx) as w:
        t = await Transcript.open(w.port)
        await t.expect(b"* OK*")
        await t.send(b'a1 STARTTLS\r\na2 LOGIN alice@acme.test "correct horse battery"')
        await t.expect(b"a1 OK*")
        assert await t.closed()
        await t.close()


async def test_authenticate_plain_with_initial_response(world: IMAPWorld, transcript) -> None:
    """Ensure AUTHENTICATE PLAIN works with SASL-IR and with a continuation."""
    t = await transcript()
    await t.expect(b"* OK*")
    await t.send(b"a1 AUTHENTICATE PLAIN " + _plain(ALICE, PASSWORD))
    await t.expect(b"a1 OK [CAPABILITY *")

    t2 = await transcript()
    await t2.expect(b"* OK*")
    await t2.send(b"b1 AUTHENTICATE PLAIN")
    await t2.expect(b"+*")
    await t2.send(_plain(ALICE, "wrong"))
    await t2.expect(b"b1 NO [AUTHENTICATIONFAILED]*")
    await t2.send(b"b2 AUTHENTICATE PLAIN")
    await t2.expect(b"+*")
    await t2.send(b"*")
    await t2.expect(b"b2 BAD*cancel*")
    await t2.send(b"b3 AUTHENTICATE PLAIN " + _plain(ALICE, PASSWORD, authzid=ALICE))
    await t2.expect(b"b3 OK*")

    t3 = await transcript()
    await t3.expect(b"* OK*")
    await t3.send(b"c1 AUTHENTICATE PLAIN " + _plain(ALICE, PASSWORD, authzid="bob@acme.test"))
    await t3.expect(b"c1 NO [AUTHORIZATIONFAILED]*")
    await t3.send(b"c2 AUTHENTICATE CRAM-MD5")
    await t3.expect(b"c2 NO*")


async def test_app_password_with_imap_scope(world: IMAPWorld, transcript) -> None:
    """Ensure an app password logs in only while unrevoked, unexpired and scoped for imap."""
    box = world.mailbox_id(ALICE)
    with world.db.session() as s:
        for name, scopes, expires, revoked in (
            ("phone", "imap,smtp", None, None),
            ("smtp-only", "smtp", None, None),
            ("old", "imap", world.now - timedelta(days=1), None),
            ("revoked", "imap", None, world.now),
        ):
            s.add(AppPassword(mailbox_id=box, name=name, password_hash=cheap_hash(name + "-pw"),
                              scopes=scopes, created_at=world.now, expires_at=expires,
                              revoked_at=revoked))  # fmt: skip
    t = await transcript()
    await t.expect(b"* OK*")
    for n, name in enumerate(("smtp-only", "old", "revoked")):
        await t.send(b"x%d LOGIN alice@acme.test %s-pw" % (n, name.encode()))
        await t.expect(b"x%d NO [AUTHENTICATIONFAILED]*" % n)
    await t.send(b"y LOGIN alice@acme.test phone-pw")
    await t.expect(b"y OK*")


@pytest.mark.parametrize("what", ["mailbox", "domain"])
async def test_suspended_accounts_refused(world: IMAPWorld, transcript, what: str) -> None:
    """Ensure a suspended mailbox or domain cannot log in, even with the right password."""
    with world.db.session() as s:
        mailbox = s.scalars(select(Mailbox).where(Mailbox.local_part == "alice")).one()
        if what == "mailbox":
            mailbox.state = "suspended"
        else:
            s.get(Domain, mailbox.domain_id).state = "suspended"
    t = await transcript()
    await t.expect(b"* OK*")
    await t.send(b'a1 LOGIN alice@acme.test "correct horse battery"')
    await t.expect(b"a1 NO [CONTACTADMIN]*")


async def test_repeat_login_uses_cache_and_sees_password_change(world: IMAPWorld) -> None:
    """Ensure a cached verification stops working once the password hash changes."""
    auth = world.ctx.authenticator
    first = await auth.login(ALICE, PASSWORD, "127.0.0.1")
    assert first.ok and first.principal is not None
    assert first.principal.credential == "password"
    assert len(auth._verified) == 1  # remembered under an HMAC, not the password
    assert all(PASSWORD.encode() not in key for key in auth._verified)
    with world.db.session() as s:
        mailbox = s.scalars(select(Mailbox).where(Mailbox.local_part == "alice")).one()
        mailbox.password_hash = cheap_hash("a new one")
    stale = await auth.login(ALICE, PASSWORD, "127.0.0.1")
    assert not stale.ok
    fresh = await auth.login(ALICE, "a new one", "127.0.0.1")
    assert fresh.ok


async def test_first_login_creates_default_folders(world: IMAPWorld) -> None:
    """Ensure logging in gives the mailbox INBOX and the SPECIAL-USE folders."""
    assert world.store.list_folders(world.mailbox_id()) == []

    def listing() -> list[bytes]:
        client = world.imaplib()
        _, data = client.list()
        client.logout()
        return data

    lines = await world.run(listing)
    assert lines[0] == b'(\\HasNoChildren) "." "INBOX"'
    assert b'(\\HasNoChildren \\Sent) "." "Sent"' in lines
    names = {f.name for f in world.store.list_folders(world.mailbox_id())}
    assert names == {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"}


async def test_autologout_before_login(tmp_path: Path, sqlite_db: Database) -> None:
    """Ensure an idle unauthenticated connection gets BYE Autologout and is closed."""
    async with running_imap(tmp_path, sqlite_db,
                            settings=settings(unauthenticated_timeout=0.3)) as w:  # fmt: skip
        t = await Transcript.open(w.port)
        await t.expect(b"* OK*")
        await t.expect(b"* BYE Autologout*", timeout=3)
        assert await t.closed()
        await t.close()


async def test_shutdown_closes_connections(world: IMAPWorld, transcript) -> None:
    """Ensure close_connections says BYE to live sessions."""
    t = await transcript()
    await t.login()
    assert len(world.ctx.connections) == 1
    world.ctx.close_connections()
    await t.expect(b"* BYE*")
    assert await t.closed()


def test_ssl_module_has_tls() -> None:
    """Ensure the interpreter can run the TLS tests at all."""
    assert ssl.HAS_TLSv1_2


RECHECK = settings(recheck_login=0.2)


@pytest.mark.parametrize("change", ["password reset", "app password revoked", "mailbox suspended"])
async def test_a_session_ends_when_its_login_no_longer_holds(
    tmp_path: Path, sqlite_db: Database, change: str
) -> None:
    """Ensure a logged-in session, also one in IDLE, is ended within the recheck interval
    once its password changes, its app password is revoked or its mailbox is suspended."""
    async with running_imap(tmp_path, sqlite_db, settings=RECHECK) as world:
        box = world.mailbox_id(ALICE)
        with world.db.session() as s:
            s.add(AppPassword(mailbox_id=box, name="phone", password_hash=cheap_hash("phone-pw"),
                              scopes="imap", created_at=world.now))  # fmt: skip
        secret = "phone-pw" if change == "app password revoked" else PASSWORD
        busy, idle = Transcript.open(world.port), Transcript.open(world.port)
        busy, idle = await busy, await idle
        try:
            for t in (busy, idle):
                await t.expect(b"* OK*")
                await t.send(b'a LOGIN alice@acme.test "%s"' % secret.encode())
                await t.expect(b"a OK*")
            await idle.send(b"i IDLE")  # in the authenticated state: nothing selected
            await idle.expect(b"+ *")
            with world.db.session() as s:
                mailbox = s.get(Mailbox, box)
                assert mailbox is not None
                if change == "password reset":
                    mailbox.password_hash = cheap_hash("a new one")
                elif change == "app password revoked":
                    s.scalars(select(AppPassword)).one().revoked_at = world.now
                else:
                    mailbox.state = "suspended"
            await asyncio.sleep(0.3)
            await busy.send(b"n NOOP")
            await busy.expect(b"* BYE Login no longer valid*")
            assert await busy.closed()
            await idle.expect(b"* BYE Login no longer valid*")
            assert await idle.closed()
        finally:
            await busy.close()
            await idle.close()


async def test_a_session_goes_on_while_its_login_holds(tmp_path: Path, sqlite_db: Database) -> None:
    """Ensure the recheck lets a session whose login is unchanged go on."""
    async with running_imap(tmp_path, sqlite_db, settings=RECHECK) as world:
        t = await Transcript.open(world.port)
        try:
            await t.expect(b"* OK*")
            await t.send(b'a LOGIN alice@acme.test "%s"' % PASSWORD.encode())
            await t.expect(b"a OK*")
            for n in range(3):
                await asyncio.sleep(0.25)
                await t.send(b"n%d NOOP" % n)
                await t.expect(b"n%d OK*" % n)
        finally:
            await t.close()
