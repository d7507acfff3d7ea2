"""The IMAP server's streams and read loop; everything else is the session's.

The loop reads one command at a time. A command line is read up to
``max_line_length``; a longer line is discarded up to its end and refused
with BAD, and the connection goes on. When the parser asks for a literal
(:class:`NeedsLiteral`) the loop checks its size against the session's limit
*before* reading it: a synchronising literal too large is refused with
``NO [TOOBIG]`` instead of ``+``, so not one octet of it is sent; a
non-synchronising one (RFC 7888) is already on its way, so it is answered
``BAD [TOOBIG]`` and read into the void, or the connection is closed when
even that would cost too much. Otherwise the loop writes ``+`` (unless
LITERAL+), reads the octets and the rest of the line, and parses again.

Reads time out after the session's autologout interval (RFC 3501 §5.4),
which ends the connection with ``* BYE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass, field

from imap.auth import Authenticator
from imap.config import IMAPSettings
from imap.events import MailboxEvents
from imap.message_cache import SummaryCache
from imap.ops import ConnectionDone, LineTooLong
from imap.proto import Command, LiteralTooLarge, NeedsLiteral, NotParseable, parse_command
from imap.proto.responses import ResponseCode, Status, bye, continuation, tagged, untagged_status
from imap.proto.tokens import literal_announcement, read_tag
from imap.session import Session
from storage.db import Database
from storage.mailindex import MailStore

log = logging.getLogger("mailward.imap")

CRLF = b"\r\n"
DISCARD_CHUNK = 64 * 1024
TLS_HANDSHAKE_TIMEOUT = 30.0


@dataclass
class IMAPContext:
    """What every IMAP connection of one server process shares."""

    db: Database
    store: MailStore
    events: MailboxEvents
    authenticator: Authenticator
    settings: IMAPSettings
    hostname: str
    connections: set[Connection] = field(default_factory=set)
    defaults_ensured: set[int] = field(default_factory=set)
    summaries: SummaryCache = field(default_factory=SummaryCache)

    def close_connections(self, reason: str = "Server shutting down") -> None:
        """Say BYE to every live connection and close it (RFC 3501 §7.1.5)."""
        for conn in list(self.connections):
            conn.abort(bye(reason))


class Connection:
    """The streams of one client: buffered writes, bounded line reads, STARTTLS.

    Responses are collected and handed to the transport in one write when
    the session flushes (or before anything is read), so a command's untagged
    and tagged responses leave in one segment and one system call.

    Every read must finish within the timeout it is given. One timer per
    connection enforces that: a read only moves the deadline, and the timer,
    when it fires early, re-arms itself for the deadline then current. (An
    ``asyncio.timeout`` per read would schedule and cancel a 30-minute timer
    for every command.) An expired read raises :class:`TimeoutError`.
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, max_line: int
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.max_line = max_line
        peer = writer.get_extra_info("peername")
        self.peer_ip: str | None = peer[0] if isinstance(peer, tuple) else None
        self.tls = writer.get_extra_info("sslcontext") is not None
        self._pending: list[bytes] = []
        self._loop = asyncio.get_running_loop()
        self._deadline = 0.0
        self._reading: asyncio.Task[object] | None = None  # the task waiting for the client
        self._timer: asyncio.TimerHandle | None = None
        self._expired = False

    def write(self, data: bytes) -> None:
        self._pending.append(data)

    def _push(self) -> None:
        """Hand what was written to the transport (no waiting)."""
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self.writer.is_closing():
                self.writer.write(data)

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until the client has taken what was written (a stalled reader times out)."""
        self._push()
        transport = self.writer.transport
        if transport.get_write_buffer_size() <= transport.get_write_buffer_limits()[1]:
            return  # below the high-water mark the transport is not paused: drain would not wait
        async with asyncio.timeout(timeout):
            await self.writer.drain()

    # -- timed reads ---------------------------------------------------------------

    def _start_read(self, timeout: float) -> asyncio.Task[object]:
        self._push()
        task = asyncio.current_task()
        assert task is not None
        self._reading = task
        self._deadline = self._loop.time() + timeout
        if self._timer is None or self._timer.when() > self._deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(self._deadline, self._expire)
        return task

    def _expire(self) -> None:
        self._timer = None
        if self._reading is None:
            return  # not waiting for the client: the next read arms the timer again
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._expire)
            return
        self._expired = True
        self._reading.cancel()

    def _end_read(self, task: asyncio.Task[object], cancelled: bool) -> None:
        """After a read; raises TimeoutError if it was cancelled by the deadline alone."""
        self._reading = None
        if cancelled and self._expired:
            self._expired = False
            if task.uncancel() == 0:  # nobody else wants this task cancelled
                raise TimeoutError

    def stop_timer(self) -> None:
        """The connection is over: drop the timer (it holds the connection)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def read_line(self, timeout: float) -> bytes:
        """One line ending in LF; raises LineTooLong, TimeoutError or IncompleteReadError."""
        task = self._start_read(timeout)
        try:
            return await self._read_line()
        except asyncio.CancelledError:
            self._end_read(task, cancelled=True)
            raise
        finally:
            self._reading = None

    async def _read_line(self) -> bytes:
        try:
            return await self.reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as exc:
            head = await self.reader.readexactly(exc.consumed)
        tail = head[-64:]
        while True:  # discard up to the end of the line, keeping its last octets
            try:
                rest = await self.reader.readuntil(b"\n")
                raise LineTooLong(head[:256], (tail + rest)[-64:])
            except asyncio.LimitOverrunError as exc:
                tail = (tail + await self.reader.readexactly(exc.consumed))[-64:]

    async def read_exactly(self, size: int, timeout: float) -> bytes:
        task = self._start_read(timeout)
        try:
            return await self.reader.readexactly(size)
        except asyncio.CancelledError:
            self._end_read(task, cancelled=True)
            raise
        finally:
            self._reading = None

    async def discard(self, size: int, timeout: float) -> None:
        task = self._start_read(timeout)
        try:
            while size > 0:
                chunk = await self.reader.read(min(size, DISCARD_CHUNK))
                if not chunk:
                    raise asyncio.IncompleteReadError(b"", size)
                size -= len(chunk)
        except asyncio.CancelledError:
            self._end_read(task, cancelled=True)
            raise
        finally:
            self._reading = None

    async def start_tls(self, context: ssl.SSLContext) -> None:
        # RFC 3501 §6.2.1 / RFC 7817: anything the client sent after STARTTLS
        # in plaintext must not be read as a command once TLS is up (a
        # command injection). asyncio has no public peek, hence _buffer.
        if self.reader._buffer:  # type: ignore[attr-defined]
            raise ConnectionDone("plaintext pipelined after STARTTLS")
        self._push()  # the OK that precedes the handshake goes out in plaintext
        await self.writer.start_tls(context, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT)
        self.tls = True

    def abort(self, farewell: bytes | None = None) -> None:
        if farewell is not None:
            self.write(farewell)
        self._push()
        self.writer.close()


