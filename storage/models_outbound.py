"""Schema added for outbound mail (migration 0003): per-recipient queue state and
per-domain inbound authentication policy.

``outbound_message`` (in ``storage.models``) holds one queued message; its
``recipient`` rows here hold each recipient's own outcome, because SMTP
answers per recipient and only the temporarily failed ones are retried.
Rows written before the queue first looked at a message have no recipient
rows yet; the queue creates them from the message's ``recipients`` list.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base

# RFC 5321 §4.5.3.1.3: a path is at most 256 octets.
MAX_PATH = 256


class OutboundRecipient(Base):
    __tablename__ = "outbound_recipient"
    __table_args__ = (UniqueConstraint("message_id", "address"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("outbound_message.id", ondelete="CASCADE"), index=True
    )
    address: Mapped[str] = mapped_column(String(MAX_PATH))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    last_reply: Mapped[str | None] = mapped_column(Text)
    remote_mta: Mapped[str | None]
    updated_at: Mapped[datetime]


class DomainAuthPolicy(Base):
    """A hosted domain's choices for inbound authentication; no row means the defaults."""

    __tablename__ = "domain_auth_policy"
    domain_id: Mapped[int] = mapped_column(ForeignKey("domain.id"), primary_key=True)
    # RFC 7489 §6.7: honour p=reject of the sending domain (default on).
    dmarc_reject: Mapped[bool] = mapped_column(Boolean, default=True)
