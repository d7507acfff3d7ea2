"""Pages for mailbox owners: invite acceptance, resets, sign-in and the account page.

- ``/invite/{token}``: pick the local part, set the password, see the ten
  recovery codes once.
- ``/reset``: self-service reset with a recovery code or the current password.
- ``/reset/temporary/{token}``: the helpdesk reset's one-time link; it sets a
  new password and shows fresh recovery codes, and does nothing else.
- ``/login``, ``/account``: change the password, regenerate recovery codes,
  create/revoke app passwords (shown once), add/verify/review/remove recovery
  endpoints.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from admin.services import ServiceError, invites, recovery, resets, selfservice
from admin.services import app_passwords as ap
from admin.services.identity import LinkClosed, address_of
from admin.web.app import Web
from admin.web.security import USER_COOKIE, clear_cookie, client_ip, set_cookie
from policy.identity import RECOVERY_CODE_COUNT, needs_new_recovery_codes
from storage.models import Domain, Mailbox, Person

SESSION_SECONDS = selfservice.MAILBOX_SESSION_HOURS * 3600
TOO_MANY = "Too many failed attempts. Wait a few minutes and try again."


def routes(web: Web) -> list[BaseRoute]:
    pages = UserPages(web)
    return [
        Route("/invite/{token}", pages.invite, methods=["GET", "POST"]),
        Route("/reset", pages.reset, methods=["GET", "POST"]),
        Route("/reset/temporary/{token}", pages.temporary, methods=["GET", "POST"]),
        Route("/login", pages.login, methods=["GET", "POST"]),
        Route("/logout", pages.logout, methods=["POST"]),
        Route("/account", pages.account, methods=["GET"]),
        Route("/account/password", pages.change_password, methods=["POST"]),
        Route("/account/codes", pages.regenerate_codes, methods=["POST"]),
        Route("/account/app-passwords", pages.create_app_password, methods=["POST"]),
        Route(
            "/account/app-passwords/{id:int}/revoke", pages.revoke_app_password, methods=["POST"]
        ),
        Route("/account/endpoints", pages.add_endpoint, methods=["POST"]),
        Route("/account/endpoints/{id:int}/{action:str}", pages.endpoint_action, methods=["POST"]),
    ]


class UserPages:
    def __init__(self, web: Web) -> None:
        self.web = web

    # -- invites ---------------------------------------------------------------------

    async def invite(self, request: Request) -> Response:
        web = self.web
        token = request.path_params["token"]

        def describe(session: Session) -> dict[str, Any]:
            invite = invites.open_invite(session, token, web.now())
            domain = session.get(Domain, invite.domain_id)
            owner = session.get(Person, invite.owner_person_id)
            assert domain is not None and owner is not None
            return {
                "domain": domain.name,
                "owner": owner.name,
                "local_part": invite.suggested_local_part or "",
                "expires_at": invite.expires_at,
            }

        try:
            details = await web.tx(describe)
        except LinkClosed as exc:
            return web.render(request, "closed.html", {"message": str(exc)}, status=410)
        if request.method == "GET":
            return web.render(request, "invite.html", details)
        form = await web.form(request)
        if form is None:
            return web.csrf_refused(request)
        local_part = form.get("local_part", "")
        password = form.get("password", "")
        if password != form.get("confirm", ""):
            return web.render(
                request,
                "invite.html",
                {
                    **details,
                    "local_part": local_part,
                    "error": "The two passwords are not the same.",
                },
                status=400,
            )
        try:
            accepted = await web.tx(
                lambda s: invites.accept_invite(
                    s,
                    web.services.env,
                    token=token,
                    now=web.now(),
                    local_part=local_part,
                    password=password,
                )
            )
        except LinkClosed as exc:
            return web.render(request, "closed.html", {"message": str(exc)}, status=410)
        except ServiceError as exc:
            return web.render(
                request,
                "invite.html",
                {**details, "local_part": local_part, "error": str(exc)},
                status=400,
            )
        return web.render(
            request,
            "codes.html",
            {
                "title": "Your mailbox is ready",
                "intro": f"Your address is {accepted.address}. Sign in to your mail app with it "
                "and the password you just chose.",
                "codes": accepted.recovery_codes,
            },
        )

    # -- resets ----------------------------------------------------------------------

    async def reset(self, request: Request) -> Response:
        web = self.web
        if request.method == "GET":
            return web.render(request, "reset.html", {"address": ""})
        form = await web.form(request)
        if form is None:
            return web.csrf_refused(request)
        address = form.get("address", "").strip().lower()
        context = {"address": address}
        new = form.get("password", "")
        if new != form.get("confirm", ""):
            return web.render(
                request,
                "reset.html",
                {**context, "error": "The two new passwords are not the same."},
                status=400,
            )
        key, ip = f"reset:{address}", f"ip:{client_ip(request)}"
        if web.accounts.blocked(key) or web.clients.blocked(ip):
            return web.render(request, "reset.html", {**context, "error": TOO_MANY}, status=429)
        code = form.get("code", "").strip()
        current = form.get("current", "")
        try:
            done = await web.tx(lambda s: self._self_reset(s, address, new, code, current))
        except selfservice.ProofRefused as exc:
            web.accounts.fail(key)
            web.clients.fail(ip)
            return web.render(request, "reset.html", {**context, "error": str(exc)}, status=400)
        except ServiceError as exc:
            return web.render(request, "reset.html", {**context, "error": str(exc)}, status=400)
        web.accounts.clear(key)
        opened, remaining = done
        response = web.render(
            request,
            "reset_done.html",
            {
                "address": address,
                "remaining": remaining,
                "low": needs_new_recovery_codes(remaining),
            },
        )
        self._sign_in(request, response, opened.token)
        return response

    def _self_reset(
        self, session: Session, address: str, new: str, code: str, current: str
    ) -> tuple[selfservice.OpenedSession, int]:
        web = self.web
        result = selfservice.self_service_reset(
            session,
            web.services.env,
            address=address,
            new_password=new,
            now=web.now(),
            recovery_code=code or None,
            current_password=None if code else current,
        )
        opened = selfservice.open_session(
            session, mailbox=result.mailbox, now=web.now(), client=None
        )
        return opened, result.remaining_codes

    async def temporary(self, request: Request) -> Response:
        web = self.web
        token = request.path_params["token"]

        def describe(session: Session) -> dict[str, Any]:
            _row, mailbox = resets.open_temporary(session, token, web.now())
            return {"address": address_of(mailbox)}

        try:
            details = await web.tx(describe)
        except LinkClosed as exc:
            return web.render(request, "closed.html", {"message": str(exc)}, status=410)
        if request.method == "GET":
            return web.render(request, "temporary.html", details)
        form = await web.form(request)
        if form is None:
            return web.csrf_refused(request)
        new = form.get("password", "")
        if new != form.get("confirm", ""):
            return web.render(
                request,
                "temporary.html",
                {**details, "error": "The two passwords are not the same."},
                status=400,
            )
        try:
            done = await web.tx(
                lambda s: resets.complete_reset(
                    s, web.services.env, token=token, new_password=new, now=web.now()
                )
            )
        except LinkClosed as exc:
            return web.render(request, "closed.html", {"message": str(exc)}, status=410)
        except ServiceError as exc:
            return web.render(request, "temporary.html", {**details, "error": str(exc)}, status=400)
        return web.render(
            request,
            "codes.html",
            {
                "title": "Your new password is set",
                "intro": f"Sign in to {done.address} with your new password. Your old recovery "
                "codes no longer work; these replace them.",
                "codes": done.recovery_codes,
            },
        )

    # -- sign-in -----------------------------------------------------------------------

    def _sign_in(self, request: Request, response: Response, token: str) -> None:
        set_cookie(
            response,
            request,
            USER_COOKIE,
            token,
            max_age=SESSION_SECONDS,
            force_secure=self.web.services.secure_cookies,
        )

    async def login(self, request: Request) -> Response:
        web = self.web
        if request.method == "GET":
            return web.render(request, "login.html", {"address": ""})
        form = await web.form(request)
        if form is None:
            return web.csrf_refused(request)
        address = form.get("address", "").strip().lower()
        key, ip = f"login:{address}", f"ip:{client_ip(request)}"
        if web.accounts.blocked(key) or web.clients.blocked(ip):
            return web.render(
                request, "login.html", {"address": address, "error": TOO_MANY}, status=429
            )
        try:
            opened = await web.tx(
                lambda s: selfservice.login(
                    s,
                    address=address,
                    password=form.get("password", ""),
                    now=web.now(),
                    client=client_ip(request),
                )
            )
        except ServiceError as exc:
            web.accounts.fail(key)
            web.clients.fail(ip)
            return web.render(
                request, "login.html", {"address": address, "error": str(exc)}, status=400
            )
        web.accounts.clear(key)
        response = RedirectResponse("/account", status_code=303)
        self._sign_in(request, response, opened.token)
        return response

    async def logout(self, request: Request) -> Response:
        web = self.web
        form = await web.form(request)
        if form is None:
            return web.csrf_refused(request)
        token = request.cookies.get(USER_COOKIE, "")
        if token:
            await web.tx(lambda s: selfservice.logout(s, token, web.now()))
        response = RedirectResponse("/login", status_code=303)
        clear_cookie(response, request, USER_COOKIE, force_secure=web.services.secure_cookies)
        return response

    # -- the account page ------------------------------------------------------------------

    async def _signed_in(self, request: Request) -> tuple[int, int] | None:
        """(mailbox id, session id) of the signed-in owner, or None."""
        token = request.cookies.get(USER_COOKIE, "")
        if not token:
            return None
        now = self.web.now()

        def lookup(session: Session) -> tuple[int, int] | None:
            found = selfservice.session_mailbox(session, token, now)
            return None if found is None else (found[0].id, found[1].id)

        return await self.web.tx(lookup)

    def _account_context(self, session: Session, mailbox_id: int) -> dict[str, Any]:
        mailbox = session.get(Mailbox, mailbox_id)
        assert mailbox is not None
        now = self.web.now()
        remaining = recovery.remaining_codes(session, mailbox.id)
        return {
            "address": address_of(mailbox),
            "remaining": remaining,
            "low": needs_new_recovery_codes(remaining),
            "count": RECOVERY_CODE_COUNT,
            "app_passwords": ap.list_app_passwords(
                session, now=now, mailbox=mailbox, active_only=True
            ),
            "endpoints": recovery.list_endpoints(session, mailbox, now),
        }

    async def _account_page(
        self,
        request: Request,
        mailbox_id: int,
        *,
        error: str | None = None,
        notice: str | None = None,
        status: int = 200,
    ) -> Response:
        context = await self.web.tx(lambda s: self._account_context(s, mailbox_id))
        return self.web.render(
            request, "account.html", {**context, "error": error, "notice": notice}, status=status
        )

    async def account(self, request: Request) -> Response:
        signed_in = await self._signed_in(request)
        if signed_in is None:
            return RedirectResponse("/login", status_code=303)
        return await self._account_page(request, signed_in[0])

    async def _post(self, request: Request) -> tuple[dict[str, str], int, int] | Response:
        """Common prologue of the account forms: CSRF, then the signed-in owner."""
        form = await self.web.form(request)
        if form is None:
            return self.web.csrf_refused(request)
        signed_in = await self._signed_in(request)
        if signed_in is None:
            return RedirectResponse("/login", status_code=303)
        return form, signed_in[0], signed_in[1]

    def _mailbox(self, session: Session, mailbox_id: int) -> Mailbox:
        mailbox = session.get(Mailbox, mailbox_id)
        assert mailbox is not None
        return mailbox

    async def change_password(self, request: Request) -> Response:
        web = self.web
        posted = await self._post(request)
        if isinstance(posted, Response):
            return posted
        form, mailbox_id, session_id = posted
        if form.get("password", "") != form.get("confirm", ""):
            return await self._account_page(
                request, mailbox_id, status=400, error="The two new passwords are not the same."
            )
        try:
            await web.tx(
                lambda s: selfservice.change_password(
                    s,
                    web.services.env,
                    mailbox=self._mailbox(s, mailbox_id),
                    current_password=form.get("current", ""),
                    new_password=form.get("password", ""),
                    now=web.now(),
                    keep_session_id=session_id,
                )
            )
        except ServiceError as exc:
            return await self._account_page(request, mailbox_id, error=str(exc), status=400)
        return await self._account_page(request, mailbox_id, notice="Your password is changed.")

    async def regenerate_codes(self, request: Request) -> Response:
        web = self.web
        posted = await self._post(request)
        if isinstance(posted, Response):
            return posted
        _form, mailbox_id, _ = posted
        codes = await web.tx(
            lambda s: selfservice.regenerate_codes(
                s, mailbox=self._mailbox(s, mailbox_id), now=web.now()
            )
        )
        return web.render(
            request,
            "codes.html",
            {
                "title": "Your new recovery codes",
                "intro": "Your previous unused codes no longer work.",
                "codes": codes,
            },
        )

    async def create_app_password(self, request: Request) -> Response:
        web = self.web
        posted = await self._post(request)
        if isinstance(posted, Response):
            return posted
        form, mailbox_id, _ = posted
        scopes = [s for s in ("imap", "smtp") if form.get(f"scope_{s}")]
        days = form.get("days", "").strip()
        now = web.now()
        try:
            expires_at = now + timedelta(days=int(days)) if days else None
        except ValueError:
            return await self._account_page(
                request, mailbox_id, status=400, error="The lifetime is a number of days."
            )
        try:
            created = await web.tx(
                lambda s: ap.create_app_password(
                    s,
                    mailbox=self._mailbox(s, mailbox_id),
                    now=now,
                    name=form.get("name", ""),
                    scopes=scopes,
                    expires_at=expires_at,
                )
            )
        except ServiceError as exc:
            return await self._account_page(request, mailbox_id, error=str(exc), status=400)
        return web.render(
            request,
            "secret.html",
            {
                "title": f"App password {created.row.name!r}",
                "intro": "Enter it in your mail app instead of your password. It is shown only "
                "now; if you lose it, revoke it and create another.",
                "secret": created.password,
                "back": "/account",
            },
        )

    async def revoke_app_password(self, request: Request) -> Response:
        web = self.web
        posted = await self._post(request)
        if isinstance(posted, Response):
            return posted
        _form, mailbox_id, _ = posted
        ident = int(request.path_params["id"])

        def revoke(session: Session) -> None:
            mailbox = self._mailbox(session, mailbox_id)
            ap.revoke_app_password(
                session,
                actor=f"mailbox:{address_of(mailbox)}",
                now=web.now(),
                app_password_id=ident,
                mailbox=mailbox,
            )

        try:
            await web.tx(revoke)
        except ServiceError as exc:
            return await self._account_page(request, mailbox_id, error=str(exc), status=400)
        return await self._account_page(request, mailbox_id, notice="The app password is revoked.")

    async def add_endpoint(self, request: Request) -> Response:
        web = self.web
        posted = await self._post(request)
        if isinstance(posted, Response):
            return posted
        form, mailbox_id, _ = posted

        def add(session: Session) -> None:
            mailbox = self._mailbox(session, mailbox_id)
            recovery.add_endpoint(
                session,
                web.services.env,
                actor=f"mailbox:{address_of(mailbox)}",
                now=web.now(),
                mailbox=mailbox,
                kind=form.get("kind", ""),
                value=form.get("value", ""),
            )

        try:
            await web.tx(add)
        except ServiceError as exc:
            return await self._account_page(request, mailbox_id, error=str(exc), status=400)
        return await self._account_page(
            request, mailbox_id, notice="A verification code was sent to it."
        )

    async def endpoint_action(self, request: Request) -> Response:
        web = self.web
        posted = await self._post(request)
        if isinstance(posted, Response):
            return posted
        form, mailbox_id, _ = posted
        ident, action = int(request.path_params["id"]), request.path_params["action"]
        key = f"verify:{mailbox_id}"
        if action == "verify" and web.accounts.blocked(key):
            return await self._account_page(request, mailbox_id, error=TOO_MANY, status=429)

        def act(session: Session) -> bool:
            mailbox = self._mailbox(session, mailbox_id)
            kwargs = {
                "actor": f"mailbox:{address_of(mailbox)}",
                "now": web.now(),
                "mailbox": mailbox,
                "endpoint_id": ident,
            }
            if action == "verify":
                row = recovery.verify_endpoint(session, code=form.get("code", ""), **kwargs)
                return row.verified_at is not None
            if action == "review":
                recovery.review_endpoint(session, **kwargs)
            elif action == "remove":
                recovery.remove_endpoint(session, **kwargs)
            else:
                raise ServiceError("unknown action")
            return True

        try:
            ok = await web.tx(act)
        except ServiceError as exc:
            return await self._account_page(request, mailbox_id, error=str(exc), status=400)
        if not ok:
            web.accounts.fail(key)
            return await self._account_page(
                request, mailbox_id, status=400, error="That verification code is not right."
            )
        notices = {
            "verify": "The endpoint is verified.",
            "review": "Thank you for reviewing it.",
            "remove": "The endpoint is removed.",
        }
        return await self._account_page(request, mailbox_id, notice=notices[action])
