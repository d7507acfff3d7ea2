"""CAPABILITY, NOOP, LOGOUT, ID, ENABLE, CHECK and IDLE.

IDLE (RFC 2177) waits for three things at once: the client's ``DONE``, this
mailbox's change event (set by other sessions and by deliveries, so a new
message is announced at once), and a poll timer that catches changes made
by other processes. Each wake-up re-reads the selected folder and sends what
changed, EXPUNGE included. The autologout timer keeps running during IDLE:
RFC 2177 §3 asks clients to re-issue it at least every 29 minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from imap.ops import Completion, Handlers, LineTooLong
from imap.proto import IMAPError
from imap.proto.commands import (
    CapabilityCommand,
    CheckCommand,
    EnableCommand,
    IdCommand,
    IdleCommand,
    LogoutCommand,
    NoopCommand,
    is_idle_done,
)
from imap.proto.responses import (
    ResponseCode,
    bye,
    capability_response,
    continuation,
    enabled_response,
    id_response,
)

if TYPE_CHECKING:
    from imap.session import Session

SERVER_ID = {"name": "Mailward", "vendor": "Mailward", "support-url": None}
# RFC 5161 §3.1: capabilities ENABLE can turn on here.
ENABLEABLE = frozenset({"CONDSTORE"})


async def capability(session: Session, cmd: CapabilityCommand) -> Completion:
    session.send(capability_response(session.capabilities()))
    return Completion("Capability completed")


async def noop(session: Session, cmd: NoopCommand) -> Completion:
    session.force_refresh = True  # RFC 3501 §6.1.2: NOOP is how clients poll
    return Completion("NOOP completed")


async def check(session: Session, cmd: CheckCommand) -> Completion:
    session.force_refresh = True  # every write is already durable: nothing to flush
    return Completion("CHECK completed")


async def logout(session: Session, cmd: LogoutCommand) -> Completion:
    session.send(bye("Logging out"))
    session.logout()
    return Completion("Logout completed")


async def ident(session: Session, cmd: IdCommand) -> Completion:
    session.send(id_response(SERVER_ID))
    return Completion("ID completed")


async def enable(session: Session, cmd: EnableCommand) -> Completion:
    enabled = [name for name in dict.fromkeys(cmd.capabilities) if name in ENABLEABLE]
    if "CONDSTORE" in enabled:
        session.enable_condstore()
    session.send(enabled_response(enabled))
    return Completion("ENABLE completed")


async def idle(session: Session, cmd: IdleCommand) -> Completion:
    session.send(continuation("idling"))
    await session.flush()
    settings = session.ctx.settings
    reader = asyncio.ensure_future(session.conn.read_line(session.timeout))
    try:
        next_poll = time.monotonic() + settings.poll_interval
        while True:
            due = time.monotonic() >= next_poll
            if due:
                await session.recheck_login()
                next_poll = time.monotonic() + settings.poll_interval
            if session.selected is not None:
                await session.refresh(expunge=True, force=due)
                await session.flush()
            elif session.event is not None:
                session.event.clear()  # nothing selected: nothing to report
            waiters: set[asyncio.Future[object]] = {reader}
            woken = None
            if session.event is not None:
                woken = asyncio.ensure_future(session.event.wait())
                waiters.add(woken)
            delay = max(0.0, next_poll - time.monotonic())
            try:
                await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if woken is not None:
                    woken.cancel()
            if reader.done():
                break
        try:
            line = reader.result()
        except LineTooLong:
            raise IMAPError.bad("Expected DONE", ResponseCode.LIMIT) from None
        if not is_idle_done(line):
            raise IMAPError.bad("Expected DONE")
        return Completion("IDLE terminated")
    finally:
        if not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


HANDLERS: Handlers = {
    CapabilityCommand: capability,
    NoopCommand: noop,
    CheckCommand: check,
    LogoutCommand: logout,
    IdCommand: ident,
    EnableCommand: enable,
    IdleCommand: idle,
}
