"""The durable outbound queue.

Semantics (in the manner of maddy's ``queue.go``):

- **Acknowledged means stored.** A message is accepted only after its body is
  written to ``<data>/queue/<id>.eml`` and fsynced, and its
  ``outbound_message`` row (sender, recipients) is committed; only then is
  ``250`` answered (``storage.spool``, ``DeliveryAgent.deliver``).
- **Per-recipient results.** Every attempt yields one result per recipient:
  delivered (2xx), permanently failed (5xx, NXDOMAIN, null MX) or
  temporarily failed (4xx, no host reachable, connection lost, DNS
  failure). Results are stored per recipient (``outbound_recipient``).
- **Only temporary failures are retried.** Delivered and permanently failed
  recipients are final and never tried again; the others wait for the next
  attempt on the backoff schedule (``scheduler``: 5 min doubling to 4 h).
- **Expiry.** A recipient still failing temporarily when the message is
  ``max_age`` old (5 days) fails for good with ``5.4.7``.
- **Notification.** Recipients that fail for good are reported to the
  envelope sender in one RFC 3464 DSN per attempt (``dsn``), queued like any
  message and sent with the null sender. Messages from the null sender
  (bounces, DSNs) never cause a DSN: no loops.
- **Restarts lose nothing.** The table and the spool are the state. A
  runner leases the rows it works on; a clean ``stop()`` gives unfinished
  ones back, and after a crash they become due when the lease expires. A
  recipient whose result was not recorded before a crash is sent again: at
  least once, as SMTP itself promises, never silently dropped.
- **Held** messages are never attempted until released; ``admin`` has the
  operator commands (list, show, retry, hold, release, delete), each audited.
- **Forwarded mail** from a sender outside the hosted domains leaves with an
  SRS envelope sender (``mta.srs``) so SPF passes at the destination.
"""

from mta.queue.runner import OutboundQueue
from mta.queue.scheduler import QueueSettings

__all__ = ["OutboundQueue", "QueueSettings"]
