"""Test doubles for outbound mail, all on 127.0.0.1: a DNS server, a remote MX, a stack.

``DNSServer`` is a tiny dnspython responder on a UDP port of its own thread,
answering from a dict (MX, A, TXT for SPF, DKIM and DMARC); names it does not
know are NXDOMAIN. ``Sink`` is an aiosmtpd server playing the remote MX, with
STARTTLS (trustme certificate) and scripted replies. ``outbound_stack`` runs
the submission listeners, the queue runner and the inbound server over a
seeded database, with fast retry settings and a transport map to the sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import trustme
from aiosmtpd.smtp import SMTP
from argon2 import PasswordHasher

from mta.delivery import DeliveryAgent
from mta.dkim_keys import KeyStore
from mta.inbound import InboundHandler, InboundLimits, listening_port, start_inbound
from mta.inbound_auth import InboundAuthenticator, InboundAuthSettings
from mta.inbound_router import InboundRouter
from mta.queue import OutboundQueue, QueueSettings
from mta.resolver import ResolverSettings
from mta.smtp_auth import AuthLimits, SMTPAuthenticator
from mta.srs import SRS
from mta.submission import SubmissionHandler, SubmissionSettings, start_submission
from storage.db import Database
from storage.directory import find_mailbox
from storage.spool import Spool

HOSTNAME = "mail.mailward.test"
INBOUND_LIMITS = InboundLimits(timeout_seconds=30)
PASSWORDS = {"alice@acme.test": "alice-password-1", "bob@acme.test": "bob-password-22"}


# -- TLS ---------------------------------------------------------------------


@cache
def ca() -> trustme.CA:
    return trustme.CA()


def server_tls() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca().issue_cert("localhost", "127.0.0.1", HOSTNAME).configure_cert(context)
    return context


def client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca().configure_trust(context)
    return context


# -- DNS ---------------------------------------------------------------------


def _txt(value: str) -> str:
    chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
    return " ".join('"' + c.replace('"', '\\"') + '"' for c in chunks)


class DNSServer:
    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}
        self.queries: list[tuple[str, str]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.05)  # closing does not wake a blocked recvfrom; polling does
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def add(self, name: str, rdtype: str, *values: str) -> None:
        if rdtype == "TXT":
            values = tuple(_txt(v) for v in values)
        self.records.setdefault((name.lower().rstrip("."), rdtype), []).extend(values)

    def settings(self) -> ResolverSettings:
        return ResolverSettings(nameservers=("127.0.0.1",), port=self.port, timeout_seconds=3)

    def __enter__(self) -> DNSServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with contextlib.suppress(Exception):
                self.sock.sendto(self._answer(wire), peer)

    def _answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        for question in query.question:
            name = question.name.to_text().rstrip(".").lower()
            rdtype = dns.rdatatype.to_text(question.rdtype)
            self.queries.append((name, rdtype))
            values = self.records.get((name, rdtype))
            if values:
                response.answer.append(dns.rrset.from_text_list(
                    question.name, 60, dns.rdataclass.IN, rdtype, values))  # fmt: skip
            elif not any(n == name for n, _ in self.records):
                response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()


# -- the remote MX -------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls: bool


@dataclass
class Sink:
    """Scripted replies: ``rcpt_replies[address]``, ``data_replies`` consumed in order."""

    messages: list[Received] = field(default_factory=list)
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_replies: list[str] = field(default_factory=list)
    hold: asyncio.Event | None = None
    sessions: int = 0
    peak_sessions: int = 0
    server: asyncio.Server | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def port(self) -> int:
        assert self.server is not None
        return listening_port(self.server)

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:  # fmt: skip
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:  # fmt: skip
        reply = self.rcpt_replies.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.sessions += 1
        self.peak_sessions = max(self.peak_sessions, self.sessions)
        try:
            if self.hold is not None:
                await self.hold.wait()
            if self.data_replies:
                reply = self.data_replies.pop(0)
                if not reply.startswith("250"):
                    return reply
            self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                          envelope.original_content, session.ssl is not None))
            self.arrived.set()
            return "250 2.0.0 Queued at the sink"
        finally:
            self.sessions -= 1

    async def start(self) -> Sink:
        loop = asyncio.get_running_loop()
        context = server_tls()
        self.server = await loop.create_server(
            lambda: SMTP(self, hostname="mx.remote.example", tls_context=context,
                         decode_data=False, enable_SMTPUTF8=True, loop=loop),
            "127.0.0.1", 0,
        )  # fmt: skip
        return self

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        async def _wait() -> None:
            while len(self.messages) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(_wait(), timeout)
        return self.messages

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            if self.hold is not None:
                self.hold.set()


# -- the stack -------------------------------------------------------------------


def fast_queue(dns_server: DNSServer, sink: Sink, **overrides: Any) -> QueueSettings:
    settings = QueueSettings(
        initial_retry=timedelta(milliseconds=200), max_retry=timedelta(seconds=1),
        max_age=timedelta(minutes=5), poll_interval=0.1, lease=timedelta(seconds=30),
        shutdown_grace=0.5, smtp_port=sink.port,
        transport={"remote.example": f"127.0.0.1:{sink.port}"},
        resolver=dns_server.settings(), ipv6=False, connect_timeout=5, command_timeout=10,
        data_timeout=10,
    )  # fmt: skip
    return replace(settings, **overrides)


# argon2id with small parameters: still verified by the production code (the
# parameters travel in the hash), at a fraction of the production cost.
_cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def hash_password(password: str) -> str:
    return _cheap.hash(password)


def set_passwords(db: Database, passwords: Mapping[str, str] = PASSWORDS) -> None:
    from policy.addresses import Address

    with db.session() as s:
        for address, password in passwords.items():
            mailbox = find_mailbox(s, Address.parse(address))
            assert mailbox is not None
            mailbox.password_hash = hash_password(password)


@dataclass
class Stack:
    db: Database
    data_dir: Path
    agent: DeliveryAgent
    keys: KeyStore
    queue: OutboundQueue
    handler: SubmissionHandler
    servers: dict[str, asyncio.Server]
    dns: DNSServer
    sink: Sink
    srs: SRS

    def port(self, name: str) -> int:
        return listening_port(self.servers[name])

    def smtp(self, *, implicit: bool = True, login: str | None = "alice@acme.test",
             password: str | None = None) -> smtplib.SMTP:  # fmt: skip
        """A client logged in over TLS (blocking: call from a worker thread)."""
        if implicit:
            client: smtplib.SMTP = smtplib.SMTP_SSL("127.0.0.1", self.port("submissions"),
                                                   context=client_tls(), timeout=10)  # fmt: skip
            client.ehlo("client.example")
        else:
            client = smtplib.SMTP("127.0.0.1", self.port("submission"), timeout=10)
            client.ehlo("client.example")
            client.starttls(context=client_tls())
            client.ehlo("client.example")
        if login is not None:
            try:
                client.login(login, password or PASSWORDS[login])
            except BaseException:
                client.close()
                raise
        return client

    def maildir_new(self, address: str) -> list[Path]:
        local, domain = address.split("@")
        new = self.data_dir / "mail" / domain / local / "new"
        return sorted(new.iterdir()) if new.exists() else []


@contextlib.asynccontextmanager
async def outbound_stack(
    tmp_path: Path, db: Database, *, queue: Mapping[str, Any] | None = None,
    start_queue: bool = True, auth: AuthLimits | None = None,
    submission: SubmissionSettings | None = None,
) -> AsyncIterator[Stack]:  # fmt: skip
    set_passwords(db)
    sink = await Sink().start()
    with DNSServer() as dns_server:
        spool = Spool(tmp_path / "queue")
        agent = DeliveryAgent(db, mail_root=tmp_path / "mail", spool=spool, hostname=HOSTNAME)
        srs = SRS(b"test-secret", HOSTNAME)
        runner = OutboundQueue(db, agent=agent, spool=spool, hostname=HOSTNAME, srs=srs,
                               settings=fast_queue(dns_server, sink, **(queue or {})))  # fmt: skip
        keys = KeyStore(tmp_path / "dkim")
        handler = SubmissionHandler(
            agent=agent, keys=keys, hostname=HOSTNAME, on_queued=runner.wake,
            authenticator=SMTPAuthenticator(db, limits=auth or AuthLimits(failure_delay=0)),
            settings=submission or SubmissionSettings(),
        )  # fmt: skip
        tls = server_tls()
        servers = {
            "submission": await start_submission(handler, host="127.0.0.1", port=0,
                                                 tls_context=tls, implicit_tls=False),
            "submissions": await start_submission(handler, host="127.0.0.1", port=0,
                                                  tls_context=tls, implicit_tls=True),
        }  # fmt: skip
        checker = InboundAuthenticator(
            InboundAuthSettings(authserv_id=HOSTNAME, resolver=dns_server.settings()))
        router = InboundRouter(agent, checker=checker, srs=srs, on_queued=runner.wake)
        inbound = InboundHandler(router, INBOUND_LIMITS)
        servers["smtp"] = await start_inbound(inbound, host="127.0.0.1", port=0,
                                              hostname=HOSTNAME, tls_context=None,
                                              limits=INBOUND_LIMITS)  # fmt: skip
        if start_queue:
            runner.start()
        stack = Stack(db, tmp_path, agent, keys, runner, handler, servers, dns_server, sink, srs)
        try:
            yield stack
        finally:
            await runner.stop()
            for server in servers.values():
                server.close()
            handler.close_connections()
            inbound.close_connections()
            for server in servers.values():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(server.wait_closed(), 5)
            await sink.close()
            agent.close()
