"""The admin web application: owner self-service pages, operator pages, the JSON API.

``create_app(services)`` builds a Starlette app over injected
``AdminServices``. Handlers are thin: parse the request, check CSRF, run one
service call in one transaction on a worker thread (argon2 and the database
block), render. Blocking never happens on the event loop.

The pages (``pages_user``, ``pages_operator``) and the API (``api``) never
put a secret anywhere but the one response that shows it to its owner:
forms that fail are re-rendered without the passwords typed into them, and
error messages are fixed strings, not echoes of input.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import jinja2
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates

from admin.web.context import AdminServices
from admin.web.security import (
    CSRF_FIELD,
    SecurityHeaders,
    Throttle,
    attach_csrf,
    csrf_ok,
    csrf_token,
)

T = TypeVar("T")
# Guessing limits: failures per key (an address, a username, a client IP)
# in a sliding window before further attempts are refused.
FAILURES_PER_ACCOUNT = 5
FAILURES_PER_CLIENT = 30
FAILURE_WINDOW_SECONDS = 15 * 60
MAX_FORM_BYTES = 64 * 1024  # the largest form any page posts is a few hundred bytes


class Web:
    """What every handler shares: services, templates, the throttles, a transaction runner."""

    def __init__(self, services: AdminServices) -> None:
        self.services = services
        env = jinja2.Environment(
            loader=jinja2.PackageLoader("admin", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        env.filters["when"] = lambda v: v.strftime("%Y-%m-%d %H:%M UTC") if v else "-"
        self.templates = Jinja2Templates(env=env)
        self.accounts = Throttle(FAILURES_PER_ACCOUNT, FAILURE_WINDOW_SECONDS)
        self.clients = Throttle(FAILURES_PER_CLIENT, FAILURE_WINDOW_SECONDS)

    def now(self) -> datetime:
        return self.services.clock()

    async def tx(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` in one transaction on a worker thread."""

        def work() -> T:
            with self.services.db.session() as session:
                return fn(session)

        return await run_in_threadpool(work)

    def render(
        self,
        request: Request,
        template: str,
        context: dict[str, Any] | None = None,
        status: int = 200,
    ) -> HTMLResponse:
        values = {"csrf": csrf_token(request), "error": None, "notice": None, **(context or {})}
        response = self.templates.TemplateResponse(request, template, values, status_code=status)
        attach_csrf(request, response, force_secure=self.services.secure_cookies)
        return response

    async def form(self, request: Request) -> dict[str, str] | None:
        """The posted form as strings, or None when its CSRF token does not match."""
        if int(request.headers.get("content-length") or 0) > MAX_FORM_BYTES:
            return None
        form = await request.form(max_files=0, max_fields=50)
        values = {k: v for k, v in form.items() if isinstance(v, str)}
        if not csrf_ok(request, values.get(CSRF_FIELD)):
            return None
        return values

    def csrf_refused(self, request: Request) -> HTMLResponse:
        return self.render(
            request,
            "message.html",
            {
                "title": "Please try again",
                "message": "This form has expired or was not sent from this site. Reload the page "
                "and submit it again.",
            },
            status=403,
        )


def create_app(services: AdminServices) -> Starlette:
    """The admin web UI and JSON API over ``services``."""
    from admin.web import api, pages_operator, pages_user

    web = Web(services)
    routes: list[BaseRoute] = [Route("/", lambda r: _home(web, r), methods=["GET"])]
    routes += pages_user.routes(web)
    routes += pages_operator.routes(web)
    routes += api.routes(web)
    return Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)])


def _home(web: Web, request: Request) -> Response:
    return web.render(request, "home.html")
