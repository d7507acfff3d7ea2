"""Who may change what in the control plane: the operator permission table.

DESIGN.md gives operators scoped roles: ``owner``, ``domain-admin`` (scoped
to domains), ``helpdesk``, ``approver`` and ``auditor``. This module names
every control-plane change outside the identity lifecycle, says which roles
may make it and at which scope, and decides one request: the acting
operator's facts and the action in, a ``Permission`` (allowed, reason) out.
"No" is a decision with its reason, never an exception; the caller refuses.

Scopes:

- ``ORGANIZATION``: only an organization-wide grant of the role counts
  (creating domains, clients or operators changes the whole agency).
- ``DOMAIN``: an organization-wide grant, or one scoped to the domain acted
  on. Acting on no particular domain (``reindex --all``) needs the
  organization-wide grant.
- ``ANY``: the role at any scope. People and owner roles are organization
  records, but a domain-admin needs them to provision its own domains.

The roles, in short:

- ``owner`` (organization-wide) may do everything.
- ``domain-admin`` runs its domains: mailboxes (create, activate, suspend,
  quota, reindex), aliases, forwards and catch-alls, the domain's forwarding
  policy, DKIM keys, and suspending the domain. It may record people and
  owner roles (mailboxes need owners). It may not create domains, clients,
  organizations or operators, change quotas above the mailbox, or reactivate
  or freeze a domain: reactivation and incident freezes are the agency's call.
- ``helpdesk`` looks and helps: it may suspend a mailbox (that only ever
  removes access, as ``policy.identity.SUSPEND_ROLES`` already says), reindex
  one, retry a queued message and open reset requests. It may not change
  routing (aliases, forwards, catch-alls, domain policy) or give access back
  (activate): a support login must not be a way to redirect someone's mail.
- ``approver`` approves helpdesk resets (``policy.identity``) and reads.
- ``auditor`` reads: every list and show, the audit and routing logs,
  ``log verify``.

Reading needs at least one role (``Action.READ``): an operator whose roles
were all withdrawn keeps a login but sees nothing.

The identity lifecycle keeps its own decisions in ``policy.identity`` and
its services check them: invites (``PROVISION_ROLES``), reset requests and
approvals, app-password revocation, transfer, export, deletion and purge of
mailboxes, the identity policy and other operators' links, sessions and
tokens (owner). The rows here that overlap (suspending mailboxes and
domains, creating mailboxes) reuse those role tuples, so the two cannot drift.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from policy.identity import (
    APPROVER,
    AUDITOR,
    DOMAIN_ADMIN,
    HELPDESK,
    OFFBOARD_ROLES,
    OWNER,
    PROVISION_ROLES,
    SUSPEND_ROLES,
    OperatorFacts,
    Permission,
)

ROLES = (OWNER, DOMAIN_ADMIN, HELPDESK, APPROVER, AUDITOR)


class Action(enum.StrEnum):
    """A control-plane change (or reading); values match the audit log's action names."""

    ORGANIZATION_CREATE = "organization.create"
    ORGANIZATION_QUOTA = "organization.quota"
    CLIENT_CREATE = "client.create"
    CLIENT_QUOTA = "client.quota"
    DOMAIN_CREATE = "domain.create"
    DOMAIN_QUOTA = "domain.quota"
    DOMAIN_POLICY = "domain.policy"
    DOMAIN_STATE = "domain.state"  # activate or freeze
    DOMAIN_SUSPEND = "domain.suspend"
    DKIM_ROTATE = "dkim.rotate"
    DKIM_RETIRE = "dkim.retire"
    PERSON_CREATE = "person.create"
    ROLE_CREATE = "role.create"
    OPERATOR_CREATE = "operator.create"
    MAILBOX_CREATE = "mailbox.create"
    MAILBOX_ACTIVATE = "mailbox.activate"
    MAILBOX_SUSPEND = "mailbox.suspend"
    MAILBOX_QUOTA = "mailbox.quota"
    MAILBOX_REINDEX = "mailbox.reindex"
    ALIAS_CREATE = "alias.create"
    ALIAS_DISABLE = "alias.disable"
    FORWARD_CREATE = "forward.create"
    FORWARD_DISABLE = "forward.disable"
    CATCHALL_CREATE = "catchall.create"
    CATCHALL_DISABLE = "catchall.disable"
    QUEUE_RETRY = "queue.retry"
    QUEUE_HOLD = "queue.hold"
    QUEUE_RELEASE = "queue.release"
    QUEUE_DELETE = "queue.delete"
    READ = "read"


class Scope(enum.Enum):
    ORGANIZATION = "organization"
    DOMAIN = "domain"
    ANY = "any"


@dataclass(frozen=True, slots=True)
class Grant:
    """Who may take an action: ``roles`` at ``scope``; ``phrase`` says what it is.

    ``phrase`` completes "operator X may not …"; ``{domain}`` stands for the
    domain acted on ("every domain" when there is none).
    """

    phrase: str
    roles: tuple[str, ...]
    scope: Scope


_ORG, _DOMAIN, _ANY = Scope.ORGANIZATION, Scope.DOMAIN, Scope.ANY
_RUN_DOMAIN = (OWNER, DOMAIN_ADMIN)  # routing and mailboxes of a domain

