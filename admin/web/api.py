"""The JSON API for operators, under ``/api/``.

Authentication: ``Authorization: Bearer <API token>`` (scripts), or the
operator session cookie plus the CSRF token in ``X-CSRF-Token`` for
requests that change something (the browser). Every call runs as that
operator through the same service functions as the CLI, so role checks and
audit entries are identical. Reads are checked once, in ``endpoint``: a
GET needs an operator holding some role (``policy.permissions.Action.READ``);
only ``/api/whoami`` answers any signed-in operator. Errors are
``{"error": message}`` with 400 (refused), 401 (not signed in), 403 (role
missing or CSRF), 404 or 410.

Responses never contain a secret of a mailbox owner: invites report where
their link was sent, not the link (unless the organization lets the creator
see it), resets report who did what and when, never the temporary credential.
The one secret the API returns is a new API token, to the operator it
belongs to.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from admin.services import NotFound, ServiceError, invites, offboarding, resets
from admin.services import app_passwords as ap
from admin.services import directory as d
from admin.services import operators as ops
from admin.services.identity import Forbidden, LinkClosed, actor_of, address_of
from admin.services.permissions import authorize
from admin.web.app import MAX_FORM_BYTES, Web
from admin.web.security import CSRF_HEADER, OPERATOR_COOKIE, csrf_ok
from policy.permissions import Action
from storage.models import Operator

Handler = Callable[[Session, Operator, dict[str, Any], Request], Any]
SAFE_METHODS = ("GET", "HEAD")


class Unauthorized(ServiceError):
    pass


class _Encoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, datetime):
            return o.isoformat()
        return super().default(o)


class APIResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, cls=_Encoder, separators=(",", ":")).encode()


def _error(status: int, message: str) -> Response:
    return APIResponse({"error": message}, status_code=status)


def api_operator(session: Session, request: Request, now: datetime) -> Operator:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        operator = ops.token_operator(session, header[7:].strip(), now)
        if operator is None:
            raise Unauthorized("the API token is not valid")
        return operator
    cookie = request.cookies.get(OPERATOR_COOKIE, "")
    found = ops.session_operator(session, cookie, now) if cookie else None
    if found is None:
        raise Unauthorized("sign in, or send an API token as 'Authorization: Bearer <token>'")
    if request.method not in SAFE_METHODS and not csrf_ok(
        request, request.headers.get(CSRF_HEADER)
    ):
        raise Forbidden("a request with the session cookie needs the X-CSRF-Token header")
    return found[0]


def routes(web: Web) -> list[BaseRoute]:
    def endpoint(
        handler: Handler, *, status: int = 200, read_check: bool = True
    ) -> Callable[[Request], Any]:
        async def call(request: Request) -> Response:
            body: dict[str, Any] = {}
            if request.method not in SAFE_METHODS:
                raw = await request.body()
                if len(raw) > MAX_FORM_BYTES:
                    return _error(413, "the request body is too large")
                if raw:
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        return _error(400, "the request body is not JSON")
                    if not isinstance(body, dict):
                        return _error(400, "the request body must be a JSON object")

            def work(session: Session) -> Any:
                operator = api_operator(session, request, web.now())
                if read_check and request.method in SAFE_METHODS:
                    authorize(session, actor_of(operator), Action.READ)
                return handler(session, operator, body, request)

            try:
                result = await web.tx(work)
            except Unauthorized as exc:
                return _error(401, str(exc))
            except Forbidden as exc:
                return _error(403, str(exc))
            except NotFound as exc:
                return _error(404, str(exc))
            except LinkClosed as exc:
                return _error(410, str(exc))
            except ServiceError as exc:
                return _error(400, str(exc))
            except (KeyError, TypeError, ValueError) as exc:
                return _error(400, f"missing or invalid field: {exc}")
            return APIResponse(result, status_code=status)

        return call

    a = APIHandlers(web)
    return [
        # whoami names only the caller, so it answers every signed-in operator.
        Route("/api/whoami", endpoint(a.whoami, read_check=False), methods=["GET"]),
        Route("/api/invites", endpoint(a.list_invites), methods=["GET"]),
        Route("/api/invites", endpoint(a.create_invite, status=201), methods=["POST"]),
        Route("/api/invites/{id:int}/revoke", endpoint(a.revoke_invite), methods=["POST"]),
        Route("/api/resets", endpoint(a.list_resets), methods=["GET"]),
        Route("/api/resets", endpoint(a.request_reset, status=201), methods=["POST"]),
        Route("/api/resets/{id:int}/{step:str}", endpoint(a.reset_step), methods=["POST"]),
        Route("/api/mailboxes/{address:str}/export", a.export, methods=["POST"]),
        Route(
            "/api/mailboxes/{address:str}/{action:str}",
            endpoint(a.mailbox_action),
            methods=["POST"],
        ),
        Route("/api/domains/{name:str}/suspend", endpoint(a.suspend_domain), methods=["POST"]),
        Route("/api/app-passwords", endpoint(a.list_app_passwords), methods=["GET"]),
        Route(
            "/api/app-passwords/{id:int}/revoke", endpoint(a.revoke_app_password), methods=["POST"]
        ),
        Route("/api/sessions", endpoint(a.list_sessions), methods=["GET"]),
        Route("/api/sessions/{id:int}/revoke", endpoint(a.revoke_session), methods=["POST"]),
        Route("/api/tokens", endpoint(a.create_token, status=201), methods=["POST"]),
    ]


def _reason(body: dict[str, Any]) -> str:
    reason = str(body.get("reason") or "").strip()
    if not reason:
        raise ServiceError("a reason is required")
    return reason


class APIHandlers:
    def __init__(self, web: Web) -> None:
        self.web = web

    @property
    def now(self) -> datetime:
        return self.web.now()

    def whoami(
        self, session: Session, operator: Operator, body: dict[str, Any], request: Request
    ) -> Any:
        return {"username": operator.username}

    # -- invites -------------------------------------------------------------------------

    def list_invites(
        self, session: Session, operator: Operator, body: dict[str, Any], request: Request
    ) -> Any:
        domain_name = request.query_params.get("domain")
        domain = d.get_domain(session, domain_name) if domain_name else None
        return invites.list_invites(
            session,
            now=self.now,
            domain=domain,
            pending_only=request.query_params.get("pending") == "1",
        )

    def create_invite(
        self, session: Session, operator: Operator, body: dict[str, Any], request: Request
    ) -> Any:
        domain = d.get_domain(session, str(body["domain"]))
        owner = d.find_person(session, str(body["owner"]))
        days = body.get("days")
        issued = invites.create_invite(
            session,
            self.web.services.env,
            operator=operator,
            now=self.now,
            domain=domain,
            owner=owner,
            local_part=body.get("local_part") or None,
            days=int(days) if days is not None else None,
        )
        view = invites.invite_view(session, issued.invite, self.now)
        if issued.link is not None:  # the organization lets the creator see it
            view["link"] = issued.link
        return view

    def revoke_invite(
        self, session: Session, operator: Operator, body: dict[str, Any], request: Request
    ) -> Any:
        invite = invites.revoke_invite(
            session,
            operator=operator,
            now=self.now,
            invite_id=int(request.path_params["id"]),
            reason=body.get("reason"),
        )
        return invites.invite_view(session, invite, self.now)

    # -- helpdesk resets ---------------------------------------------------------------------

    def list_resets(
        self, session: Session, operator: Operator, body: dict[str, Any], request: Request
    ) -> Any:
        return resets.list_resets(
            session, now=self.now, open_only=request.query_params.get("open") == "1"
        )

    def request_reset(
        self, session: Session, operator: Operator, body: dict[str, Any], request: Request
    ) -> Any:
        mailbox = d.get_mailbox(session, str(body["mailbox"]))
        row = resets.request_reset(
            session,
            operator=operator,
            now=self.now,
            mailbox=mailbox,
            reason=str(body.get("reason") or ""),
        )
        return resets.reset_view(session, row, self.now)

    def reset_step(
        self, session: Session, operator: Operator, body: dict[str, Any], request: Request
    ) -> Any:
        ident, step = int(request.path_params["id"]), request.path_params["step"]
        if step == "approve":
            row = resets.approve_reset(session, operator=operator, now=self.now, request_id=ident)
        elif step == "execute":
            row = resets.execute_reset(
                session, self.web.services.env, operator=operator, now=self.now, request_id=ident
            )
        elif step == "cancel":
            row = resets.cancel_reset(
                session, operator=operator, now=self.now, request_id=ident, reason=_reason(body)
            )
        else:
            raise NotFound(f"no reset step {step!r}")
        return resets.reset_view(session, row, self.now)

    # -- offboarding ------------------------------------------------------------------------

    def mailbox_action(
        self, session: Session, operator: Operator, body: dict[str, Any], request: Request
    ) -> Any:
        mailbox = d.get_mailbox(session, request.path_params["address"])
        action = request.path_params["action"]
        if action == "suspend":
            offboarding.suspend_mailbox(
                session, operator=operator, now=self.now, mailbox=mailbox, reason=_reason(body)
            )
        elif action == "transfer":
            if body.get("owner"):
                owner = d.Owner(person_id=d.find_person(session, str(body["owner"])).id)
            elif body.get("owner_role"):
                owner = d.Owner(role_id=d.find_role(session, str(body["owner_role"])).id)
            else:
                raise ServiceError("name the new owner: owner (a person) or owner_role")
            offboarding.transfer_mailbox(
                session,
                operator=operator,
                now=self.now,
                mailbox=mailbox,
                owner=owner,
                reason=_reason(body),
                keep_credentials=bool(body.get("keep_credentials")),
            )
        elif action == "delete":
            grace = body.get("grace_days")
            row = offboarding.schedule_deletion(
                session,
                operator=operator,
                now=self.now,
                mailbox=mailbox,
                reason=_reason(body),
                grace_days=int(grace)
                if grace is not None
                else offboarding.DEFAULT_DELETE_GRACE_DAYS,
                without_export=bool(body.get("without_export")),
            )
            return offboarding.deletion_view(row)
        elif action == "cancel-delete":
            row = offboarding.cancel_deletion(
                session, operator=operator, now=self.now, mailbox=mailbox, reason=_reason(body)
            )
            return offboarding.deletion_view(row)
        else:
            raise NotFound(f"no mailbox action {action!r}")
        return {
            "mailbox": address_of(mailbox),
            "state": mailbox.state,
            "owner_person_id": mailbox.owner_person_id,
            "owner_role_id": mailbox.owner_role_id,
        }

    async def export(self, request: Request) -> Response:
        """Export runs its file work between two transactions (see ``offboarding``)."""
        web = self.web
        services = web.services
        try:
            body = json.loads(await request.body() or b"{}")
            fmt = str(body.get("format") or "maildir")
        except (ValueError, AttributeError):
            return _error(400, "the request body must be a JSON object")
        now = self.now

        def plan(session: Session) -> offboarding.ExportPlan:
            operator = api_operator(session, request, now)
            mailbox = d.get_mailbox(session, request.path_params["address"])
            return offboarding.plan_export(
                session,
                operator=operator,
                now=now,
                mailbox=mailbox,
                mail_root=services.mail_root,
                export_root=services.export_root,
                fmt=fmt,
            )

        try:
            planned = await web.tx(plan)
            size, sha256 = await run_in_threadpool(offboarding.write_export, planned)
            row = await web.tx(
                lambda s: offboarding.record_export(
                    s,
                    operator=api_operator(s, request, now),
                    now=now,
                    plan=planned,
                    size=size,
                    sha256=sha256,
                )
            )
        except Unauthorized as exc:
            return _error(401, str(exc))
        except Forbidden as exc:
            return _error(403, str(exc))
        except NotFound as exc:
            return _error(404, str(exc))
        except ServiceError as exc:
            return _error(400, str(exc))
        return APIResponse(
            {
                "mailbox": row.address,
                "format": row.format,
                "path": row.path,
                "size": row.size,
                "sha256": row.sha256,
            },
            status_code=201,
        )

    def suspend_domain(
        self, session: Session, operator: Operator, body: dict[str, Any], request: Request
    ) -> Any:
        domain = d.get_domain(session, request.path_params["name"])
        mailboxes = offboarding.suspend_domain(
            session, operator=operator, now=self.now, domain=domain, reason=_reason(body)
        )
        return {"domain": domain.name, "state": domain.state, "mailboxes": mailboxes}

    # -- app passwords (the persistence audit), sessions, tokens ------------------------------

    def list_app_passwords(
        self, session: Session, operator: Operator, body: dict[str, Any], request: Request
    ) -> Any:
        address = request.query_params.get("mailbox")
        mailbox = d.get_mailbox(session, address) if address else None
        return ap.list_app_passwords(
            session,
            now=self.now,
            mailbox=mailbox,
            active_only=request.query_params.get("active") == "1",
        )

    def revoke_app_password(
        self, session: Session, operator: Operator, body: dict[str, Any], request: Request
    ) -> Any:
        from admin.services.identity import require
        from policy.identity import SUSPEND_ROLES
        from storage.models import AppPassword, Mailbox

        row = session.get(AppPassword, int(request.path_params["id"]))
        if row is None:
            raise NotFound(f"no app password {request.path_params['id']}")
        mailbox = session.get(Mailbox, row.mailbox_id)
        assert mailbox is not None
        require(session, operator, SUSPEND_ROLES, mailbox.domain_id, "revoking an app password")
        ap.revoke_app_password(
            session,
            actor=actor_of(operator),
            now=self.now,
            app_password_id=row.id,
            reason=body.get("reason"),
        )
        return ap.view(row, mailbox, self.now)

    def list_sessions(
        self, session: Session, operator: Operator, body: dict[str, Any], request: Request
    ) -> Any:
        return ops.list_sessions(
            session, viewer=operator, now=self.now, username=request.query_params.get("operator")
        )

    def revoke_session(
        self, session: Session, operator: Operator, body: dict[str, Any], request: Request
    ) -> Any:
        row = ops.revoke_session(
            session, operator=operator, now=self.now, session_id=int(request.path_params["id"])
        )
        owner = session.get(Operator, row.operator_id)
        assert owner is not None
        return ops.session_view(row, owner, self.now)

    def create_token(
        self, session: Session, operator: Operator, body: dict[str, Any], request: Request
    ) -> Any:
        days = body.get("days")
        created = ops.create_api_token(
            session,
            operator=operator,
            now=self.now,
            name=str(body.get("name") or ""),
            days=int(days) if days is not None else None,
        )
        return {
            "id": created.row.id,
            "name": created.row.name,
            "token": created.token,
            "expires_at": created.row.expires_at,
        }
