"""One IMAP connection's state machine: protocol state, selected folder, dispatch.

The server loop hands every parsed command to :meth:`Session.dispatch`,
which is the only place that

- checks the command is legal in the current state (each command class
  declares its ``states``, RFC 3501 §3);
- translates foreign exceptions into responses: ``StorageUnavailable`` and
  OS errors become ``NO [UNAVAILABLE]``, ``QuotaExceeded`` ``NO [OVERQUOTA]``,
  ``FolderMissing`` ``NO [NONEXISTENT]``, ``FolderExists`` ``NO
  [ALREADYEXISTS]``, a bad folder name ``NO [CANNOT]``; anything else is
  logged and answered ``NO [SERVERBUG]`` with no detail;
- brings the client's view of the selected folder up to date before the
  tagged response (RFC 3501 §7: untagged data may come with any response),
  when something may have changed: this session was woken by another one or
  by a delivery, it changed the folder itself, the poll interval passed, or
  the client asked (NOOP, CHECK).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
import time
from typing import TYPE_CHECKING

from imap.events import MailboxEvent
from imap.ops import (
    Completion,
    ConnectionDone,
    Handlers,
    auth,
    fetch,
    mailboxes,
    misc,
    quota,
    search,
    store,
)
from imap.ops import append as append_ops
from imap.ops.selected import SelectedFolder, closed_response
from imap.proto import Command, IMAPError, ProtocolState
from imap.proto.commands import FetchCommand, SearchCommand, StoreCommand
from imap.proto.formatting import Atom
from imap.proto.responses import (
    ResponseCode,
    Status,
    bye,
    format_code,
    tagged,
    untagged_status,
)
from imap.workers import run_blocking, run_index
from storage.credentials import Principal
from storage.db import StorageUnavailable
from storage.folder_names import FolderNameError
from storage.mailindex import FolderExists, FolderMissing, FolderState
from storage.quota import QuotaExceeded

if TYPE_CHECKING:
    from imap.server import Connection, IMAPContext

log = logging.getLogger("mailward.imap")

HANDLERS: Handlers = {
    **auth.HANDLERS,
    **mailboxes.HANDLERS,
    **fetch.HANDLERS,
    **search.HANDLERS,
    **store.HANDLERS,
    **append_ops.HANDLERS,
    **quota.HANDLERS,
    **misc.HANDLERS,
}

# Always offered; RFC 3501 §7.2.1 plus the extensions we implement.
CAPABILITIES = (
    "IMAP4rev1",
    "LITERAL+",  # RFC 7888
    "SASL-IR",  # RFC 4959
    "ID",  # RFC 2971
    "ENABLE",  # RFC 5161
    "IDLE",  # RFC 2177
    "NAMESPACE",  # RFC 2342
    "UIDPLUS",  # RFC 4315
    "MOVE",  # RFC 6851
    "UNSELECT",  # RFC 3691
    "SPECIAL-USE",  # RFC 6154
    "CHILDREN",  # RFC 3348
    "CONDSTORE",  # RFC 7162
    "QUOTA",  # RFC 9208
    "QUOTA=RES-STORAGE",
)

# Exceptions that end the connection rather than the command.
CONNECTION_ENDED = (
    ConnectionDone,
    TimeoutError,
    asyncio.IncompleteReadError,
    ConnectionError,
    ssl.SSLError,
)

_STATE_NAMES = {
    ProtocolState.NOT_AUTHENTICATED: "before login",
    ProtocolState.AUTHENTICATED: "without a selected folder",
    ProtocolState.SELECTED: "with a selected folder",
    ProtocolState.LOGOUT: "after logout",
}


def translate(exc: Exception) -> IMAPError:
    """A foreign exception as the response it deserves (details go to the log)."""
    match exc:
        case IMAPError():
            return exc
        case StorageUnavailable():
            log.warning("storage unavailable: %s", exc)
            return IMAPError.no("Storage temporarily unavailable", ResponseCode.UNAVAILABLE)
        case QuotaExceeded():
            return IMAPError.no("Quota exceeded", ResponseCode.OVERQUOTA)
        case FolderMissing():
            return IMAPError.no("No such folder", ResponseCode.NONEXISTENT)
        case FolderExists():
            return IMAPError.no("Folder already exists", ResponseCode.ALREADYEXISTS)
        case FolderNameError():
            return IMAPError.no(f"Invalid folder name: {exc}", ResponseCode.CANNOT)
        case OSError():
            log.exception("file system error")
            return IMAPError.no("Storage temporarily unavailable", ResponseCode.UNAVAILABLE)
    log.error("internal error", exc_info=exc)
    return IMAPError.no("Internal server error", ResponseCode.SERVERBUG)


class Session:
    def __init__(
        self, ctx: IMAPContext, conn: Connection, tls_context: ssl.SSLContext | None
    ) -> None:
        self.ctx = ctx
        self.conn = conn
        self.tls_context = tls_context
        self.state = ProtocolState.NOT_AUTHENTICATED
        self.principal: Principal | None = None
        self._login_recheck_at = 0.0
        self.selected: SelectedFolder | None = None
        self.condstore = False  # RFC 7162 §3.1: enabled by the first CONDSTORE command
        self.event: MailboxEvent | None = None
        self.start_tls = False  # set by STARTTLS, acted on after its tagged OK
        self.force_refresh = False
        self._last_sync = time.monotonic()

    # -- properties the loop asks ------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.state is ProtocolState.LOGOUT

    @property
    def timeout(self) -> float:
        if self.state is ProtocolState.NOT_AUTHENTICATED:
            return self.ctx.settings.unauthenticated_timeout
        return self.ctx.settings.idle_timeout

    def literal_limit(self, command: str | None) -> int:
        settings = self.ctx.settings
        if self.state is ProtocolState.NOT_AUTHENTICATED:
            return settings.max_literal_before_auth
        if command == "APPEND":
            return settings.max_append_size
        return settings.max_command_literal

    @property
    def discard_limit(self) -> int:
        """How much of a refused non-synchronising literal is read and dropped.

        RFC 7888 §4 lets the server close the connection instead; it does so
        beyond this, since draining costs as much as accepting.
        """
        if self.state is ProtocolState.NOT_AUTHENTICATED:
            return self.ctx.settings.max_literal_before_auth
        return 2 * self.ctx.settings.max_append_size

    @property
    def plaintext_allowed(self) -> bool:
        """Whether passwords may be sent on this connection (RFC 3501 §6.2.3, RFC 8314)."""
        if self.conn.tls:
            return True
        return self.ctx.settings.allow_plaintext_on_loopback and _is_loopback(self.conn.peer_ip)

    def capabilities(self) -> list[str]:
        caps = [*CAPABILITIES, f"APPENDLIMIT={self.ctx.settings.max_append_size}"]
        if self.state is ProtocolState.NOT_AUTHENTICATED:
            if self.tls_context is not None and not self.conn.tls:
                caps.append("STARTTLS")
            caps.append("AUTH=PLAIN" if self.plaintext_allowed else "LOGINDISABLED")
        return caps

    def capability_code(self) -> bytes:
        return format_code("CAPABILITY", *(Atom(cap) for cap in self.capabilities()))

    # -- output ------------------------------------------------------------------

    def send(self, *responses: bytes) -> None:
        for response in responses:
            self.conn.write(response)

    async def flush(self) -> None:
        await self.conn.flush(self.timeout)

    async def greet(self) -> None:
        self.send(untagged_status(Status.OK, f"{self.ctx.hostname} Mailward IMAP4rev1 ready",
                                  self.capability_code()))  # fmt: skip
        await self.flush()

    # -- dispatch ----------------------------------------------------------------

    async def dispatch(self, command: Command) -> None:
        if self.login_recheck_due():  # a clock read per command, a coroutine only when due
            await self.recheck_login()
        if self.state not in command.states:
            text = f"{command.name} is not allowed {_STATE_NAMES[self.state]}"
            self.send(tagged(command.tag, Status.BAD, text))
            return
        handler = HANDLERS[type(command)]
        try:
            done = await handler(self, command)
            response = tagged(command.tag, done.status, done.text, done.code)
        except CONNECTION_ENDED:
            raise
        except Exception as exc:  # the boundary: everything becomes a response
            response = translate(exc).response(command.tag)
        if self.state is ProtocolState.SELECTED:
            await self.refresh(expunge=_may_expunge(command))
        self.send(response)
        await self.flush()
        if self.start_tls:
            self.start_tls = False
            assert self.tls_context is not None
            await self.conn.start_tls(self.tls_context)

    def login_recheck_due(self) -> bool:
        return self.principal is not None and time.monotonic() >= self._login_recheck_at

    async def recheck_login(self) -> None:
        """End the session if its login no longer holds: the password was changed
        or reset, the app password revoked, the mailbox or domain suspended.
        Checked at most once per ``recheck_login`` seconds (a database read)."""
        if not self.login_recheck_due():
            return
        assert self.principal is not None
        self._login_recheck_at = time.monotonic() + self.ctx.settings.recheck_login
        try:
            valid = await run_blocking(self.ctx.authenticator.still_valid, self.principal)
        except StorageUnavailable:
            return  # the login stands until it can be checked
        if not valid:
            log.info("ending the session of %s: its login no longer holds",
                     self.principal.address)  # fmt: skip
            self.conn.abort(bye("Login no longer valid (password changed or access revoked)"))
            raise ConnectionDone("login no longer valid")

    # -- state transitions ---------------------------------------------------------

    async def authenticated(self, principal: Principal) -> None:
        """Enter the authenticated state; a mailbox gets its default folders once."""
        if principal.mailbox_id not in self.ctx.defaults_ensured:
            await run_blocking(self.ctx.store.ensure_defaults, principal.mailbox_id)
            self.ctx.defaults_ensured.add(principal.mailbox_id)
        self.principal = principal
        self._login_recheck_at = time.monotonic() + self.ctx.settings.recheck_login
        self.state = ProtocolState.AUTHENTICATED
        self.event = self.ctx.events.subscribe(principal.mailbox_id)

    @property
    def mailbox_id(self) -> int:
        if self.principal is None:
            raise IMAPError.bad("Not authenticated")
        return self.principal.mailbox_id

    def select(self, view: SelectedFolder) -> None:
        self.selected = view
        self.state = ProtocolState.SELECTED
        self._last_sync = time.monotonic()

    def deselect(self) -> None:
        self.selected = None
        if self.state is ProtocolState.SELECTED:
            self.state = ProtocolState.AUTHENTICATED

    def enable_condstore(self) -> None:
        self.condstore = True

    def logout(self) -> None:
        self.deselect()
        self.state = ProtocolState.LOGOUT

    def close(self) -> None:
        if self.event is not None and self.principal is not None:
            self.ctx.events.unsubscribe(self.principal.mailbox_id, self.event)
            self.event = None

    # -- keeping the view current ------------------------------------------------------

    def changed(self, *, reread: bool = True) -> None:
        """This session changed the mailbox: wake the others, and re-read before replying
        (unless ``reread`` is False: the command applied its change to the view itself)."""
        if reread:
            self.force_refresh = True
        if self.principal is not None:
            self.ctx.events.changed([self.principal.mailbox_id], source=self.event)

    def refresh_due(self) -> bool:
        woken = self.event is not None and self.event.is_set()
        return woken or self._poll_due() or self.force_refresh

    def _poll_due(self) -> bool:
        return time.monotonic() - self._last_sync >= self.ctx.settings.poll_interval

    def begin_refresh(self) -> None:
        """A sync of the selected folder starts now: what happens later is seen next time."""
        self.force_refresh = False
        if self.event is not None:
            self.event.clear()
        self._last_sync = time.monotonic()

    async def refresh(self, *, expunge: bool, force: bool = False) -> None:
        """Re-read the selected folder and send what changed (untagged).

        Woken only by another session of this process, the session takes the
        folder from the store's memory when it can (no I/O, no worker
        thread); deliveries, its own changes, NOOP and the poll read it.
        """
        view = self.selected
        if view is None or not (force or self.refresh_due()):
            return
        event = self.event
        if not (force or self.force_refresh or self._poll_due()) and event is not None \
                and not event.delivered:  # fmt: skip
            state = self.ctx.store.cached_state(view.folder.id, self.ctx.settings.poll_interval)
            if state is not None:
                event.clear()  # the poll timer keeps running: other processes are seen there
                self.absorb(state, expunge=expunge)
                return
        self.begin_refresh()
        try:
            state = await run_index(self.ctx.store.sync, view.mailbox_id, view.name)
        except FolderMissing:
            state = None
        except (StorageUnavailable, OSError) as exc:
            # The command itself is answered; the client hears of changes next time.
            log.warning("refresh of %s failed: %s", view.name, exc)
            self.force_refresh = True
            return
        self.absorb(state, expunge=expunge)

    def absorb(self, state: FolderState | None, *, expunge: bool) -> None:
        """Bring the selected view up to a fresh state (None: the folder is gone)."""
        view = self.selected
        if view is None:
            return
        if state is None or state.folder.id != view.folder.id:
            # Deleted or renamed by another session: there is nothing left to show.
            self.deselect()
            self.send(closed_response())
            return
        self.send(*view.merge(state, expunge=expunge, modseq=self.condstore))


def _may_expunge(command: Command) -> bool:
    """RFC 3501 §7.4.1: no EXPUNGE during FETCH, STORE or SEARCH; their UID forms allow it."""
    if isinstance(command, FetchCommand | StoreCommand | SearchCommand):
        return command.uid
    return True


def _is_loopback(ip: str | None) -> bool:
    if ip is None:
        return False
    try:
        address = ipaddress.ip_address(ip.split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


__all__ = ["HANDLERS", "Completion", "Session", "translate"]
