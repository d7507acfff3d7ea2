"""Small, pure helpers over raw message bytes used by the delivery path."""

from __future__ import annotations

import re
from datetime import datetime
from email.utils import format_datetime
from functools import lru_cache

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)
MAX_MESSAGE_ID = 995  # RFC 5322 §2.1.1 line limit, less the header name


def header_block(data: bytes) -> bytes:
    match = _HEADER_END.search(data)
    return data[: match.start()] if match else data


def message_id(data: bytes) -> str | None:
    match = _MESSAGE_ID.search(header_block(data))
    if not match:
        return None
    value = b" ".join(match.group(1).split()).decode("ascii", "replace")
    return value[:MAX_MESSAGE_ID] or None


def to_lf(data: bytes) -> bytes:
    """Maildir stores messages with bare LF line endings (qmail, Dovecot, mutt)."""
    return data.replace(b"\r\n", b"\n")


def received_header(
    *,
    helo: str | None,
    client_ip: str | None,
    hostname: str,
    protocol: str,
    queue_id: str,
    recipient: str | None,
    now: datetime,
) -> bytes:
    """A trace header per RFC 5321 §4.4 (and RFC 3848 protocol names)."""
    helo_text = _clean(helo or "unknown")
    lines = [
        f"Received: from {helo_text} ([{_clean(client_ip or 'unknown')}])",
        f"\tby {hostname} (Mailward) with {protocol} id {queue_id}",
    ]
    if recipient:
        lines.append(f"\tfor <{_clean(recipient)}>")
    lines[-1] += f"; {_header_date(now.replace(microsecond=0))}"
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", "replace")


@lru_cache(maxsize=8)
def _header_date(now: datetime) -> str:
    # Formatting a date costs more than the rest of the header; it changes once a second.
    return format_datetime(now)


_UNSAFE = re.compile(r"[()<>;\\]")


def _clean(text: str) -> str:
    """Keep client-supplied text from breaking the header it is quoted in."""
    if text.isprintable() and not _UNSAFE.search(text):
        return text[:255]  # the everyday case, without a loop over characters
    return "".join(ch for ch in text if ch.isprintable() and ch not in "()<>;\\")[:255]
