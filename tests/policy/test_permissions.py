"""The operator permission table as pure decisions: roles, scopes and reasons."""

from __future__ import annotations

import pytest

from policy.identity import (
    OFFBOARD_ROLES,
    PROVISION_ROLES,
    SUSPEND_ROLES,
    OperatorFacts,
)
from policy.permissions import (
    PERMISSIONS,
    ROLES,
    Action,
    DomainRef,
    Scope,
    decide,
    describe_roles,
)

ACME = DomainRef(1, "acme.test")
GLOBEX = DomainRef(2, "globex.test")
NAMES = {ACME.id: ACME.name, GLOBEX.id: GLOBEX.name}
ROUTING = (
    Action.ALIAS_CREATE,
    Action.ALIAS_DISABLE,
    Action.FORWARD_CREATE,
    Action.FORWARD_DISABLE,
    Action.CATCHALL_CREATE,
    Action.CATCHALL_DISABLE,
    Action.DOMAIN_POLICY,
)


def op(name: str, *roles: tuple[str, int | None], active: bool = True) -> OperatorFacts:
    return OperatorFacts(name, active, frozenset(roles))


OWNER = op("admin", ("owner", None))
GLOBEX_ADMIN = op("globex-admin", ("domain-admin", GLOBEX.id))
HELPDESK = op("helpdesk", ("helpdesk", None))
APPROVER = op("approver", ("approver", None))
AUDITOR = op("auditor", ("auditor", None))
NOBODY = op("nobody")


def _on(action: Action) -> DomainRef | None:
    return ACME if PERMISSIONS[action].scope is Scope.DOMAIN else None


def test_every_action_has_a_grant_and_owner_is_in_each() -> None:
    """Ensure the table names every action and an organization-wide owner may do all of them."""
    assert set(PERMISSIONS) == set(Action)
    for action, rule in PERMISSIONS.items():
        assert "owner" in rule.roles, action
        assert set(rule.roles) <= set(ROLES), action
        assert decide(OWNER, action, _on(action)), action


def test_auditor_and_approver_may_only_read() -> None:
    """Ensure auditors and approvers are refused every change and allowed to read."""
    for facts in (AUDITOR, APPROVER):
        assert decide(facts, Action.READ)
        for action in set(Action) - {Action.READ}:
            assert not decide(facts, action, _on(action)), (facts.username, action)


def test_an_operator_without_a_role_may_not_read() -> None:
    """Ensure reading needs a role, and the reason says the operator holds none."""
    verdict = decide(NOBODY, Action.READ)
    assert not verdict
    assert verdict.reason.startswith("operator nobody (no role) may not read")


def test_domain_admin_is_confined_to_its_domains() -> None:
    """Ensure a domain-admin runs routing and mailboxes on its domain and nowhere else."""
    domain_actions = [
        action
        for action, rule in PERMISSIONS.items()
        if rule.scope is Scope.DOMAIN and "domain-admin" in rule.roles
    ]
    assert set(ROUTING) <= set(domain_actions)
    for action in domain_actions:
        assert decide(GLOBEX_ADMIN, action, GLOBEX, names=NAMES), action
        assert not decide(GLOBEX_ADMIN, action, ACME, names=NAMES), action
        assert not decide(GLOBEX_ADMIN, action, None, names=NAMES), action  # "every domain"


def test_domain_admin_may_not_change_the_organization() -> None:
    """Ensure a domain-admin may not create domains, clients, operators or change their state."""
    for action in (
        Action.ORGANIZATION_CREATE,
        Action.ORGANIZATION_QUOTA,
        Action.CLIENT_CREATE,
        Action.CLIENT_QUOTA,
        Action.DOMAIN_CREATE,
        Action.OPERATOR_CREATE,
        Action.QUEUE_DELETE,
    ):
        assert not decide(GLOBEX_ADMIN, action, None, names=NAMES), action
    assert not decide(GLOBEX_ADMIN, Action.DOMAIN_QUOTA, GLOBEX, names=NAMES)
    assert not decide(GLOBEX_ADMIN, Action.DOMAIN_STATE, GLOBEX, names=NAMES)
    assert decide(GLOBEX_ADMIN, Action.DOMAIN_SUSPEND, GLOBEX, names=NAMES)


