"""Web security plumbing: cookies, CSRF (double submit), response headers, throttling.

- Session cookies are HttpOnly, ``SameSite=Strict``, ``Path=/`` and Secure
  whenever the request came over TLS or the services say TLS is terminated in
  front (OWASP Session Management Cheat Sheet).
- CSRF: a random token lives in its own cookie and is repeated in every form
  (``csrf`` field) or, for the JSON API used with a session cookie, in the
  ``X-CSRF-Token`` header; a state-changing request whose two copies differ
  is refused (OWASP "double submit cookie"). API calls with a bearer token
  carry no ambient credential and need no CSRF token.
- Every response is ``Cache-Control: no-store`` (pages show one-time
  secrets), ``Referrer-Policy: no-referrer`` (URLs carry one-time tokens),
  framing is denied and scripts are not allowed at all.
- ``Throttle`` counts failures per key in a sliding window, so guessing
  recovery codes, passwords or TOTP codes is slow.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storage.secrets import new_token, tokens_equal

CSRF_COOKIE = "mw_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
USER_COOKIE = "mw_session"
OPERATOR_COOKIE = "mw_operator"
MAX_TRACKED_KEYS = 100_000

SECURITY_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"pragma", b"no-cache"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self'; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
]


class SecurityHeaders:
    """Pure ASGI middleware adding ``SECURITY_HEADERS`` to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


def is_secure(request: Request, force: bool) -> bool:
    return force or request.url.scheme == "https"


def set_cookie(
    response: Response,
    request: Request,
    name: str,
    value: str,
    *,
    force_secure: bool,
    max_age: int | None = None,
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=is_secure(request, force_secure),
    )


def clear_cookie(response: Response, request: Request, name: str, *, force_secure: bool) -> None:
    response.delete_cookie(
        name, path="/", httponly=True, samesite="strict", secure=is_secure(request, force_secure)
    )


def csrf_token(request: Request) -> str:
    """The request's CSRF token: the cookie's, or a new one ``attach_csrf`` will set."""
    token = request.cookies.get(CSRF_COOKIE)
    if token and 16 <= len(token) <= 128:
        return token
    if not hasattr(request.state, "new_csrf"):
        request.state.new_csrf = new_token()
    return str(request.state.new_csrf)


def attach_csrf(request: Request, response: Response, *, force_secure: bool) -> None:
    new = getattr(request.state, "new_csrf", None)
    if new:
        set_cookie(response, request, CSRF_COOKIE, new, force_secure=force_secure)


def csrf_ok(request: Request, submitted: str | None) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE)
    return bool(cookie and submitted) and tokens_equal(cookie or "", submitted or "")


class Throttle:
    """Failures per key in a sliding window; at ``limit`` the key is refused until they age out."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.window = window
        self.clock = clock
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def blocked(self, key: str) -> bool:
        stamps = self._seen.get(key)
        if not stamps:
            return False
        horizon = self.clock() - self.window
        while stamps and stamps[0] <= horizon:
            stamps.popleft()
        if not stamps:
            del self._seen[key]
            return False
        return len(stamps) >= self.limit

    def fail(self, key: str) -> None:
        self._seen.setdefault(key, deque()).append(self.clock())
        self._seen.move_to_end(key)
        while len(self._seen) > MAX_TRACKED_KEYS:
            self._seen.popitem(last=False)

    def clear(self, key: str) -> None:
        self._seen.pop(key, None)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"
