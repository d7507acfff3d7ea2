"""In-process fan-out of "this mailbox changed" to IMAP sessions.

Deliveries (SMTP worker threads) and other IMAP sessions call ``changed``;
a session in IDLE, or between commands, waits on its own ``asyncio.Event``
and then re-syncs its folder. Other processes on the same store are noticed
by the sessions' periodic poll; this only makes the common case instant.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable


class MailboxEvents:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._waiters: defaultdict[int, set[asyncio.Event]] = defaultdict(set)

    def subscribe(self, mailbox_id: int) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters[mailbox_id].add(event)
        return event

    def unsubscribe(self, mailbox_id: int, event: asyncio.Event) -> None:
        waiters = self._waiters.get(mailbox_id)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._waiters[mailbox_id]

    def changed(self, mailbox_ids: Iterable[int], *, source: asyncio.Event | None = None) -> None:
        """Wake every session of these mailboxes (except ``source``, the one that changed it)."""
        for mailbox_id in mailbox_ids:
            for event in self._waiters.get(mailbox_id, ()):
                if event is not source:
                    event.set()

    def changed_threadsafe(self, mailbox_ids: Iterable[int]) -> None:
        self.loop.call_soon_threadsafe(self.changed, list(mailbox_ids))
