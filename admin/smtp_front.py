"""The SMTP side of one serving process: inbound (25) and submission (587, 465).

Built the same way by the serving process (``admin.runtime``) and by every
SMTP worker process (``admin.workers``); only where deliveries and queued
messages are announced differs. Configuration is read here because this is
part of the composition root.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from admin.certs import ensure_self_signed, server_context
from admin.config import Settings
from mta.delivery import DeliveryAgent
from mta.dkim_keys import KeyStore
from mta.inbound import InboundHandler, InboundLimits, start_inbound
from mta.inbound_auth import InboundAuthenticator, InboundAuthSettings
from mta.inbound_router import InboundRouter
from mta.resolver import ResolverSettings
from mta.smtp_auth import SMTPAuthenticator
from mta.srs import SRS, load_or_create_secret
from mta.submission import SubmissionHandler, SubmissionSettings, start_submission
from storage.db import Database

SHUTDOWN_GRACE_SECONDS = 30.0
# name → (port setting, implicit TLS); inbound port 25 is "smtp".
SUBMISSION_PORTS = (("submission", "submission_port", False),
                    ("submissions", "submissions_port", True))  # fmt: skip


def resolver_settings(settings: Settings) -> ResolverSettings:
    return ResolverSettings(nameservers=tuple(settings.dns.nameservers), port=settings.dns.port)


def server_tls(settings: Settings) -> ssl.SSLContext:
    """The configured certificate, or a self-signed one made once in the data folder."""
    if settings.tls.cert_file:
        cert, key = Path(settings.tls.cert_file), Path(settings.tls.key_file)
    else:
        cert, key = ensure_self_signed(settings.data_dir / "tls", settings.hostname)
    return server_context(cert, key)


def srs_for(settings: Settings) -> SRS:
    return SRS(load_or_create_secret(settings.data_dir / "srs.key"), settings.hostname)


def listen_ports(settings: Settings) -> dict[str, int]:
    """The SMTP listeners of a process by name: inbound, submission, submissions."""
    ports = {"smtp": settings.listen.smtp_port}
    for name, port_setting, _implicit in SUBMISSION_PORTS:
        ports[name] = getattr(settings.listen, port_setting)
    return ports


@dataclass
class SMTPFront:
    handler: InboundHandler
    submission: SubmissionHandler
    servers: dict[str, asyncio.Server] = field(default_factory=dict)

    @classmethod
    def build(
        cls, settings: Settings, db: Database, agent: DeliveryAgent, *, srs: SRS,
        on_queued: Callable[[], None],
    ) -> SMTPFront:  # fmt: skip
        limits = InboundLimits(
            max_recipients=settings.smtp.max_recipients,
            max_message_bytes=settings.smtp.max_message_bytes,
            timeout_seconds=settings.smtp.timeout_seconds,
        )
        checker = (
            InboundAuthenticator(InboundAuthSettings(authserv_id=settings.hostname,
                                                     resolver=resolver_settings(settings)))
            if settings.smtp.verify_senders
            else None
        )  # fmt: skip
        handler = InboundHandler(
            InboundRouter(agent, checker=checker, srs=srs, on_queued=on_queued), limits
        )
        submission = SubmissionHandler(
            agent=agent, authenticator=SMTPAuthenticator(db),
            keys=KeyStore(settings.data_dir / "dkim"), hostname=settings.hostname,
            on_queued=on_queued,
            settings=SubmissionSettings(
                max_message_bytes=settings.smtp.max_message_bytes,
                plaintext_on_loopback=settings.smtp.submission_plaintext_on_loopback),
        )  # fmt: skip
        return cls(handler, submission)

    async def start(
        self, settings: Settings, tls: ssl.SSLContext,
        sockets: Mapping[str, socket.socket] | None = None,
    ) -> None:  # fmt: skip
        """Listen on the configured ports, or on ``sockets`` (bound by ``admin.workers``)."""
        sockets = sockets or {}
        self.servers["smtp"] = await start_inbound(
            self.handler, host=settings.listen.host, port=settings.listen.smtp_port,
            hostname=settings.hostname, tls_context=tls, limits=self.handler.limits,
            sock=sockets.get("smtp"),
        )  # fmt: skip
        for name, port_setting, implicit in SUBMISSION_PORTS:
            self.servers[name] = await start_submission(
                self.submission, host=settings.listen.host,
                port=getattr(settings.listen, port_setting), tls_context=tls,
                implicit_tls=implicit, sock=sockets.get(name),
            )  # fmt: skip

    def stop_accepting(self) -> None:
        for server in self.servers.values():
            server.close()

    async def drain(self) -> None:
        """Let transactions in flight finish (bounded), then hang up on the rest.

        A delivery that is cut off was never acknowledged: the client retries it.
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(self.handler.idle.wait(), self.submission.idle.wait()),
                SHUTDOWN_GRACE_SECONDS,
            )
        self.handler.close_connections()
        self.submission.close_connections()

    async def wait_closed(self) -> None:
        for server in self.servers.values():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 5)