async def start_imap(
    ctx: IMAPContext,
    *,
    host: str,
    port: int,
    tls_context: ssl.SSLContext | None,
    implicit_tls: bool,
) -> asyncio.Server:
    """Listen for IMAP (port 143 role with STARTTLS, or 993 with ``implicit_tls``)."""
    if implicit_tls and tls_context is None:
        raise ValueError("implicit TLS needs a TLS context")

    async def client_connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_connection(ctx, reader, writer, None if implicit_tls else tls_context)

    return await asyncio.start_server(
        client_connected,
        host=host,
        port=port,
        ssl=tls_context if implicit_tls else None,
        limit=ctx.settings.max_line_length + 2,
    )


async def serve_connection(
    ctx: IMAPContext,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    starttls_context: ssl.SSLContext | None,
) -> None:
    conn = Connection(reader, writer, max_line=ctx.settings.max_line_length)
    session = Session(ctx, conn, starttls_context)
    ctx.connections.add(conn)
    try:
        await session.greet()
        while not session.closed:
            command = await read_command(conn, session)
            if command is not None:
                await session.dispatch(command)
            await conn.flush(session.timeout)
    except TimeoutError:
        conn.write(bye("Autologout; idle for too long"))
    except (ConnectionDone, asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        pass
    except Exception:
        log.exception("IMAP connection from %s failed", conn.peer_ip)
        conn.write(bye("Internal server error"))
    finally:
        conn.stop_timer()
        session.close()
        ctx.connections.discard(conn)
        with contextlib.suppress(Exception):
            await conn.flush(5)
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 5)


async def read_command(conn: Connection, session: Session) -> Command | None:
    """Read and parse one command; answer framing and syntax errors; None if refused."""
    timeout = session.timeout
    try:
        buf = await conn.read_line(timeout)
    except LineTooLong as exc:
        await _refuse_long_line(conn, session, exc.head, exc.tail)
        return None
    literals = 0
    while True:
        try:
            return parse_command(buf)
        except NeedsLiteral as need:
            literals += need.size
            limit = session.literal_limit(need.command)
            if literals > limit:
                refusal = LiteralTooLarge(need.size, need.non_sync, limit=limit, tag=need.tag)
                await _refuse_literal(conn, session, refusal)
                return None
            if not need.non_sync:
                conn.write(continuation("Ready for literal data"))
                await conn.flush(timeout)
            data = await conn.read_exactly(need.size, timeout)
            try:
                rest = await conn.read_line(timeout)
            except LineTooLong as exc:
                await _refuse_long_line(conn, session, (need.tag or "").encode(), exc.tail)
                return None
            buf += data + rest
        except LiteralTooLarge as exc:
            await _refuse_literal(conn, session, exc)
            return None
        except NotParseable as exc:
            conn.write(exc.response())
            await _skip_literals(conn, session, buf)
            return None


async def _refuse_long_line(conn: Connection, session: Session, head: bytes, tail: bytes) -> None:
    text, code = "Command line too long", ResponseCode.LIMIT
    try:
        tag, _ = read_tag(head, 0)
        conn.write(tagged(tag, Status.BAD, text, code))
    except NotParseable:
        conn.write(untagged_status(Status.BAD, text, code))
    await _skip_literals(conn, session, tail)


async def _refuse_literal(conn: Connection, session: Session, exc: LiteralTooLarge) -> None:
    conn.write(exc.response())
    if not exc.non_sync:
        return  # the client waits for "+", which never comes: nothing to read
    if exc.size > session.discard_limit:
        conn.abort(bye("Literal too large"))
        raise ConnectionDone("non-synchronising literal too large to discard")
    await conn.discard(exc.size, session.timeout)
    await _skip_literals(conn, session, await _rest_of_line(conn, session))


async def _rest_of_line(conn: Connection, session: Session) -> bytes:
    """The line after a discarded literal, or its last octets if it is too long."""
    try:
        return await conn.read_line(session.timeout)
    except LineTooLong as exc:
        return exc.tail


async def _skip_literals(conn: Connection, session: Session, last_line: bytes) -> None:
    """After a refused command, drop the non-synchronising literals still coming."""
    while (announced := literal_announcement(last_line)) is not None and announced[1]:
        size = announced[0]
        if size > session.discard_limit:
            conn.abort(bye("Literal too large"))
            raise ConnectionDone("non-synchronising literal too large to discard")
        await conn.discard(size, session.timeout)
        last_line = await _rest_of_line(conn, session)
