"""Operator accounts: setup links, sign-in with an optional TOTP factor, sessions, API tokens.

Operators are people with personal accounts; nobody chooses an operator's
password for them. An operator (the first one included, made by ``mailward
init``) gets a one-time setup link sent to their out-of-band contact, sets
their own password there and may enrol a TOTP authenticator (RFC 6238),
which the organization's identity policy can make mandatory. Sign-in opens
a session that expires (``OPERATOR_SESSION_HOURS``) and can be listed and
revoked; scripts use named API tokens instead. Session cookies and API
tokens are 192-bit random values stored as SHA-256.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from admin.notify import Delivery
from admin.services import NotFound, ServiceError
from admin.services.identity import (
    Forbidden,
    IdentityEnv,
    LinkClosed,
    actor_of,
    check_new_password,
    identity_policy,
    notify,
    operator_facts,
    recipient,
)
from admin.services.totp import b32, from_b32, verify_totp
from policy.identity import (
    LINK_MESSAGES,
    OWNER,
    SETUP_LINK_HOURS,
    UNKNOWN_LINK_MESSAGE,
    LinkState,
    link_state,
)
from storage import audit
from storage.models import ApiToken, Operator, Person
from storage.models_identity import OperatorSession, OperatorSetupLink, OperatorTOTP
from storage.secrets import dummy_hash, hash_password, new_token, token_digest, verify_password

OPERATOR_SESSION_HOURS = 12
MAX_API_TOKEN_DAYS = 365
SETUP_PATH = "/operator/setup/"
BAD_LOGIN = "The username, password or code is not right."
# Touch ``last_seen_at`` at most this often: a write per request would cost more than it tells.
LAST_SEEN_RESOLUTION = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class OpenedOperatorSession:
    row: OperatorSession
    token: str  # goes into the cookie only


@dataclass(frozen=True, slots=True)
class IssuedSetupLink:
    row: OperatorSetupLink
    deliveries: list[Delivery]


@dataclass(frozen=True, slots=True)
class NewApiToken:
    row: ApiToken
    token: str  # shown once to the operator who owns it


def _org_of(session: Session, operator: Operator) -> int:
    person = session.get(Person, operator.person_id)
    assert person is not None
    return person.organization_id


def totp_required(session: Session, operator: Operator) -> bool:
    return identity_policy(session, _org_of(session, operator)).operator_totp_required


# -- setup links ------------------------------------------------------------------


def create_setup_link(
    session: Session,
    env: IdentityEnv,
    *,
    actor: str,
    now: datetime,
    operator: Operator,
    by: Operator | None = None,
) -> IssuedSetupLink:
    """Send ``operator`` a one-time link to set their password; older links stop working.

    ``by`` is the operator asking (an owner, or the operator themselves);
    None only for ``mailward init``, which creates the first operator.
    """
    if (
        by is not None
        and by.id != operator.id
        and not operator_facts(session, by).holds(OWNER, None)
    ):
        raise Forbidden("only an owner can send another operator a setup link")
    if not operator.active:
        raise ServiceError(f"operator {operator.username!r} is not active")
    session.execute(
        update(OperatorSetupLink)
        .where(
            OperatorSetupLink.operator_id == operator.id,
            OperatorSetupLink.used_at.is_(None),
            OperatorSetupLink.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    token = new_token()
    row = OperatorSetupLink(
        operator_id=operator.id,
        token_sha256=token_digest(token),
        created_by=actor,
        created_at=now,
        expires_at=now + timedelta(hours=SETUP_LINK_HOURS),
    )
    session.add(row)
    session.flush()
    target = f"operator:{operator.username}"
    audit.record(
        session,
        actor=actor,
        action="operator.setup-link",
        target=target,
        now=now,
        after=audit.snapshot(row),
    )
    person = session.get(Person, operator.person_id)
    assert person is not None
    body = (
        f"Hello {person.name},\n\nYour Mailward operator account {operator.username!r} is "
        f"waiting for you. Open this link within {SETUP_LINK_HOURS} hours to choose your "
        f"password and set up your authenticator app:\n\n{env.link(SETUP_PATH + token)}\n\n"
        "The link works once. Nobody else sees the password you choose.\n"
    )
    deliveries = notify(
        session,
        env,
        actor=actor,
        now=now,
        kind="operator-setup",
        to=recipient(person),
        subject="Set up your Mailward operator account",
        body=body,
        about=target,
    )
    return IssuedSetupLink(row, deliveries)


def open_setup_link(
    session: Session, token: str, now: datetime, *, lock: bool = False
) -> tuple[OperatorSetupLink, Operator]:
    row = None
    if token and len(token) <= 128:
        stmt = select(OperatorSetupLink).where(
            OperatorSetupLink.token_sha256 == token_digest(token)
        )
        row = session.scalars(stmt.with_for_update() if lock else stmt).first()
    if row is None:
        raise LinkClosed(UNKNOWN_LINK_MESSAGE)
    state = link_state(
        expires_at=row.expires_at, used_at=row.used_at, revoked_at=row.revoked_at, now=now
    )
    if state is not LinkState.PENDING:
        raise LinkClosed(LINK_MESSAGES[state])
    operator = session.get(Operator, row.operator_id)
    if operator is None or not operator.active:
        raise LinkClosed(UNKNOWN_LINK_MESSAGE)
    return row, operator


def complete_setup(
    session: Session,
    env: IdentityEnv,
    *,
    token: str,
    now: datetime,
    password: str,
    totp_secret: str | None = None,
    totp_code: str | None = None,
) -> Operator:
    """Set the operator's password, and enrol TOTP when a secret and a matching code are given."""
    row, operator = open_setup_link(session, token, now, lock=True)
    check_new_password(env, password, operator.username)
    enrol = bool(totp_secret and totp_code)
    if not enrol and totp_required(session, operator):
        raise ServiceError(
            "your organization requires an authenticator code: scan the key "
            "and enter the code it shows"
        )
    actor = actor_of(operator)
    before = audit.snapshot(operator)
    operator.password_hash = hash_password(password)
    if enrol:
        assert totp_secret is not None and totp_code is not None
        _enrol_totp(
            session, env, operator=operator, now=now, secret_b32=totp_secret, code=totp_code
        )
    row.used_at = now
    _end_sessions(session, operator=operator, now=now)
    audit.record(
        session,
        actor=actor,
        action="operator.setup",
        target=f"operator:{operator.username}",
        now=now,
        before=before,
        after={**(audit.snapshot(operator) or {}), "totp": enrol},
    )
    return operator


