"""Operator pages: the setup link, sign-in with TOTP, sessions and API tokens.

``/operator/setup/{token}`` lets an operator choose their own password and
enrol an authenticator: the page shows a fresh TOTP key (to its owner, once),
and the key only takes effect when a code from it is entered with the form.
``/operator`` lists the operator's sessions (revocable) and creates API
tokens for the JSON API (shown once).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from admin.services import ServiceError
from admin.services import operators as ops
from admin.services.identity import LinkClosed
from admin.services.totp import from_b32, provisioning_uri
from admin.web.app import Web
from admin.web.security import OPERATOR_COOKIE, clear_cookie, client_ip, set_cookie
from storage.models import Operator

SESSION_SECONDS = ops.OPERATOR_SESSION_HOURS * 3600
TOO_MANY = "Too many failed attempts. Wait a few minutes and try again."


def routes(web: Web) -> list[BaseRoute]:
    pages = OperatorPages(web)
    return [
        Route("/operator/setup/{token}", pages.setup, methods=["GET", "POST"]),
        Route("/operator/login", pages.login, methods=["GET", "POST"]),
        Route("/operator/logout", pages.logout, methods=["POST"]),
        Route("/operator", pages.home, methods=["GET"]),
        Route("/operator/sessions/{id:int}/revoke", pages.revoke_session, methods=["POST"]),
        Route("/operator/tokens", pages.create_token, methods=["POST"]),
    ]


def signed_in_operator(session: Session, request: Request, now: Any) -> Operator | None:
    token = request.cookies.get(OPERATOR_COOKIE, "")
    found = ops.session_operator(session, token, now) if token else None
    return None if found is None else found[0]


class OperatorPages:
    def __init__(self, web: Web) -> None:
        self.web = web

    async def setup(self, request: Request) -> Response:
        web = self.web
        token = request.path_params["token"]

        def describe(session: Session) -> dict[str, Any]:
            _link, operator = ops.open_setup_link(session, token, web.now())
            return {"username": operator.username, "required": ops.totp_required(session, operator)}

        try:
            details = await web.tx(describe)
        except LinkClosed as exc:
            return web.render(request, "closed.html", {"message": str(exc)}, status=410)

        def page(secret: str, error: str | None = None, status: int = 200) -> Response:
            uri = provisioning_uri(from_b32(secret), account=details["username"])
            return web.render(
                request,
                "operator_setup.html",
                {**details, "secret": secret, "uri": uri, "error": error},
                status=status,
            )

        if request.method == "GET":
            return page(ops.new_totp_secret())
        form = await web.form(request)
        if form is None:
            return web.csrf_refused(request)
        secret = form.get("totp_secret", "")
        try:
            from_b32(secret)
        except ValueError:
            secret = ops.new_totp_secret()
        if form.get("password", "") != form.get("confirm", ""):
            return page(secret, "The two passwords are not the same.", 400)
        try:
            await web.tx(
                lambda s: ops.complete_setup(
                    s,
                    web.services.env,
                    token=token,
                    now=web.now(),
                    password=form.get("password", ""),
                    totp_secret=secret,
                    totp_code=form.get("totp_code", "").strip() or None,
                )
            )
        except LinkClosed as exc:
            return web.render(request, "closed.html", {"message": str(exc)}, status=410)
        except ServiceError as exc:
            return page(secret, str(exc), 400)
        return web.render(
            request,
            "message.html",
            {
                "title": "Your operator account is ready",
                "message": "Sign in with your username and the password you chose.",
                "link": "/operator/login",
            },
        )

    async def login(self, request: Request) -> Response:
        web = self.web
        if request.method == "GET":
            return web.render(request, "operator_login.html", {"username": ""})
        form = await web.form(request)
        if form is None:
            return web.csrf_refused(request)
        username = form.get("username", "").strip().lower()
        key, ip = f"operator:{username}", f"ip:{client_ip(request)}"
        if web.accounts.blocked(key) or web.clients.blocked(ip):
            return web.render(
                request,
                "operator_login.html",
                {"username": username, "error": TOO_MANY},
                status=429,
            )
        try:
            opened = await web.tx(
                lambda s: ops.login(
                    s,
                    web.services.env,
                    username=username,
                    password=form.get("password", ""),
                    totp_code=form.get("totp_code") or None,
                    now=web.now(),
                    client=client_ip(request),
                )
            )
        except ServiceError as exc:
            web.accounts.fail(key)
            web.clients.fail(ip)
            return web.render(
                request,
                "operator_login.html",
                {"username": username, "error": str(exc)},
                status=400,
            )
        web.accounts.clear(key)
        response = RedirectResponse("/operator", status_code=303)
        set_cookie(
            response,
            request,
            OPERATOR_COOKIE,
            opened.token,
            max_age=SESSION_SECONDS,
            force_secure=web.services.secure_cookies,
        )
        return response

    async def logout(self, request: Request) -> Response:
        web = self.web
        form = await web.form(request)
        if form is None:
            return web.csrf_refused(request)
        token = request.cookies.get(OPERATOR_COOKIE, "")
        if token:
            await web.tx(lambda s: ops.logout(s, token, web.now()))
        response = RedirectResponse("/operator/login", status_code=303)
        clear_cookie(response, request, OPERATOR_COOKIE, force_secure=web.services.secure_cookies)
        return response

    async def _page(
        self,
        request: Request,
        *,
        error: str | None = None,
        notice: str | None = None,
        status: int = 200,
    ) -> Response:
        web = self.web

        def context(session: Session) -> dict[str, Any] | None:
            operator = signed_in_operator(session, request, web.now())
            if operator is None:
                return None
            return {
                "username": operator.username,
                "sessions": ops.list_sessions(session, viewer=operator, now=web.now()),
            }

        values = await web.tx(context)
        if values is None:
            return RedirectResponse("/operator/login", status_code=303)
        return web.render(
            request,
            "operator_home.html",
            {**values, "error": error, "notice": notice},
            status=status,
        )

    async def home(self, request: Request) -> Response:
        return await self._page(request)

    async def revoke_session(self, request: Request) -> Response:
        web = self.web
        form = await web.form(request)
        if form is None:
            return web.csrf_refused(request)
        ident = int(request.path_params["id"])

        def revoke(session: Session) -> bool:
            operator = signed_in_operator(session, request, web.now())
            if operator is None:
                return False
            ops.revoke_session(session, operator=operator, now=web.now(), session_id=ident)
            return True

        try:
            if not await web.tx(revoke):
                return RedirectResponse("/operator/login", status_code=303)
        except ServiceError as exc:
            return await self._page(request, error=str(exc), status=400)
        return await self._page(request, notice=f"Session {ident} is revoked.")

    async def create_token(self, request: Request) -> Response:
        web = self.web
        form = await web.form(request)
        if form is None:
            return web.csrf_refused(request)
        days_text = form.get("days", "").strip()

        def create(session: Session) -> ops.NewApiToken | None:
            operator = signed_in_operator(session, request, web.now())
            if operator is None:
                return None
            days = int(days_text) if days_text.isdigit() else None
            return ops.create_api_token(
                session, operator=operator, now=web.now(), name=form.get("name", ""), days=days
            )

        try:
            created = await web.tx(create)
        except ServiceError as exc:
            return await self._page(request, error=str(exc), status=400)
        if created is None:
            return RedirectResponse("/operator/login", status_code=303)
        return web.render(
            request,
            "secret.html",
            {
                "title": f"API token {created.row.name!r}",
                "intro": "Send it as 'Authorization: Bearer <token>'. It is shown only now.",
                "secret": created.token,
                "back": "/operator",
            },
        )
