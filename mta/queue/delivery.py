"""Remote delivery: one message, one destination domain, per-recipient results.

Where to (RFC 5321 §5.1): a transport-map entry for the domain (or ``*``)
names a fixed ``host:port``; otherwise the MX records, lowest preference
first (equal preferences shuffled), and with no MX at all the domain's own
A/AAAA as the implicit MX. NXDOMAIN and a null MX (RFC 7505) are permanent;
a DNS failure is temporary.

How: hosts are tried in order until one completes a transaction; a host
that cannot be reached, greets with an error or fails TLS is skipped (every
recipient stays temporary). STARTTLS is used whenever offered (RFC 3207).
Each RCPT reply is that recipient's result; the end-of-DATA reply is the
result of every recipient the server took. A connection lost after DATA
leaves the recipients temporary: they may be sent again, which is SMTP's
own at-least-once promise.

Blocking (smtplib, dnspython); the queue runs it in its own thread pool.
"""

from __future__ import annotations

import random
import re
import smtplib
import socket
import ssl
from dataclasses import dataclass

from mta.queue.scheduler import QueueSettings
from mta.resolver import DNS, DNSTemporaryError, NoSuchDomain
from policy.replies import SMTPReply

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\s+")


@dataclass(frozen=True, slots=True)
class Target:
    host: str  # name for logs and the DSN's Remote-MTA
    address: str  # IP address to connect to
    port: int


@dataclass(frozen=True, slots=True)
class RecipientResult:
    address: str
    reply: SMTPReply
    remote_mta: str | None = None

    @property
    def delivered(self) -> bool:
        return 200 <= self.reply.code < 300


class RouteError(Exception):
    def __init__(self, reply: SMTPReply) -> None:
        super().__init__(str(reply))
        self.reply = reply


def reply_from(code: int, text: bytes | str) -> SMTPReply:
    message = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    message = " ".join(message.split())
    match = _ENHANCED.match(message + " ")
    if match:
        return SMTPReply(code, match.group(0).strip(), message[match.end() :].strip())
    cls = str(code)[0] if str(code)[0] in "245" else "4"
    return SMTPReply(code, f"{cls}.0.0", message)


def _temporary(text: str) -> SMTPReply:
    return SMTPReply(451, "4.4.1", text)  # RFC 3463: no answer from host


def _split_hostport(value: str, default_port: int) -> tuple[str, int]:
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, int(port)
    return value, default_port


def _is_ip(text: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)
    except OSError:
        return False
    return True


