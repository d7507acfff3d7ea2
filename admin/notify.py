"""Notification channels: how Mailward reaches a person out of band (hard rules 2 and 3).

Invite links, temporary credentials, operator setup links and verification
codes go straight to the person they are for, never to an operator and never
to the domain the message is about. A notification's body carries that
one-time secret, so it is handed to a channel and nowhere else: it is not
logged, not stored in the database and not in any audit entry (the audit
records the channel, the recipient and a reference).

Channels:

- ``FileSink`` (the development default): one file per notification in
  ``<data>/outbox/``, readable only by the service user. ``mailward init
  --demo`` leaves its invite there for a newcomer to open.
- ``WebhookChannel``: an HTTP POST of a JSON document (an SMS or chat
  gateway, a ticketing system that forwards to the person, never to agents).
- ``EmailChannel``: a message to the person's out-of-band address through the
  outbound queue, behind the ``OutboundSubmitter`` protocol; ``SpoolSubmitter``
  writes into ``storage.spool`` in the caller's transaction. Addresses on any
  domain hosted here are refused: whoever controls that domain would get the
  secret.

``Notifier`` sends through every configured channel and succeeds when at
least one delivered; it raises ``NotifyError`` (the change is then rolled
back) when none could.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Protocol

import httpx
from sqlalchemy.orm import Session

from admin.services import ServiceError
from storage.maildir import fsync_dir
from storage.spool import Spool, new_queue_id

log = logging.getLogger("mailward.notify")
WEBHOOK_TIMEOUT_SECONDS = 10.0
CHANNEL_NAMES = ("file", "webhook", "email")
_sequence = itertools.count(1)


class NotifyError(ServiceError):
    """No channel could deliver; the change that needed the notification is refused."""


@dataclass(frozen=True, slots=True)
class Recipient:
    name: str
    email: str | None
    phone: str | None

    def __str__(self) -> str:
        return self.email or self.phone or self.name


@dataclass(frozen=True, slots=True)
class Notification:
    kind: str  # invite, reset-credential, operator-setup, endpoint-verification
    recipient: Recipient
    subject: str
    body: str = field(repr=False)  # carries a one-time secret: never logged or stored
    about: str = ""  # the audit target it concerns, e.g. "mailbox:alice@acme.test"
    # Domains whose mail must not receive it (every hosted domain).
    forbidden_domains: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Delivery:
    channel: str
    to: str
    reference: str  # a file name, an HTTP status, a queue id: never the body


class Channel(Protocol):
    name: str

    def send(self, note: Notification, session: Session) -> Delivery: ...


class FileSink:
    """One file per notification in the outbox folder (development and demos)."""

    name = "file"

    def __init__(self, outbox: Path, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.outbox = outbox
        self.clock = clock

    def send(self, note: Notification, session: Session) -> Delivery:
        self.outbox.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Names sort in the order the notifications were written.
        stamp = self.clock().strftime("%Y%m%dT%H%M%S.%f")
        path = self.outbox / f"{stamp}-{next(_sequence):06d}-{note.kind}-{secrets.token_hex(4)}.txt"
        text = (
            f"To: {note.recipient.name} <{note.recipient}>\n"
            f"Subject: {note.subject}\n\n{note.body}\n"
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self.outbox)
        return Delivery(self.name, str(note.recipient), path.name)


class WebhookChannel:
    """POST ``{"kind", "to": {name, email, phone}, "subject", "body"}`` as JSON."""

    name = "webhook"

    def __init__(self, url: str, *, transport: httpx.BaseTransport | None = None) -> None:
        if not url.startswith(("https://", "http://")):
            raise ValueError("the notification webhook must be an http(s) URL")
        self.url = url
        self.transport = transport

    def send(self, note: Notification, session: Session) -> Delivery:
        document = {
            "kind": note.kind,
            "to": {
                "name": note.recipient.name,
                "email": note.recipient.email,
                "phone": note.recipient.phone,
            },
            "subject": note.subject,
            "body": note.body,
        }
        try:
            with httpx.Client(timeout=WEBHOOK_TIMEOUT_SECONDS, transport=self.transport) as client:
                response = client.post(
                    self.url,
                    content=json.dumps(document),
                    headers={"content-type": "application/json"},
                )
        except httpx.HTTPError as exc:
            reason = type(exc).__name__
            raise NotifyError(f"the notification webhook is unreachable ({reason})") from None
        if not response.is_success:
            raise NotifyError(f"the notification webhook answered {response.status_code}")
        return Delivery(self.name, str(note.recipient), f"HTTP {response.status_code}")


class OutboundSubmitter(Protocol):
    """Queues a message for remote delivery inside the caller's transaction."""

    def submit(
        self,
        session: Session,
        *,
        mail_from: str,
        recipients: list[str],
        message: bytes,
        now: datetime,
    ) -> str:  # the queue id
        ...


