"""Pure parts of the queue: the retry schedule, reply parsing, the DSN message."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email import message_from_bytes

from mta.queue import dsn
from mta.queue.delivery import reply_from
from mta.queue.scheduler import DestinationLimiter, QueueSettings, next_attempt, retry_delay
from policy.replies import SMTPReply

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def test_backoff_doubles_to_the_cap() -> None:
    """Ensure the default schedule is 5 min doubling to 4 h."""
    settings = QueueSettings()
    delays = [retry_delay(settings, n) for n in range(1, 9)]
    assert delays[:4] == [timedelta(minutes=m) for m in (5, 10, 20, 40)]
    assert delays[-1] == timedelta(hours=4)


def test_expiry_after_max_age() -> None:
    """Ensure the last retry lands on the deadline and nothing is scheduled after it."""
    settings = QueueSettings()
    created = NOW - timedelta(days=5) + timedelta(minutes=1)
    assert next_attempt(settings, attempts=20, created_at=created, now=NOW) == created + timedelta(
        days=5
    )
    assert next_attempt(settings, attempts=21, created_at=created,
                        now=created + timedelta(days=5)) is None  # fmt: skip


def test_reply_parsing() -> None:
    """Ensure enhanced status codes are read from replies and defaulted when absent."""
    assert reply_from(550, b"5.1.1 No such user") == SMTPReply(550, "5.1.1", "No such user")
    assert reply_from(451, "try\r\n later") == SMTPReply(451, "4.0.0", "try later")


def test_dsn_structure() -> None:
    """Ensure the DSN is a multipart/report with per-recipient fields (RFC 3464)."""
    original = b"From: a@acme.test\r\nSubject: x\r\n\r\nsecret body\r\n"
    failed = [dsn.FailedRecipient("b@remote.example", SMTPReply(550, "5.1.1", "No such user"),
                                  "mx.remote.example", NOW)]  # fmt: skip
    report = dsn.build(original=original, sender="a@acme.test", failed=failed,
                       reporting_mta="mail.mailward.test", queue_id="Q1", arrival=NOW, now=NOW)
    message = message_from_bytes(report)
    assert message["To"] == "<a@acme.test>" and message["Auto-Submitted"] == "auto-replied"
    parts = message.get_payload()
    assert [p.get_content_type() for p in parts] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]  # fmt: skip
    status = parts[1].as_string()
    for field in ("Reporting-MTA: dns; mail.mailward.test", "Action: failed", "Status: 5.1.1",
                  "Remote-MTA: dns; mx.remote.example", "Diagnostic-Code: smtp; 550 5.1.1"):
        assert field in status
    assert b"secret body" not in report, "only the header is returned"
    assert not dsn.should_notify("") and dsn.should_notify("a@acme.test")
    assert dsn.expired_reply(SMTPReply(451, "4.4.1", "x")).enhanced == "5.4.7"


async def test_destination_limiter() -> None:
    """Ensure the limiter admits per_destination sessions per destination and forgets idle ones."""
    limiter = DestinationLimiter(per_destination=2, total=3)
    peak = 0

    async def session(destination: str) -> None:
        nonlocal peak
        async with limiter.acquire(destination):
            peak = max(peak, limiter.active("a.example"))
            await asyncio.sleep(0.01)

    await asyncio.gather(*(session("a.example") for _ in range(6)), session("b.example"))
    assert peak == 2 and limiter.active("a.example") == 0
    assert limiter._by_destination == {}
