"""In-process fan-out of "this mailbox changed" to IMAP sessions.

Deliveries (SMTP, on any thread) and other IMAP sessions call ``changed``;
a session in IDLE, or between commands, waits on its own :class:`MailboxEvent`
and then re-syncs its folder. Other processes on the same store are noticed
by the sessions' periodic poll; this only makes the common case instant.

An event also says whether a delivery was among the changes: a delivery
leaves a file in ``new/`` that only a sync of the folder picks up, while
another session's change is already in the store's memory
(:meth:`storage.mailindex.MailStore.cached_state`).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable


class MailboxEvent(asyncio.Event):
    """Set when the mailbox changed; ``delivered`` if a delivery was among the changes."""

    def __init__(self) -> None:
        super().__init__()
        self.delivered = False

    def clear(self) -> None:
        super().clear()
        self.delivered = False


class MailboxEvents:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._waiters: defaultdict[int, set[MailboxEvent]] = defaultdict(set)

    def subscribe(self, mailbox_id: int) -> MailboxEvent:
        event = MailboxEvent()
        self._waiters[mailbox_id].add(event)
        return event

    def unsubscribe(self, mailbox_id: int, event: MailboxEvent) -> None:
        waiters = self._waiters.get(mailbox_id)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._waiters[mailbox_id]

    def changed(
        self, mailbox_ids: Iterable[int], *, source: asyncio.Event | None = None,
        delivered: bool = False,
    ) -> None:  # fmt: skip
        """Wake every session of these mailboxes (except ``source``, the one that changed it)."""
        for mailbox_id in mailbox_ids:
            for event in self._waiters.get(mailbox_id, ()):
                if event is not source:
                    event.delivered = event.delivered or delivered
                    event.set()

    def changed_threadsafe(self, mailbox_ids: Iterable[int]) -> None:
        """A delivery (from any thread): new files wait in ``new/``."""
        try:
            here = asyncio.get_running_loop() is self.loop
        except RuntimeError:  # a thread without a loop
            here = False
        if here:  # no wake-up of our own loop through its self-pipe for every message
            self.changed(mailbox_ids, delivered=True)
        else:
            self.loop.call_soon_threadsafe(
                lambda ids: self.changed(ids, delivered=True), list(mailbox_ids))  # fmt: skip
