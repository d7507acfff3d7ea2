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
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storage.failure_window import FailureWindow
from storage.secrets import new_token, tokens_equal

CSRF_COOKIE = "mw_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
USER_COOKIE = "mw_session"
OPERATOR_COOKIE = "mw_operator"

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
        self._failures = FailureWindow(window, clock)

    def blocked(self, key: str) -> bool:
        return self._failures.count(key) >= self.limit

    def fail(self, key: str) -> None:
        self._failures.add(key)

    def clear(self, key: str) -> None:
        self._failures.clear(key)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"