def _enrol_totp(
    session: Session,
    env: IdentityEnv,
    *,
    operator: Operator,
    now: datetime,
    secret_b32: str,
    code: str,
) -> None:
    if env.box is None:
        raise ServiceError("TOTP is not available: the identity key is not configured")
    try:
        secret = from_b32(secret_b32)
    except ValueError as exc:
        raise ServiceError("the authenticator key is not valid") from exc
    step = verify_totp(secret, code, now.timestamp())
    if step is None:
        raise ServiceError("the authenticator code does not match; check the device's clock")
    sealed = env.box.seal(secret, context=_totp_context(operator))
    existing = session.get(OperatorTOTP, operator.id)
    if existing is None:
        session.add(
            OperatorTOTP(
                operator_id=operator.id, secret_encrypted=sealed, created_at=now, last_step=step
            )
        )
    else:
        existing.secret_encrypted, existing.created_at, existing.last_step = sealed, now, step


def _totp_context(operator: Operator) -> str:
    return f"mailward-totp:operator:{operator.id}"


def new_totp_secret() -> str:
    return b32(secrets.token_bytes(20))


# -- sign-in and sessions -------------------------------------------------------------


def login(
    session: Session,
    env: IdentityEnv,
    *,
    username: str,
    password: str,
    totp_code: str | None,
    now: datetime,
    client: str | None,
) -> OpenedOperatorSession:
    operator = session.scalars(
        select(Operator).where(Operator.username == username.strip().lower())
    ).first()
    if operator is None or not operator.active or not operator.password_hash:
        verify_password(dummy_hash(), password)
        raise ServiceError(BAD_LOGIN)
    if not verify_password(operator.password_hash, password):
        raise ServiceError(BAD_LOGIN)
    enrolled = session.get(OperatorTOTP, operator.id)
    if enrolled is not None:
        secret = (
            env.box.open(enrolled.secret_encrypted, context=_totp_context(operator))
            if env.box
            else None
        )
        step = None
        if secret is not None and totp_code:
            step = verify_totp(secret, totp_code, now.timestamp(), last_step=enrolled.last_step)
        if step is None:
            raise ServiceError(BAD_LOGIN)
        enrolled.last_step = step
    elif totp_required(session, operator):
        raise ServiceError(
            "your organization requires an authenticator; ask an owner for a new "
            "setup link to enrol one"
        )
    token = new_token()
    row = OperatorSession(
        operator_id=operator.id,
        token_sha256=token_digest(token),
        created_at=now,
        expires_at=now + timedelta(hours=OPERATOR_SESSION_HOURS),
        last_seen_at=now,
        client=(client or "")[:64] or None,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor_of(operator),
        action="operator.login",
        target=f"operator:{operator.username}",
        now=now,
        after={"session": row.id, "client": row.client, "totp": enrolled is not None},
    )
    return OpenedOperatorSession(row, token)


def session_operator(
    session: Session, token: str, now: datetime
) -> tuple[Operator, OperatorSession] | None:
    if not token or len(token) > 128:
        return None
    row = session.scalars(
        select(OperatorSession).where(OperatorSession.token_sha256 == token_digest(token))
    ).first()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    operator = session.get(Operator, row.operator_id)
    if operator is None or not operator.active:
        return None
    if row.last_seen_at is None or now - row.last_seen_at > LAST_SEEN_RESOLUTION:
        row.last_seen_at = now
    return operator, row


