"""Delivery status notifications (RFC 3464) for recipients that failed for good.

A DSN is a ``multipart/report; report-type=delivery-status`` message (RFC
6522): a human-readable part, a ``message/delivery-status`` part with one
block per failed recipient, and the original message's header
(``text/rfc822-headers``). It is sent with the null reverse-path (RFC 5321
§4.5.5), so it can itself never be bounced; and none is sent for a message
whose sender was null, which is how every bounce and DSN travels: no loops.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, make_msgid

from mta.message import header_block
from policy.replies import SMTPReply

REPORT_BOUNDARY_BYTES = 12
MAX_RETURNED_HEADER = 64 * 1024  # enough for any sane header, bounded for insane ones


@dataclass(frozen=True, slots=True)
class FailedRecipient:
    address: str
    reply: SMTPReply
    remote_mta: str | None = None
    last_attempt: datetime | None = None


def should_notify(mail_from: str) -> bool:
    """RFC 3461 §6.2 / RFC 5321 §4.5.5: never a DSN to the null sender."""
    return bool(mail_from) and mail_from != "<>"


def _clean(text: str) -> str:
    return " ".join(text.replace("\r", " ").replace("\n", " ").split())[:900]


def build(
    *,
    original: bytes,
    sender: str,
    failed: Sequence[FailedRecipient],
    reporting_mta: str,
    queue_id: str,
    arrival: datetime,
    now: datetime,
) -> bytes:
    """The DSN message to send, with null sender, to ``sender``."""
    boundary = f"=_mailward_{secrets.token_hex(REPORT_BOUNDARY_BYTES)}"
    lines = [
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>",
        f"To: <{sender}>",
        "Subject: Undelivered Mail Returned to Sender",
        f"Date: {format_datetime(now)}",
        f"Message-ID: {make_msgid(domain=reporting_mta)}",
        "Auto-Submitted: auto-replied",  # RFC 3834 §5
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated delivery status notification.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        f"This is the mail system at {reporting_mta}.",
        "",
        "Your message could not be delivered to one or more recipients.",
        "It has been given up; the reasons are below.",
        "",
    ]
    for item in failed:
        via = f" (from {item.remote_mta})" if item.remote_mta else ""
        lines.append(f"<{item.address}>: {_clean(str(item.reply))}{via}")
    lines += [
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "",
        # RFC 3464 §2.2: per-message fields.
        f"Reporting-MTA: dns; {reporting_mta}",
        f"X-Mailward-Queue-ID: {queue_id}",
        f"Arrival-Date: {format_datetime(arrival)}",
    ]
    for item in failed:
        # RFC 3464 §2.3: per-recipient fields, one blank line before each block.
        lines += [
            "",
            f"Final-Recipient: rfc822; {item.address}",
            "Action: failed",
            f"Status: {_status(item.reply)}",
        ]
        if item.remote_mta:
            lines.append(f"Remote-MTA: dns; {item.remote_mta}")
        lines.append(f"Diagnostic-Code: smtp; {_clean(str(item.reply))}")
        if item.last_attempt is not None:
            lines.append(f"Last-Attempt-Date: {format_datetime(item.last_attempt)}")
    lines += [
        "",
        f"--{boundary}",
        "Content-Type: text/rfc822-headers",
        "",
    ]
    head = header_block(original)[:MAX_RETURNED_HEADER].replace(b"\r\n", b"\n")
    body = ("\r\n".join(lines) + "\r\n").encode("utf-8")
    returned = head.replace(b"\n", b"\r\n") + b"\r\n"
    return body + returned + f"\r\n--{boundary}--\r\n".encode()


def _status(reply: SMTPReply) -> str:
    # RFC 3464 §2.3.4: a permanent (5.x.x) status; a temporary reply that ran
    # out of time is reported as 4.4.7 "delivery time expired" promoted to 5.
    if reply.enhanced.startswith("5."):
        return reply.enhanced
    return "5.4.7" if reply.enhanced.startswith("4.") else "5.0.0"


def expired_reply(last: SMTPReply | None) -> SMTPReply:
    text = "Delivery time expired"
    if last is not None:
        text += f"; last error: {last}"
    return SMTPReply(554, "5.4.7", text)