class SpoolSubmitter:
    """Writes into the durable outbound spool (``storage.spool``); the queue delivers it."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool

    def submit(
        self,
        session: Session,
        *,
        mail_from: str,
        recipients: list[str],
        message: bytes,
        now: datetime,
    ) -> str:
        spooled = self.spool.write(new_queue_id(), message)
        try:
            self.spool.record(session, spooled, mail_from, recipients, now)
            session.flush()
        except Exception:
            self.spool.discard(spooled)
            raise
        return spooled.queue_id


class EmailChannel:
    """Mail to the person's out-of-band address through the outbound queue."""

    name = "email"

    def __init__(
        self,
        submitter: OutboundSubmitter | None,
        *,
        mail_from: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.submitter = submitter
        self.mail_from = mail_from
        self.clock = clock

    def send(self, note: Notification, session: Session) -> Delivery:
        if self.submitter is None:
            raise NotifyError("email notifications need the outbound queue, which is not set up")
        to = note.recipient.email
        if not to:
            raise NotifyError(f"{note.recipient.name} has no out-of-band email address")
        domain = to.rpartition("@")[2].lower()
        if domain in note.forbidden_domains:
            raise NotifyError("refusing to mail a one-time secret to a domain hosted here")
        now = self.clock()
        message = EmailMessage()
        message["From"] = self.mail_from
        message["To"] = f"{note.recipient.name} <{to}>"
        message["Subject"] = note.subject
        message["Date"] = format_datetime(now)
        message["Message-ID"] = make_msgid(domain=self.mail_from.rpartition("@")[2] or None)
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834 §5
        message.set_content(note.body)
        queue_id = self.submitter.submit(
            session, mail_from=self.mail_from, recipients=[to], message=message.as_bytes(), now=now
        )
        return Delivery(self.name, to, queue_id)


class Notifier:
    def __init__(self, channels: Sequence[Channel]) -> None:
        if not channels:
            raise ValueError("at least one notification channel is needed")
        self.channels = tuple(channels)

    def send(self, note: Notification, session: Session) -> list[Delivery]:
        deliveries: list[Delivery] = []
        failures: list[str] = []
        for channel in self.channels:
            try:
                deliveries.append(channel.send(note, session))
            except (NotifyError, OSError) as exc:
                # The message names the channel and the reason, never the body.
                log.warning("notification %s via %s failed: %s", note.kind, channel.name, exc)
                failures.append(f"{channel.name}: {exc}")
        if not deliveries:
            raise NotifyError(
                "the notification could not be delivered (" + "; ".join(failures) + ")"
            )
        return deliveries


@dataclass(frozen=True, slots=True)
class NotifySettings:
    channels: tuple[str, ...] = ("file",)
    webhook_url: str = ""
    mail_from: str = ""  # default: mailward@<hostname>


def build_notifier(
    settings: NotifySettings,
    *,
    data_dir: Path,
    hostname: str = "localhost",
    submitter: OutboundSubmitter | None = None,
) -> Notifier:
    channels: list[Channel] = []
    for name in settings.channels:
        if name == "file":
            channels.append(FileSink(data_dir / "outbox"))
        elif name == "webhook":
            channels.append(WebhookChannel(settings.webhook_url))
        elif name == "email":
            if submitter is None:
                submitter = SpoolSubmitter(Spool(data_dir / "queue"))
            channels.append(
                EmailChannel(submitter, mail_from=settings.mail_from or f"mailward@{hostname}")
            )
        else:
            raise ValueError(f"unknown notification channel {name!r}; one of {CHANNEL_NAMES}")
    return Notifier(channels)