def token_operator(session: Session, token: str, now: datetime) -> Operator | None:
    if not token or len(token) > 128:
        return None
    row = session.scalars(
        select(ApiToken).where(ApiToken.token_sha256 == token_digest(token))
    ).first()
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    operator = session.get(Operator, row.operator_id)
    return operator if operator is not None and operator.active else None


def _end_sessions(session: Session, *, operator: Operator, now: datetime) -> int:
    return session.execute(
        update(OperatorSession)
        .where(OperatorSession.operator_id == operator.id, OperatorSession.revoked_at.is_(None))
        .values(revoked_at=now)
    ).rowcount  # type: ignore[attr-defined]


def session_view(row: OperatorSession, operator: Operator, now: datetime) -> dict[str, Any]:
    if row.revoked_at is not None:
        state = "revoked"
    elif row.expires_at <= now:
        state = "expired"
    else:
        state = "active"
    return {
        "id": row.id,
        "operator": operator.username,
        "state": state,
        "client": row.client,
        "created_at": row.created_at,
        "last_seen_at": row.last_seen_at,
        "expires_at": row.expires_at,
    }


def list_sessions(
    session: Session,
    *,
    viewer: Operator,
    now: datetime,
    username: str | None = None,
    active_only: bool = True,
) -> list[dict[str, Any]]:
    """Sessions of ``username`` (default: the viewer); other operators' need the owner role."""
    target = viewer
    if username is not None and username != viewer.username:
        if not operator_facts(session, viewer).holds(OWNER, None):
            raise Forbidden("only an owner can list other operators' sessions")
        target = _operator(session, username)
    stmt = select(OperatorSession).where(OperatorSession.operator_id == target.id)
    if active_only:
        stmt = stmt.where(OperatorSession.revoked_at.is_(None), OperatorSession.expires_at > now)
    rows = session.scalars(stmt.order_by(OperatorSession.id))
    return [session_view(row, target, now) for row in rows]


def revoke_session(
    session: Session, *, operator: Operator, now: datetime, session_id: int
) -> OperatorSession:
    row = session.get(OperatorSession, session_id)
    if row is None:
        raise NotFound(f"no operator session {session_id}")
    owner = session.get(Operator, row.operator_id)
    assert owner is not None
    if owner.id != operator.id and not operator_facts(session, operator).holds(OWNER, None):
        raise Forbidden("only an owner can revoke another operator's session")
    if row.revoked_at is None:
        row.revoked_at = now
        audit.record(
            session,
            actor=actor_of(operator),
            action="operator.session-revoke",
            target=f"operator:{owner.username}",
            now=now,
            after={"session": row.id},
        )
    return row


def logout(session: Session, token: str, now: datetime) -> None:
    session.execute(
        update(OperatorSession)
        .where(
            OperatorSession.token_sha256 == token_digest(token),
            OperatorSession.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )


def _operator(session: Session, username: str) -> Operator:
    operator = session.scalars(select(Operator).where(Operator.username == username)).first()
    if operator is None:
        raise NotFound(f"no operator {username!r}")
    return operator


# -- API tokens -------------------------------------------------------------------------


def create_api_token(
    session: Session, *, operator: Operator, now: datetime, name: str, days: int | None
) -> NewApiToken:
    """A token for the operator's own scripts; shown once, stored as SHA-256."""
    name = name.strip()
    if not name or len(name) > 64:
        raise ServiceError("an API token needs a name of 1-64 characters")
    if days is not None and not 1 <= days <= MAX_API_TOKEN_DAYS:
        raise ServiceError(f"an API token lives between 1 and {MAX_API_TOKEN_DAYS} days")
    token = "mw_" + new_token()
    row = ApiToken(
        operator_id=operator.id,
        name=name,
        token_sha256=token_digest(token),
        created_at=now,
        expires_at=now + timedelta(days=days) if days else None,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor_of(operator),
        action="api-token.create",
        target=f"api-token:{row.id}",
        now=now,
        after=audit.snapshot(row),
    )
    return NewApiToken(row, token)


def revoke_api_token(
    session: Session, *, operator: Operator, now: datetime, token_id: int
) -> ApiToken:
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFound(f"no API token {token_id}")
    if row.operator_id != operator.id and not operator_facts(session, operator).holds(OWNER, None):
        raise Forbidden("only an owner can revoke another operator's API token")
    if row.revoked_at is None:
        before = audit.snapshot(row)
        row.revoked_at = now
        audit.record(
            session,
            actor=actor_of(operator),
            action="api-token.revoke",
            target=f"api-token:{row.id}",
            now=now,
            before=before,
            after=audit.snapshot(row),
        )
    return row


def list_api_tokens(session: Session, *, now: datetime) -> list[dict[str, Any]]:
    rows = session.execute(
        select(ApiToken, Operator)
        .join(Operator, ApiToken.operator_id == Operator.id)
        .where(
            ApiToken.revoked_at.is_(None),
            or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now),
        )
        .order_by(ApiToken.id)
    )
    return [
        {
            "id": t.id,
            "operator": o.username,
            "name": t.name,
            "created_at": t.created_at,
            "expires_at": t.expires_at,
        }
        for t, o in rows
    ]
