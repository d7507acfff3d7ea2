"""Not-authenticated state: LOGIN, AUTHENTICATE PLAIN (with SASL-IR), STARTTLS.

Passwords are accepted only where they cannot be sniffed: under TLS, or on
loopback when the settings allow it (RFC 3501 §6.2.3 LOGINDISABLED, RFC 8314).
Otherwise both commands answer ``NO [PRIVACYREQUIRED]`` without looking at
the credentials. STARTTLS answers OK here; the session upgrades the streams
right after that response is written (RFC 3501 §6.2.1).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from imap.auth import LoginOutcome, LoginRefusal
from imap.ops import Completion, Handlers, LineTooLong
from imap.proto import IMAPError, NotParseable
from imap.proto.commands import (
    AuthenticateCommand,
    LoginCommand,
    StartTLSCommand,
    parse_sasl_response,
)
from imap.proto.responses import ResponseCode, continuation

if TYPE_CHECKING:
    from imap.session import Session

log = logging.getLogger("mailward.imap")

_REFUSALS = {
    LoginRefusal.BAD_CREDENTIALS: ("Authentication failed", ResponseCode.AUTHENTICATIONFAILED),
    LoginRefusal.RATE_LIMITED: ("Too many failed logins; try again later",
                                ResponseCode.UNAVAILABLE),
    LoginRefusal.DISABLED: ("Account disabled", ResponseCode.CONTACTADMIN),
    LoginRefusal.TEMPORARY_ONLY: ("This is a temporary credential: open the reset link you "
                                  "received to set a new password, then log in with it",
                                  ResponseCode.ALERT),
}  # fmt: skip


def _require_privacy(session: Session) -> None:
    if not session.plaintext_allowed:
        raise IMAPError.no("Use STARTTLS or the TLS port to log in", ResponseCode.PRIVACYREQUIRED)


async def _finish(session: Session, user: str, outcome: LoginOutcome) -> Completion:
    if outcome.principal is None:
        log.info("IMAP login refused for %r from %s: %s", user[:80], session.conn.peer_ip,
                 outcome.refusal)  # fmt: skip
        text, code = _REFUSALS[outcome.refusal or LoginRefusal.BAD_CREDENTIALS]
        raise IMAPError.no(text, code)
    await session.authenticated(outcome.principal)
    return Completion("Logged in", session.capability_code())


async def login(session: Session, cmd: LoginCommand) -> Completion:
    _require_privacy(session)
    outcome = await session.ctx.authenticator.login(cmd.userid, cmd.password, session.conn.peer_ip)
    return await _finish(session, cmd.userid, outcome)


async def authenticate(session: Session, cmd: AuthenticateCommand) -> Completion:
    if cmd.mechanism != "PLAIN":
        raise IMAPError.no("Unsupported authentication mechanism", ResponseCode.CANNOT)
    _require_privacy(session)
    response = cmd.initial_response
    if response is None:
        # RFC 4616 §2: PLAIN has no server challenge; an empty "+" asks for it.
        session.send(continuation())
        await session.flush()
        try:
            line = await session.conn.read_line(session.timeout)
            response = parse_sasl_response(line)
        except LineTooLong:
            raise IMAPError.bad("SASL response too long", ResponseCode.LIMIT) from None
        except NotParseable as exc:
            raise IMAPError.bad(exc.message) from None
        if response is None:
            raise IMAPError.bad("Authentication cancelled")
    parts = response.split(b"\0")
    if len(parts) != 3:
        raise IMAPError.bad("Malformed PLAIN response")
    try:
        authzid, authcid, password = (part.decode("utf-8") for part in parts)
    except UnicodeDecodeError:
        raise IMAPError.bad("PLAIN response is not UTF-8") from None
    if authzid and authzid.lower() != authcid.lower():
        # Acting as another user needs delegation, which IMAP login does not offer.
        raise IMAPError.no("Cannot act as another user", ResponseCode.AUTHORIZATIONFAILED)
    outcome = await session.ctx.authenticator.login(authcid, password, session.conn.peer_ip)
    return await _finish(session, authcid, outcome)


async def starttls(session: Session, cmd: StartTLSCommand) -> Completion:
    if session.conn.tls:
        raise IMAPError.bad("TLS is already active")
    if session.tls_context is None:
        raise IMAPError.bad("STARTTLS is not available")
    session.start_tls = True
    return Completion("Begin TLS negotiation now")


HANDLERS: Handlers = {
    LoginCommand: login,
    AuthenticateCommand: authenticate,
    StartTLSCommand: starttls,
}
