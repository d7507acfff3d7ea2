"""The submission server (RFC 6409): port 587 with STARTTLS, port 465 with implicit TLS.

aiosmtpd owns the wire; the hooks here are thin:

- AUTH (PLAIN, LOGIN) only over TLS. aiosmtpd's ``auth_require_tls`` only
  knows STARTTLS and refuses AUTH on an implicit-TLS connection
  (aio-libs/aiosmtpd#281), so ``SubmissionSMTP`` records implicit TLS when
  the connection is made and enforces "TLS before AUTH" itself (``538
  5.7.11``); on 587, aiosmtpd's ``require_starttls`` answers ``530`` first.
  Credentials are checked by ``SMTPAuthenticator`` in a worker thread.
- MAIL needs an authenticated session, and the envelope sender must be an
  address the user may send as (``policy.sending``), else ``553 5.7.1``.
- RCPT: hosted recipients go through the governed ``DeliveryAgent.decide``
  (routing log included); remote ones are an authenticated relay.
- DATA: every From address must be allowed too; Date and Message-ID are
  added when missing (RFC 6409 §8), the message is DKIM-signed for the From
  domain with both keys, and ``DeliveryAgent.deliver`` writes local copies
  and the outbound spool entry in one unit before ``250`` is answered.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import socket
import ssl
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.parser import BytesHeaderParser
from email.utils import format_datetime, getaddresses, make_msgid
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from aiosmtpd.smtp import Envelope as SMTPEnvelope
from aiosmtpd.smtp import Session as SMTPSession

from mta import dkim
from mta.delivery import Accepted, Connection, DeliveryAgent, Envelope
from mta.dkim_keys import KeyStore
from mta.inbound import NON_ASCII_REFUSED, InboundSMTP, with_pipelining
from mta.message import header_block
from mta.relay import decide_outside_directory
from mta.smtp_auth import AuthLimits, SMTPAuthenticator
from mta.threads import blocking
from policy import replies
from policy.addresses import Address, AddressError
from policy.sending import SenderFacts, may_send_as, may_send_from
from storage.credentials import Principal
from storage.db import StorageUnavailable
from storage.directory import VersionedCache, current_directory_version
from storage.senders import sender_facts

log = logging.getLogger("mailward.submission")

ENCRYPTION_REQUIRED = "538 5.7.11 Encryption required for requested authentication mechanism"


@dataclass(frozen=True, slots=True)
class SubmissionSettings:
    # RFC 5321 §4.5.3.1.8: at least 100 recipients must be accepted.
    max_recipients: int = 100
    max_message_bytes: int = 50 * 1024 * 1024
    timeout_seconds: float = 300.0  # RFC 5321 §4.5.3.2.7
    sign_dkim: bool = True
    plaintext_on_loopback: bool = False  # AUTH in clear from 127.0.0.0/8 and ::1


@dataclass(slots=True)
class _Transaction:
    """Per-MAIL state: the pipeline envelope and what the sender check read."""

    env: Envelope
    facts: SenderFacts
    version: int  # the directory version the facts were read at
    remote: int = 0


class SubmissionSMTP(InboundSMTP):
    def __init__(self, handler: SubmissionHandler, *, implicit_tls: bool, **kwargs: Any) -> None:
        self.implicit_tls = implicit_tls
        super().__init__(handler, authenticator=_capture, auth_require_tls=False, **kwargs)

    def connection_made(self, transport: Any) -> None:
        first = self.transport is None
        super().connection_made(transport)
        if first and self.implicit_tls and self.session is not None:
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is not None:
                self.session.ssl = {"ssl_object": ssl_object, "cipher": ssl_object.cipher()}

    @property
    def secure(self) -> bool:
        """May this connection authenticate: encrypted, or loopback when configured."""
        if self.session is None:
            return False
        if self.session.ssl is not None:
            return True
        handler: SubmissionHandler = self.event_handler
        return handler.settings.plaintext_on_loopback and _is_loopback(self.session.peer)

    async def smtp_AUTH(self, arg: str) -> None:
        if self.session is not None and self.session.host_name and not self.secure:
            await self.push(ENCRYPTION_REQUIRED)  # RFC 4954 §4, RFC 8314 §3
            return
        await super().smtp_AUTH(arg)

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._verify(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._verify(await super().auth_LOGIN(_, args))

    async def _verify(self, captured: AuthResult) -> AuthResult:
        if not captured.success:
            return captured  # aiosmtpd already answered (bad base64, "*" abort)
        creds: LoginPassword = captured.auth_data
        handler: SubmissionHandler = self.event_handler
        peer = self.session.peer if self.session is not None else None
        client_ip = peer[0] if isinstance(peer, tuple) else None
        outcome = await handler.authenticator.authenticate(
            creds.login.decode("utf-8", "replace"), creds.password.decode("utf-8", "replace"),
            client_ip,
        )  # fmt: skip
        if outcome.principal is None:
            return AuthResult(success=False, handled=False, message=str(outcome.reply))
        if self.session is not None:
            _recheck_later(self.session, handler.authenticator.limits)
        return AuthResult(success=True, auth_data=outcome.principal, message=str(outcome.reply))


def _capture(
    server: SMTP, session: SMTPSession, envelope: SMTPEnvelope, mechanism: str, data: Any
) -> AuthResult:
    # aiosmtpd's authenticator hook is synchronous; the real (threaded) check
    # happens in ``SubmissionSMTP._verify`` on the credentials captured here.
    return AuthResult(success=True, auth_data=data)


def _recheck_later(session: SMTPSession, limits: AuthLimits) -> None:
    session.mailward_recheck_at = time.monotonic() + limits.recheck_seconds  # type: ignore[attr-defined]


def _is_loopback(peer: Any) -> bool:
    try:
        return isinstance(peer, tuple) and ipaddress.ip_address(peer[0]).is_loopback
    except ValueError:
        return False


def _principal(session: SMTPSession) -> Principal | None:
    data = getattr(session, "auth_data", None)
    return data if session.authenticated and isinstance(data, Principal) else None


def _conn(session: SMTPSession, principal: Principal) -> Connection:
    conn: Connection | None = getattr(session, "mailward", None)
    if conn is None:
        peer = session.peer
        conn = Connection(session_id=secrets.token_hex(6),
                          client_ip=peer[0] if isinstance(peer, tuple) else None)  # fmt: skip
        session.mailward = conn  # type: ignore[attr-defined]
    conn.helo, conn.tls, conn.authenticated = session.host_name, session.ssl is not None, (
        principal.address
    )
    return conn


def from_addresses(data: bytes) -> list[Address] | None:
    """The From header's addresses; None when it is missing or unparseable."""
    headers = BytesHeaderParser().parsebytes(header_block(data) + b"\r\n\r\n")
    values = headers.get_all("From") or []
    out: list[Address] = []
    for _name, addr in getaddresses([str(v) for v in values]):
        try:
            out.append(Address.parse(addr, utf8=True))
        except AddressError:
            return None
    return out or None


