"""The inbound SMTP server (port 25 role): thin aiosmtpd hooks over the pipeline.

aiosmtpd owns the wire (command syntax, line limits, SIZE, STARTTLS; DATA is
read by ``mta.smtp_data`` with aiosmtpd's limits and replies); the hooks here
build values, ask ``DeliveryAgent`` and return the decision's reply.
Recipients are decided at RCPT time so nothing is accepted that would bounce
later.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import socket
import ssl
import weakref
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, syntax
from aiosmtpd.smtp import Envelope as SMTPEnvelope
from aiosmtpd.smtp import Session as SMTPSession

from mta.delivery import Accepted, Connection, DeliveryAgent, Envelope
from mta.smtp_data import Refusal, read_data
from policy import replies
from policy.addresses import Address, AddressError

log = logging.getLogger("mailward.smtp")

# RFC 5321 §4.5.3.1.8: a server must accept at least 100 recipients.
DEFAULT_MAX_RECIPIENTS = 100
# RFC 6531 §3.7.1 / RFC 3463: non-ASCII address without the SMTPUTF8 parameter.
NON_ASCII_REFUSED = "553 5.6.7 Non-ASCII address requires the SMTPUTF8 parameter"


@dataclass(frozen=True, slots=True)
class InboundLimits:
    max_recipients: int = DEFAULT_MAX_RECIPIENTS
    max_message_bytes: int = 50 * 1024 * 1024
    timeout_seconds: float = 300.0


def _state(session: SMTPSession) -> Connection:
    conn: Connection | None = getattr(session, "mailward", None)
    if conn is None:
        peer = session.peer
        ip = peer[0] if isinstance(peer, tuple) else None
        conn = Connection(session_id=secrets.token_hex(6), client_ip=ip)
        session.mailward = conn  # type: ignore[attr-defined]
    conn.helo = session.host_name
    conn.tls = session.ssl is not None
    return conn


def _envelope(envelope: SMTPEnvelope) -> Envelope:
    env: Envelope | None = getattr(envelope, "mailward", None)
    if env is None:
        env = Envelope(mail_from="")
        envelope.mailward = env  # type: ignore[attr-defined]
    return env


def _size_hint(mail_options: list[str]) -> int:
    for option in mail_options:
        if option.upper().startswith("SIZE=") and option[5:].isdigit():
            return int(option[5:])
    return 0


class InboundHandler:
    def __init__(self, agent: DeliveryAgent, limits: InboundLimits) -> None:
        self.agent = agent
        self.limits = limits
        self.inflight = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.connections: weakref.WeakSet[SMTP] = weakref.WeakSet()

    def close_connections(self) -> None:
        for protocol in list(self.connections):
            if protocol.transport is not None:
                protocol.transport.close()

    async def handle_EHLO(
        self, server: SMTP, session: SMTPSession, envelope: SMTPEnvelope, hostname: str,
        responses: list[str],
    ) -> list[str]:  # fmt: skip
        session.host_name = hostname  # this hook's duty in aiosmtpd
        return with_pipelining(responses)

    async def handle_MAIL(
        self, server: SMTP, session: SMTPSession, envelope: SMTPEnvelope, address: str,
        mail_options: list[str],
    ) -> str:  # fmt: skip
        if not address.isascii() and not envelope.smtp_utf8:
            return NON_ASCII_REFUSED
        sender = "" if address in ("<>", "") else address
        if sender:
            try:
                sender = str(Address.parse(sender, utf8=envelope.smtp_utf8))
            except AddressError:
                return "553 5.1.7 Malformed sender address"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        env = Envelope(mail_from=sender, size_hint=_size_hint(mail_options))
        envelope.mailward = env  # type: ignore[attr-defined]
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(
        self, server: SMTP, session: SMTPSession, envelope: SMTPEnvelope, address: str,
        rcpt_options: list[str],
    ) -> str:  # fmt: skip
        env = _envelope(envelope)
        if len(env.accepted) >= self.limits.max_recipients:
            return str(replies.TOO_MANY_RECIPIENTS)
        if not address.isascii() and not envelope.smtp_utf8:
            return NON_ASCII_REFUSED
        try:
            recipient = Address.parse(address, utf8=envelope.smtp_utf8)
        except AddressError:
            return str(replies.BAD_ADDRESS)
        conn = _state(session)
        try:
            decision = await self.agent.decide(conn, env, recipient)
        except Exception:
            log.exception("RCPT %s failed", recipient)
            return str(replies.STORAGE_UNAVAILABLE)
        if decision.accepted:
            env.accepted.append(Accepted(recipient, decision))
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        return str(decision.reply)

    async def handle_DATA(
        self, server: SMTP, session: SMTPSession, envelope: SMTPEnvelope
    ) -> str:
        env = _envelope(envelope)
        content = envelope.original_content or b""
        self.inflight += 1
        self.idle.clear()
        try:
            reply = await self.agent.deliver(_state(session), env, content)
        except Exception:
            log.exception("DATA failed")
            reply = replies.STORAGE_UNAVAILABLE
        finally:
            self.inflight -= 1
            if self.inflight == 0:
                self.idle.set()
        return str(reply)


# The everyday path of MAIL FROM / RCPT TO: ``<dot-atom@domain>`` and the
# parameters after it. Anything else (quoted local parts, address literals,
# source routes, comments, ``<>``) goes to aiosmtpd's RFC 5322 parser.
_SIMPLE_PATH = re.compile(
    r"\s*<((?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+\.)*[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)"
    r">[ \t]*([^(]*)\Z",
    re.DOTALL,
)


def with_pipelining(responses: list[str]) -> list[str]:
    """EHLO keywords plus PIPELINING (RFC 2920), before the final line.

    aiosmtpd reads commands from a buffered stream and answers them in order,
    which is all RFC 2920 asks of a server; it discards what was pipelined
    after STARTTLS (RFC 3207 §4.2), so offering it opens no injection. A
    client then sends RSET/MAIL/RCPT/DATA in one packet: two round trips per
    message instead of five.
    """
    if any(r[4:].upper() == "PIPELINING" for r in responses):
        return responses
    return [*responses[:-1], "250-PIPELINING", *responses[-1:]]


class InboundSMTP(SMTP):
    """aiosmtpd's server with our limits; the class attribute is how aiosmtpd takes them."""

    # RFC 5321 §4.5.3.1.6: 998 octets + CRLF, plus one for dot-stuffing.
    line_length_limit = 1001
    # RFC 5321 §4.5.3.1.1-2: 64-octet local part.
    local_part_limit = 64
    _held = b""  # 250 replies not yet written (``push``)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self._decode_data:  # ``smtp_DATA`` keeps the message as bytes, as Mailward needs
            raise ValueError("InboundSMTP takes message data as bytes (decode_data=False)")

    async def push(self, status: str | bytes) -> None:
        # RFC 2920 §3.2: replies to pipelined commands may be held back while
        # the next command is already buffered, and must be sent before the
        # server waits for input. A pipelining client's RSET/MAIL/RCPT/DATA
        # then get their four replies in one write, not four: fewer system
        # calls here and fewer wake-ups of the client. Only 250 is held; any
        # other reply (354, 221, errors before a close) flushes at once.
        line = (status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii")
                if isinstance(status, str) else status) + b"\r\n"  # fmt: skip
        if line.startswith(b"250") and b"\n" in self._reader._buffer:  # type: ignore[attr-defined]
            self._held += line
            return
        if self._held:
            line, self._held = self._held + line, b""
        self._writer.write(line)
        await self._writer.drain()

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        # aiosmtpd's DATA with the body read by ``mta.smtp_data`` (a few large
        # reads, not one per line); the checks and replies are aiosmtpd's.
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            content = await read_data(self._reader, size_limit=self.data_size_limit,
                                      line_limit=self.line_length_limit)  # fmt: skip
        except (asyncio.CancelledError, asyncio.IncompleteReadError):
            self._writer.close()  # the connection ended inside DATA
            raise
        if isinstance(content, Refusal):
            await self.push(content.value)
            self._set_post_data_state()
            return
        self.envelope.content = self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd parses every path with the email package's header parser
        # and defines a Protocol class on each call: about a tenth of the
        # server's CPU per message. Plain addresses take this shortcut with
        # the same result; the rest still get the full parser.
        match = _SIMPLE_PATH.match(arg)
        if match is None or len(match.group(1).rpartition("@")[0]) > self.local_part_limit:
            try:
                return super()._getaddr(arg)
            except Exception:
                # The email parser crashes on some malformed paths ("<",
                # "<a@(x>", …) instead of raising HeaderParseError; either
                # way the client gets 501 and the session goes on.
                return None, None
        return match.group(1), match.group(2)


async def start_inbound(
    handler: InboundHandler,
    *,
    host: str,
    port: int,
    hostname: str,
    tls_context: ssl.SSLContext | None,
    limits: InboundLimits,
    sock: socket.socket | None = None,
) -> asyncio.Server:
    """Listen on ``host``:``port``, or on ``sock`` when it is given (already bound)."""
    loop = asyncio.get_running_loop()

    def factory() -> SMTP:
        protocol = InboundSMTP(
            handler,
            hostname=hostname,
            ident="Mailward ESMTP",
            data_size_limit=limits.max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            tls_context=tls_context,
            require_starttls=False,  # port 25 must take plaintext mail (RFC 3207 §4)
            timeout=limits.timeout_seconds,
            loop=loop,
        )
        handler.connections.add(protocol)
        return protocol

    if sock is not None:
        return await loop.create_server(factory, sock=sock)
    return await loop.create_server(factory, host=host, port=port)


def listening_port(server: asyncio.Server) -> int:
    sockets: Any = server.sockets
    return int(sockets[0].getsockname()[1])
