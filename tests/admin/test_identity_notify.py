"""Notification channels: the file sink, the webhook, mail through the outbound spool."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from admin.notify import (
    EmailChannel,
    FileSink,
    Notification,
    Notifier,
    NotifyError,
    Recipient,
    SpoolSubmitter,
    WebhookChannel,
)
from storage.db import Database
from storage.models import OutboundMessage
from storage.spool import Spool

NOTE = Notification(
    kind="invite",
    recipient=Recipient("Erin Ford", "erin.ford@example.org", "+1 555 0100"),
    subject="Set up your mailbox",
    body="Open https://mail.example.net/invite/SECRET-TOKEN",
    about="invite:1",
    forbidden_domains=frozenset({"acme.test"}),
)


def test_file_sink_writes_one_private_file_per_notification(
    tmp_path: Path, sqlite_db: Database
) -> None:
    """Ensure the file sink writes each notification to its own 0600 file, in order."""
    sink = FileSink(tmp_path / "outbox")
    with sqlite_db.session() as session:
        first = sink.send(NOTE, session)
        second = sink.send(NOTE, session)
    files = sorted((tmp_path / "outbox").iterdir())
    assert [f.name for f in files] == [first.reference, second.reference]
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in files)
    assert files[0].read_text().startswith("To: Erin Ford <erin.ford@example.org>\n")
    assert "SECRET-TOKEN" not in first.reference and "SECRET-TOKEN" not in repr(NOTE)


def test_webhook_posts_json_and_reports_failures(sqlite_db: Database) -> None:
    """Ensure the webhook posts the notification as JSON and a non-2xx answer is a failure."""
    seen: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(202 if len(seen) == 1 else 500)

    channel = WebhookChannel(
        "https://hooks.example.net/notify", transport=httpx.MockTransport(handler)
    )
    with sqlite_db.session() as session:
        delivery = channel.send(NOTE, session)
        assert delivery.reference == "HTTP 202"
        assert seen[0]["to"] == {
            "name": "Erin Ford",
            "email": "erin.ford@example.org",
            "phone": "+1 555 0100",
        }
        with pytest.raises(NotifyError, match="500"):
            channel.send(NOTE, session)


def test_email_goes_through_the_spool_and_never_to_a_hosted_domain(
    tmp_path: Path, sqlite_db: Database
) -> None:
    """Ensure mail notifications are spooled for the out-of-band address, hosted domains refused."""
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    channel = EmailChannel(
        SpoolSubmitter(Spool(tmp_path / "queue")),
        mail_from="mailward@mail.example.net",
        clock=lambda: now,
    )
    with sqlite_db.session() as session:
        delivery = channel.send(NOTE, session)
    with sqlite_db.session() as session:
        row = session.scalars(select(OutboundMessage)).one()
        assert row.queue_id == delivery.reference
        assert json.loads(row.recipients) == ["erin.ford@example.org"]
        assert b"Auto-Submitted: auto-generated" in Path(row.spool_path).read_bytes()
    inside = Notification(
        kind="invite",
        recipient=Recipient("Erin", "erin@acme.test", None),
        subject="s",
        body="b",
        forbidden_domains=frozenset({"acme.test"}),
    )
    with sqlite_db.session() as session, pytest.raises(NotifyError, match="hosted here"):
        channel.send(inside, session)
    unset = EmailChannel(None, mail_from="mailward@mail.example.net")
    with sqlite_db.session() as session, pytest.raises(NotifyError, match="outbound queue"):
        unset.send(NOTE, session)


def test_notifier_needs_one_channel_to_deliver(tmp_path: Path, sqlite_db: Database) -> None:
    """Ensure the notifier succeeds when any channel delivers and fails when none does."""
    broken = EmailChannel(None, mail_from="mailward@mail.example.net")
    with sqlite_db.session() as session:
        deliveries = Notifier([broken, FileSink(tmp_path / "outbox")]).send(NOTE, session)
        assert [d.channel for d in deliveries] == ["file"]
        with pytest.raises(NotifyError, match="could not be delivered"):
            Notifier([broken]).send(NOTE, session)