class SubmissionHandler:
    """The aiosmtpd handler and everything the submission listeners share (``ctx``)."""

    def __init__(
        self,
        *,
        agent: DeliveryAgent,
        authenticator: SMTPAuthenticator,
        keys: KeyStore | None,
        hostname: str,
        settings: SubmissionSettings,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self.agent = agent
        self.db = agent.db
        self.authenticator = authenticator
        self.keys = keys
        self.hostname = hostname
        self.settings = settings
        self._sender_facts: VersionedCache[int, SenderFacts | None] = VersionedCache()
        self.on_queued = on_queued
        self.inflight = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.connections: weakref.WeakSet[SMTP] = weakref.WeakSet()

    def close_connections(self) -> None:
        for protocol in list(self.connections):
            if protocol.transport is not None:
                protocol.transport.close()

    def _now(self) -> datetime:
        return self.agent.clock()

    async def handle_EHLO(
        self, server: SubmissionSMTP, session: SMTPSession, envelope: SMTPEnvelope,
        hostname: str, responses: list[str],
    ) -> list[str]:  # fmt: skip
        session.host_name = hostname
        if not server.secure:
            # RFC 4954 §4: no AUTH offered before the connection is encrypted.
            responses = [r for r in responses if not r[4:].upper().startswith("AUTH")]
        return with_pipelining(responses)

    async def handle_MAIL(
        self, server: SubmissionSMTP, session: SMTPSession, envelope: SMTPEnvelope,
        address: str, mail_options: list[str],
    ) -> str:  # fmt: skip
        principal = _principal(session)
        if principal is None:
            return str(replies.AUTH_REQUIRED)
        if not await self._login_holds(server, session, principal):
            return str(replies.AUTH_REVOKED)
        if not address.isascii() and not envelope.smtp_utf8:
            return NON_ASCII_REFUSED
        try:
            sender = Address.parse(address, utf8=envelope.smtp_utf8)
        except AddressError:
            # The null sender is nobody's address either (RFC 6409 §6.1).
            return str(replies.SENDER_NOT_ALLOWED if address in ("<>", "") else
                       replies.BAD_ADDRESS)  # fmt: skip
        version, facts = await blocking.run(self._facts, principal.mailbox_id)
        if facts is None:
            return str(replies.ACCOUNT_DISABLED)
        decision = may_send_as(facts, sender, self._now())
        if not decision.allowed:
            log.info("%s may not send as %s: %s", principal.address, sender, decision.reason)
            return str(decision.reply)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        envelope.mailward = _Transaction(Envelope(mail_from=str(sender)), facts, version)  # type: ignore[attr-defined]
        return "250 2.1.0 Sender OK"

    async def _login_holds(
        self, server: SubmissionSMTP, session: SMTPSession, principal: Principal
    ) -> bool:
        """Whether the session's AUTH still holds, checked again at most every
        ``recheck_seconds``; when it does not, the connection is closed after the reply."""
        if time.monotonic() < getattr(session, "mailward_recheck_at", 0.0):
            return True
        try:
            valid = await blocking.run(self.authenticator.still_valid, principal)
        except StorageUnavailable:
            return True  # the login stands until it can be checked
        if valid:
            _recheck_later(session, self.authenticator.limits)
            return True
        log.info("ending the session of %s: its login no longer holds", principal.address)
        if server.transport is not None:  # once the reply is written
            asyncio.get_running_loop().call_soon(server.transport.close)
        return False

    def _facts(self, mailbox_id: int) -> tuple[int, SenderFacts | None]:
        # Building the sender's facts (aliases, delegations) cost more than
        # the rest of a submission; they change only with the directory.
        version = current_directory_version(self.db)
        return version, self._sender_facts.lookup(version, mailbox_id,
                                                  lambda: self._load_facts(mailbox_id))  # fmt: skip

    def _load_facts(self, mailbox_id: int) -> SenderFacts | None:
        with self.db.reader() as session:  # a read: never the write lock
            return sender_facts(session, mailbox_id)

    async def handle_RCPT(
        self, server: SubmissionSMTP, session: SMTPSession, envelope: SMTPEnvelope,
        address: str, rcpt_options: list[str],
    ) -> str:  # fmt: skip
        txn: _Transaction | None = getattr(envelope, "mailward", None)
        principal = _principal(session)
        if txn is None or principal is None:
            return "503 5.5.1 Error: need MAIL command"
        if len(txn.env.accepted) >= self.settings.max_recipients:
            return str(replies.TOO_MANY_RECIPIENTS)
        if not address.isascii() and not envelope.smtp_utf8:
            return NON_ASCII_REFUSED
        try:
            recipient = Address.parse(address, utf8=envelope.smtp_utf8)
        except AddressError:
            return str(replies.BAD_ADDRESS)
        conn = _conn(session, principal)
        try:
            decision = await decide_outside_directory(
                self.agent, conn, txn.env, recipient, authenticated=True, srs=None,
                version=txn.version,
            )
        except Exception:
            log.exception("RCPT %s failed", recipient)
            return str(replies.STORAGE_UNAVAILABLE)
        if decision.accepted:
            txn.env.accepted.append(Accepted(recipient, decision))
            txn.remote += bool(decision.forwards)
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        return str(decision.reply)

    async def handle_DATA(
        self, server: SubmissionSMTP, session: SMTPSession, envelope: SMTPEnvelope
    ) -> str:
        txn: _Transaction | None = getattr(envelope, "mailward", None)
        principal = _principal(session)
        if txn is None or principal is None:
            return "503 5.5.1 Error: need RCPT command"
        content = envelope.original_content or b""
        senders = from_addresses(content)
        decision = may_send_from(txn.facts, senders or [], self._now())
        if not decision.allowed:
            log.info("%s may not use From %s: %s", principal.address, senders, decision.reason)
            return str(decision.reply)
        self.inflight += 1
        self.idle.clear()
        try:
            assert senders is not None
            prepared = await blocking.run(self._prepare, content, senders[0].domain)
            reply = await self.agent.deliver(_conn(session, principal), txn.env, prepared)
        except Exception:
            log.exception("DATA failed")
            reply = replies.STORAGE_UNAVAILABLE
        finally:
            self.inflight -= 1
            if self.inflight == 0:
                self.idle.set()
        if reply.code == 250 and txn.remote and self.on_queued is not None:
            self.on_queued()
        return str(reply)

    def _prepare(self, content: bytes, domain: str) -> bytes:
        """Complete the header (RFC 6409 §8.2-8.3) and DKIM-sign for the From domain."""
        head = header_block(content).lower()
        extra = b""
        if b"\ndate:" not in b"\n" + head:
            extra += f"Date: {format_datetime(self._now())}\r\n".encode()
        if b"\nmessage-id:" not in b"\n" + head:
            extra += f"Message-ID: {make_msgid(domain=self.hostname)}\r\n".encode()
        content = extra + content
        if self.keys is None or not self.settings.sign_dkim:
            return content
        keys = self.keys.signing_keys(domain)  # one stat while the keys in memory are current
        if not keys:  # the domain's first message: make its first keys
            self.keys.ensure(domain, self._now())
            keys = self.keys.signing_keys(domain)
        return dkim.sign_all(content, keys, domain) if keys else content


async def start_submission(
    ctx: SubmissionHandler,
    *,
    host: str,
    port: int,
    tls_context: ssl.SSLContext,
    implicit_tls: bool,
    sock: socket.socket | None = None,
) -> asyncio.Server:
    """Listen for submission: STARTTLS required (587) or implicit TLS (465, RFC 8314),
    on ``host``:``port`` or on ``sock`` when it is given (already bound)."""
    loop = asyncio.get_running_loop()
    settings = ctx.settings

    def factory() -> SMTP:
        protocol = SubmissionSMTP(
            ctx,
            implicit_tls=implicit_tls,
            hostname=ctx.hostname,
            ident="Mailward ESMTP submission",
            data_size_limit=settings.max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            # With implicit TLS the socket is already encrypted: no STARTTLS.
            tls_context=None if implicit_tls else tls_context,
            # With plaintext allowed on loopback, AUTH itself checks where the
            # client is (``secure``) and MAIL needs AUTH, so nothing else opens.
            require_starttls=not implicit_tls and not settings.plaintext_on_loopback,
            timeout=settings.timeout_seconds,
            loop=loop,
        )
        ctx.connections.add(protocol)
        return protocol

    ssl_context = tls_context if implicit_tls else None
    if sock is not None:
        return await loop.create_server(factory, sock=sock, ssl=ssl_context)
    return await loop.create_server(factory, host=host, port=port, ssl=ssl_context)