PERMISSIONS: Mapping[Action, Grant] = MappingProxyType(
    {
        Action.ORGANIZATION_CREATE: Grant("create organizations", (OWNER,), _ORG),
        Action.ORGANIZATION_QUOTA: Grant("change the organization's quota", (OWNER,), _ORG),
        Action.CLIENT_CREATE: Grant("create clients", (OWNER,), _ORG),
        Action.CLIENT_QUOTA: Grant("change client quotas", (OWNER,), _ORG),
        Action.DOMAIN_CREATE: Grant("create domains", (OWNER,), _ORG),
        Action.DOMAIN_QUOTA: Grant("change the quota of {domain}", (OWNER,), _DOMAIN),
        Action.DOMAIN_POLICY: Grant("change the forwarding policy of {domain}", _RUN_DOMAIN,
                                    _DOMAIN),
        Action.DOMAIN_STATE: Grant("activate or freeze {domain}", (OWNER,), _DOMAIN),
        Action.DOMAIN_SUSPEND: Grant("suspend {domain}", OFFBOARD_ROLES, _DOMAIN),
        Action.DKIM_ROTATE: Grant("rotate the DKIM keys of {domain}", _RUN_DOMAIN, _DOMAIN),
        Action.DKIM_RETIRE: Grant("retire the DKIM keys of {domain}", _RUN_DOMAIN, _DOMAIN),
        Action.PERSON_CREATE: Grant("record people", _RUN_DOMAIN, _ANY),
        Action.ROLE_CREATE: Grant("create owner roles", _RUN_DOMAIN, _ANY),
        Action.OPERATOR_CREATE: Grant("create operators", (OWNER,), _ORG),
        Action.MAILBOX_CREATE: Grant("create mailboxes on {domain}", PROVISION_ROLES, _DOMAIN),
        Action.MAILBOX_ACTIVATE: Grant("activate mailboxes on {domain}", _RUN_DOMAIN, _DOMAIN),
        Action.MAILBOX_SUSPEND: Grant("suspend mailboxes on {domain}", SUSPEND_ROLES, _DOMAIN),
        Action.MAILBOX_QUOTA: Grant("change mailbox quotas on {domain}", _RUN_DOMAIN, _DOMAIN),
        Action.MAILBOX_REINDEX: Grant("reindex mailboxes on {domain}",
                                      (OWNER, DOMAIN_ADMIN, HELPDESK), _DOMAIN),
        Action.ALIAS_CREATE: Grant("add aliases on {domain}", _RUN_DOMAIN, _DOMAIN),
        Action.ALIAS_DISABLE: Grant("disable aliases on {domain}", _RUN_DOMAIN, _DOMAIN),
        Action.FORWARD_CREATE: Grant("add forwards on {domain}", _RUN_DOMAIN, _DOMAIN),
        Action.FORWARD_DISABLE: Grant("disable forwards on {domain}", _RUN_DOMAIN, _DOMAIN),
        Action.CATCHALL_CREATE: Grant("set the catch-all of {domain}", _RUN_DOMAIN, _DOMAIN),
        Action.CATCHALL_DISABLE: Grant("disable the catch-all of {domain}", _RUN_DOMAIN,
                                       _DOMAIN),
        # The queue holds every client's mail: organization-wide. A retry only
        # brings forward an attempt that is due anyway, so the helpdesk may.
        Action.QUEUE_RETRY: Grant("retry queued messages", (OWNER, HELPDESK), _ORG),
        Action.QUEUE_HOLD: Grant("hold queued messages", (OWNER,), _ORG),
        Action.QUEUE_RELEASE: Grant("release held messages", (OWNER,), _ORG),
        Action.QUEUE_DELETE: Grant("delete queued messages", (OWNER,), _ORG),
        Action.READ: Grant("read the control plane or its logs", ROLES, _ANY),
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class DomainRef:
    """The domain acted on: its id decides, its name explains."""

    id: int
    name: str


def describe_roles(operator: OperatorFacts, names: Mapping[int, str]) -> str:
    """``owner``, ``domain-admin of globex.test, helpdesk``, or ``no role``."""
    shown = sorted(
        role if domain_id is None else f"{role} of {names.get(domain_id, f'domain #{domain_id}')}"
        for role, domain_id in operator.roles
    )
    return ", ".join(shown) or "no role"


def _holds(operator: OperatorFacts, rule: Grant, domain_id: int | None) -> bool:
    if rule.scope is Scope.ANY:
        return any(role in rule.roles for role, _ in operator.roles)
    if rule.scope is Scope.ORGANIZATION:
        domain_id = None
    return operator.holds_any(rule.roles, domain_id)


def _needs(rule: Grant, domain: DomainRef | None) -> str:
    roles = " or ".join(rule.roles)
    if rule.scope is Scope.ANY:
        return roles
    if rule.scope is Scope.DOMAIN and domain is not None:
        return f"{roles} for {domain.name}"
    return f"{roles} organization-wide"


def decide(
    operator: OperatorFacts,
    action: Action,
    domain: DomainRef | None = None,
    *,
    names: Mapping[int, str] | None = None,
) -> Permission:
    """May ``operator`` take ``action``, on ``domain`` when the action concerns one?

    ``names`` maps the domain ids of the operator's scoped roles to their
    names; it only makes the reason readable.
    """
    rule = PERMISSIONS[action]
    what = rule.phrase.format(domain=domain.name if domain else "every domain")
    who = f"operator {operator.username}"
    if not operator.active:
        return Permission(False, f"{who} is not active and may not {what}")
    roles = describe_roles(operator, names or {})
    if _holds(operator, rule, domain.id if domain else None):
        return Permission(True, f"{who} ({roles}) may {what}")
    return Permission(False, f"{who} ({roles}) may not {what}: that needs {_needs(rule, domain)}")
