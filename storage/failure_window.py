"""Recent failures per key in a sliding window: how password guessing is slowed.

IMAP LOGIN, SMTP AUTH and the web sign-in count failures per account and per
client address; over a limit the key is refused, without a password being
looked at, until its failures age out. The table is bounded, because a
spraying attack adds keys without end: the keys that failed least recently
are dropped first.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable

MAX_TRACKED_KEYS = 100_000


class FailureWindow:
    """Timestamps of recent failures per key, in a sliding window of ``window`` seconds."""

    def __init__(self, window: float, clock: Callable[[], float]) -> None:
        self.window = window
        self.clock = clock
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def count(self, key: str) -> int:
        stamps = self._seen.get(key)
        if stamps is None:
            return 0
        horizon = self.clock() - self.window
        while stamps and stamps[0] <= horizon:
            stamps.popleft()
        if not stamps:
            del self._seen[key]
        return len(stamps)

    def add(self, key: str) -> None:
        self._seen.setdefault(key, deque()).append(self.clock())
        self._seen.move_to_end(key)
        while len(self._seen) > MAX_TRACKED_KEYS:
            self._seen.popitem(last=False)

    def clear(self, key: str) -> None:
        self._seen.pop(key, None)