class RemoteDelivery:
    def __init__(self, settings: QueueSettings, *, hostname: str) -> None:
        self.settings = settings
        self.hostname = hostname
        self.dns = DNS(settings.resolver)
        context = ssl.create_default_context()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if not settings.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        self.tls = context

    def destination(self, domain: str) -> str:
        """The key concurrency is limited by: the transport host, else the domain."""
        route = self.settings.transport.get(domain) or self.settings.transport.get("*")
        return f"transport:{route}" if route else domain

    def route(self, domain: str) -> list[Target]:
        transport = self.settings.transport.get(domain) or self.settings.transport.get("*")
        if transport:
            host, port = _split_hostport(transport, self.settings.smtp_port)
            return self._targets(host, port)
        try:
            records = self.dns.mx(domain, strict=True)
        except NoSuchDomain:
            raise RouteError(SMTPReply(550, "5.1.2", f"Domain {domain} does not exist")) from None
        except DNSTemporaryError as exc:
            raise RouteError(SMTPReply(451, "4.4.3", f"DNS lookup failed: {exc}")) from None
        if any(r.host in ("", ".") for r in records) and len(records) == 1:
            raise RouteError(SMTPReply(556, "5.1.10", f"Domain {domain} accepts no mail"))
        if not records:
            hosts = [domain]  # RFC 5321 §5.1: the implicit MX
        else:
            random.shuffle(records)
            hosts = [r.host for r in sorted(records, key=lambda r: r.preference) if r.host]
        targets: list[Target] = []
        for host in hosts:
            try:
                targets += self._targets(host, self.settings.smtp_port)
            except RouteError:
                continue
        if not targets:
            raise RouteError(SMTPReply(451, "4.4.4", f"No reachable mail host for {domain}"))
        return targets

    def _targets(self, host: str, port: int) -> list[Target]:
        if _is_ip(host):
            return [Target(host, host, port)]
        try:
            addresses = self.dns.addresses(host, ipv6=self.settings.ipv6)
        except DNSTemporaryError as exc:
            raise RouteError(SMTPReply(451, "4.4.3", f"DNS lookup failed: {exc}")) from None
        if not addresses:
            raise RouteError(SMTPReply(451, "4.4.4", f"{host} has no address"))
        return [Target(host, a, port) for a in addresses]

    def deliver(
        self, domain: str, mail_from: str, recipients: list[str], data: bytes
    ) -> list[RecipientResult]:
        try:
            targets = self.route(domain)
        except RouteError as exc:
            return [RecipientResult(r, exc.reply) for r in recipients]
        last = _temporary(f"No mail host for {domain} could be reached")
        for target in targets:
            outcome = self._session(target, mail_from, recipients, data)
            if isinstance(outcome, SMTPReply):
                last = outcome  # host-level failure: try the next one
                continue
            return outcome
        return [RecipientResult(r, last) for r in recipients]

    def _session(
        self, target: Target, mail_from: str, recipients: list[str], data: bytes
    ) -> list[RecipientResult] | SMTPReply:
        s = self.settings
        client = smtplib.SMTP(local_hostname=self.hostname, timeout=s.connect_timeout)
        taken: list[str] = []
        results: dict[str, SMTPReply] = {}
        try:
            client._host = target.host  # smtplib's SNI/verification name for STARTTLS
            code, banner = client.connect(target.address, target.port)
            if code != 220:
                return reply_from(code if code >= 400 else 421, banner)
            client.sock.settimeout(s.command_timeout)
            client.ehlo()
            if client.has_extn("starttls"):
                client.starttls(context=self.tls)  # a failed handshake skips this host
                client.ehlo()
            options = _mail_options(client, mail_from, recipients, data)
            if options is None:
                reply = SMTPReply(553, "5.6.7", "Remote server does not support SMTPUTF8")
                return [RecipientResult(r, reply, target.host) for r in recipients]
            code, text = client.mail(mail_from, options)
            if code != 250:
                reply = reply_from(code, text)
                client.rset()
                return [RecipientResult(r, reply, target.host) for r in recipients]
            for rcpt in recipients:
                code, text = client.rcpt(rcpt)
                if code in (250, 251):
                    taken.append(rcpt)
                else:
                    results[rcpt] = reply_from(code, text)
            if taken:
                client.sock.settimeout(s.data_timeout)
                try:
                    code, text = client.data(data)
                except smtplib.SMTPDataError as exc:
                    code, text = exc.smtp_code, exc.smtp_error
                for rcpt in taken:
                    results[rcpt] = reply_from(code, text)
            else:
                client.rset()
        except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
            if not results and not taken:
                return _temporary(f"{target.host}[{target.address}]: {exc.__class__.__name__}")
            for rcpt in recipients:
                results.setdefault(rcpt, _temporary(f"Connection to {target.host} lost"))
        finally:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()
        return [RecipientResult(r, results[r], target.host) for r in recipients]


def _mail_options(
    client: smtplib.SMTP, mail_from: str, recipients: list[str], data: bytes
) -> list[str] | None:
    options: list[str] = []
    if client.has_extn("size"):
        options.append(f"SIZE={len(data)}")
    if client.has_extn("8bitmime") and not data.isascii():
        options.append("BODY=8BITMIME")  # RFC 6152
    if not all(a.isascii() for a in (mail_from, *recipients)):
        if not client.has_extn("smtputf8"):
            return None  # RFC 6531 §3.4: a permanent failure for these recipients
        options.append("SMTPUTF8")
    return options