def test_domain_admin_may_record_owners_for_its_mailboxes() -> None:
    """Ensure people and owner roles (organization records) need a domain-admin grant anywhere."""
    for action in (Action.PERSON_CREATE, Action.ROLE_CREATE):
        assert decide(GLOBEX_ADMIN, action)
        assert not decide(HELPDESK, action)
        assert not decide(AUDITOR, action)


def test_helpdesk_may_suspend_but_not_route_or_reactivate() -> None:
    """Ensure the helpdesk suspends and reindexes mailboxes but changes no routing or access."""
    assert decide(HELPDESK, Action.MAILBOX_SUSPEND, ACME)
    assert decide(HELPDESK, Action.MAILBOX_REINDEX, ACME)
    assert decide(HELPDESK, Action.QUEUE_RETRY)
    for action in (*ROUTING, Action.MAILBOX_ACTIVATE, Action.MAILBOX_CREATE, Action.DKIM_ROTATE):
        assert not decide(HELPDESK, action, ACME), action
    assert not decide(HELPDESK, Action.QUEUE_DELETE)


def test_refusal_names_the_operator_its_roles_the_action_and_the_domain() -> None:
    """Ensure a refusal reads as a sentence an operator can act on."""
    verdict = decide(GLOBEX_ADMIN, Action.FORWARD_CREATE, ACME, names=NAMES)
    assert not verdict.allowed
    assert verdict.reason == (
        "operator globex-admin (domain-admin of globex.test) may not add forwards on "
        "acme.test: that needs owner or domain-admin for acme.test"
    )
    assert decide(AUDITOR, Action.DOMAIN_CREATE).reason == (
        "operator auditor (auditor) may not create domains: that needs owner organization-wide"
    )


def test_organization_actions_ignore_domain_scoped_grants() -> None:
    """Ensure a role scoped to a domain does not count for an organization-wide action."""
    scoped_owner = op("acme-owner", ("owner", ACME.id))
    assert decide(scoped_owner, Action.FORWARD_CREATE, ACME)
    assert not decide(scoped_owner, Action.DOMAIN_CREATE)
    assert not decide(scoped_owner, Action.OPERATOR_CREATE)


def test_inactive_operator_may_do_nothing() -> None:
    """Ensure a deactivated owner is refused, reads included, and told why."""
    retired = op("old", ("owner", None), active=False)
    verdict = decide(retired, Action.READ)
    assert not verdict and "not active" in verdict.reason
    assert not decide(retired, Action.FORWARD_CREATE, ACME)


def test_overlapping_rows_reuse_the_identity_role_tuples() -> None:
    """Ensure suspending and provisioning agree with the identity services' own checks."""
    assert PERMISSIONS[Action.MAILBOX_SUSPEND].roles == SUSPEND_ROLES
    assert PERMISSIONS[Action.DOMAIN_SUSPEND].roles == OFFBOARD_ROLES
    assert PERMISSIONS[Action.MAILBOX_CREATE].roles == PROVISION_ROLES


@pytest.mark.parametrize(
    ("roles", "shown"),
    [
        ((), "no role"),
        ((("owner", None),), "owner"),
        (
            (("helpdesk", None), ("domain-admin", GLOBEX.id)),
            "domain-admin of globex.test, helpdesk",
        ),
        ((("approver", 99),), "approver of domain #99"),
    ],
)
def test_describe_roles(roles: tuple[tuple[str, int | None], ...], shown: str) -> None:
    """Ensure roles are described with their scope, sorted, and an unnamed domain by id."""
    assert describe_roles(op("x", *roles), NAMES) == shown
