"""SMTP replies as values: every refusal carries its own protocol answer.

One module holds them all (as maddy's ``exterrors`` and Mailman's ``ERR_550``
do) so that a reason code always maps to the same wire reply, and the
temporary/permanent distinction is derived from the reply class (RFC 5321
§4.2.1: 4yz is transient, 5yz permanent) instead of being tracked twice.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SMTPReply:
    code: int
    enhanced: str  # RFC 3463 enhanced status code, e.g. "5.1.1"
    text: str

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    def __str__(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}"


OK = SMTPReply(250, "2.1.5", "Recipient OK")
DELIVERED = SMTPReply(250, "2.0.0", "Message accepted for delivery")
UNKNOWN_RECIPIENT = SMTPReply(550, "5.1.1", "No such recipient here")
RELAY_DENIED = SMTPReply(550, "5.7.1", "Relaying denied")
MAILBOX_DISABLED = SMTPReply(550, "5.2.1", "Mailbox disabled, not accepting messages")
DOMAIN_DISABLED = SMTPReply(550, "5.7.1", "Domain disabled, not accepting messages")
QUOTA_EXCEEDED = SMTPReply(452, "4.2.2", "Mailbox storage quota exceeded, try again later")
TOO_MANY_RECIPIENTS = SMTPReply(452, "4.5.3", "Too many recipients")
STORAGE_UNAVAILABLE = SMTPReply(451, "4.3.0", "Temporary local problem, try again later")
BAD_ADDRESS = SMTPReply(553, "5.1.3", "Malformed address")
NO_DELIVERABLE_TARGET = SMTPReply(550, "5.1.1", "No deliverable destination for recipient")

# Submission (RFC 6409) and inbound authentication (RFC 7489 §6.7, RFC 7372).
AUTH_REQUIRED = SMTPReply(530, "5.7.0", "Authentication required")
# The session's AUTH no longer holds (password changed or reset, app password
# revoked): the server closes the connection after this reply (RFC 5321 §3.8).
AUTH_REVOKED = SMTPReply(421, "4.7.0", "Authentication no longer valid, closing connection")
SENDER_NOT_ALLOWED = SMTPReply(553, "5.7.1", "Sender address not owned by the authenticated user")
FROM_NOT_ALLOWED = SMTPReply(553, "5.7.1", "From address not owned by the authenticated user")
ACCOUNT_DISABLED = SMTPReply(550, "5.7.1", "Account disabled, not allowed to send")
MISSING_FROM = SMTPReply(550, "5.6.0", "Message has no valid From header")
DMARC_REJECTED = SMTPReply(550, "5.7.1", "Rejected by DMARC policy of the sender domain")
SPOOFED_HOSTED = SMTPReply(550, "5.7.1", "Unauthenticated mail claiming to be from a hosted domain")
AUTH_TEMPORARY = SMTPReply(451, "4.7.5", "Sender authentication could not be checked, try later")
SRS_INVALID = SMTPReply(550, "5.1.1", "Invalid or expired bounce address")
