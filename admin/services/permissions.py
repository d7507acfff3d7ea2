"""Refuse a control-plane change the acting operator's roles do not allow.

Every mutating service outside the identity lifecycle calls ``authorize``
first, before it reads anything it would change, so the CLI, the JSON API
and anything built later get the same answer from ``policy.permissions``
without repeating it per command. A refusal raises ``Forbidden`` (the CLI
exits 2, the API answers 403) and, since nothing was changed yet, the
transaction rolls back without an audit entry.

Actors are the audit log's strings. ``operator:<username>`` is checked
against the table. Every other actor is an in-process caller that no
interface builds from a request: ``system:*`` (``mailward init``, the demo,
benchmarks and tests) and ``person:<id>`` (an invitee setting up the mailbox
an authorized operator invited them to) are trusted.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from admin.services.identity import Forbidden, operator_facts
from policy.identity import Permission
from policy.permissions import Action, DomainRef, decide
from storage.models import Domain, Operator

OPERATOR_ACTOR = "operator:"


def operator_username(actor: str) -> str | None:
    """The username behind ``operator:<username>``; None for any other actor."""
    return actor.removeprefix(OPERATOR_ACTOR) if actor.startswith(OPERATOR_ACTOR) else None


def permission(
    session: Session, operator: Operator, action: Action, domain: Domain | None = None
) -> Permission:
    facts = operator_facts(session, operator)
    scoped = {d for _, d in facts.roles if d is not None}
    names = (
        dict(session.execute(select(Domain.id, Domain.name).where(Domain.id.in_(scoped))).all())
        if scoped
        else {}
    )
    ref = DomainRef(domain.id, domain.name) if domain is not None else None
    return decide(facts, action, ref, names=names)


def authorize(session: Session, actor: str, action: Action, domain: Domain | None = None) -> None:
    """Raise ``Forbidden`` unless ``actor`` may take ``action`` (on ``domain``)."""
    username = operator_username(actor)
    if username is None:
        return  # system:* and person:* (see the module docstring)
    operator = session.scalars(select(Operator).where(Operator.username == username)).first()
    if operator is None:
        raise Forbidden(f"no operator {username!r}")
    decision = permission(session, operator, action, domain)
    if not decision:
        raise Forbidden(decision.reason)
