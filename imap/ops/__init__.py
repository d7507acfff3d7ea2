"""IMAP command handlers, one module per command family.

A handler is ``async def handler(session, command) -> Completion``: it writes
untagged responses through ``session.send`` and returns what the tagged
response should say. It refuses with :class:`imap.proto.IMAPError`; storage
exceptions are left to the session, which translates them once, at its
boundary. Each module exports ``HANDLERS``, a map from command class to
handler; the session merges them and checks the command's legal states
before calling it. :mod:`.selected` is not a family but the view of the
selected folder that the selected-state families share.

The two exceptions here are the loop's signals that handlers reading from
the client (AUTHENTICATE, IDLE) may meet: an overlong line, and the end of
the connection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from imap.proto.responses import Status

if TYPE_CHECKING:
    from imap.proto.commands import Command
    from imap.session import Session


@dataclass(frozen=True, slots=True)
class Completion:
    """The tagged response of a command that ran: OK, or NO with partial results."""

    text: str
    code: str | bytes | None = None
    status: Status = Status.OK


class LineTooLong(Exception):
    """A client line exceeded the limit; it has been consumed up to its end."""

    def __init__(self, head: bytes, tail: bytes) -> None:
        super().__init__("line too long")
        self.head = head  # the first octets, for the tag
        self.tail = tail  # the last octets, for a literal announcement


class ConnectionDone(Exception):
    """The connection must end now (the reason has been sent, if any)."""


Handler = Callable[["Session", Any], Awaitable[Completion]]
Handlers = dict[type["Command"], Handler]
