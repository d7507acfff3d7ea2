"""Recipient facts: rows of the control plane turned into the values policy decides on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from admin.services.directory import (
    Owner,
    create_client,
    create_domain,
    create_mailbox,
    create_organization,
    create_person,
    create_role,
    set_domain_policy,
    set_domain_state,
    set_mailbox_state,
)
from admin.services.rules import add_alias, add_forward, disable_rule, set_catch_all
from policy.addresses import Address
from policy.routing import (
    DomainFacts,
    DomainState,
    MailboxFacts,
    MailboxState,
    Reason,
    RecipientFacts,
    RouteAction,
    RuleKind,
    route,
)
from storage.db import Database
from storage.directory import find_mailbox, recipient_facts
from storage.models import Alias

ACTOR = "test"
PURPOSE = "route sales enquiries during the migration"
OUTSIDE = Address("someone", "elsewhere.org")
PARTNER = Address("partner", "elsewhere.org")


@dataclass(frozen=True)
class World:
    person: int
    role: int
    domain: int
    other: int
    mailboxes: dict[str, int]  # address → id
    forwards: tuple[int, ...]
    aliases: tuple[int, ...]
    catch_alls: tuple[int, ...]


def build(db: Database, now: datetime) -> World:
    """acme.example with mailboxes, forwards, aliases and a catch-all; other.example suspended."""
    expires = now + timedelta(days=30)
    with db.session() as s:
        org = create_organization(s, actor=ACTOR, now=now, name="agency")
        person = create_person(s, actor=ACTOR, now=now, organization=org, name="Alice Owner",
                               contact_email="alice@owner.example")  # fmt: skip
        role = create_role(s, actor=ACTOR, now=now, organization=org, name="support",
                           members=[person])  # fmt: skip
        client = create_client(s, actor=ACTOR, now=now, organization=org, name="acme")
        acme = create_domain(s, actor=ACTOR, now=now, client=client, name="acme.example")
        other = create_domain(s, actor=ACTOR, now=now, client=client, name="other.example")
        set_domain_policy(s, actor=ACTOR, now=now, domain=acme, external_forwarding=True)
        owner = Owner(person_id=person.id)
        boxes = {}
        for address, state in [
            ("alice@acme.example", MailboxState.ACTIVE),
            ("bob@acme.example", MailboxState.ACTIVE),
            ("carol@acme.example", MailboxState.ACTIVE),
            ("erin@acme.example", MailboxState.INVITED),
            ("dave@other.example", MailboxState.ACTIVE),
        ]:
            local, domain = address.split("@")
            boxes[address] = create_mailbox(
                s, actor=ACTOR, now=now, domain=acme if domain == "acme.example" else other,
                local_part=local, owner=owner, state=state,
            )  # fmt: skip
        alice = boxes["alice@acme.example"]
        forwards = (
            add_forward(s, actor=ACTOR, now=now, mailbox=alice, target="Someone@Elsewhere.org",
                        owner=Owner(role_id=role.id), purpose=PURPOSE, expires_at=expires,
                        keep_copy=False),
            add_forward(s, actor=ACTOR, now=now, mailbox=alice, target="bob@acme.example",
                        owner=owner, purpose=PURPOSE, expires_at=expires),
        )  # fmt: skip
        aliases = tuple(
            add_alias(s, actor=ACTOR, now=now, domain=acme, local_part="sales", target=target,
                      owner=owner, purpose=PURPOSE,
                      expires_at=expires if "elsewhere" in target else None)
            for target in ("bob@acme.example", "carol@acme.example", "ghost@acme.example",
                           "dave@other.example", "partner@elsewhere.org")
        )  # fmt: skip
        catch_alls = tuple(
            set_catch_all(s, actor=ACTOR, now=now, domain=acme, target=target, owner=owner,
                          purpose=PURPOSE, expires_at=expires)
            for target in ("alice@acme.example", "bob@acme.example")
        )  # fmt: skip
        set_mailbox_state(s, actor=ACTOR, now=now, mailbox=boxes["carol@acme.example"],
                          state="suspended", reason="left the company")  # fmt: skip
        set_domain_state(s, actor=ACTOR, now=now, domain=other, state="suspended",
                         reason="unpaid")  # fmt: skip
        return World(
            person=person.id, role=role.id, domain=acme.id, other=other.id,
            mailboxes={a: m.id for a, m in boxes.items()},
            forwards=tuple(r.id for r in forwards), aliases=tuple(r.id for r in aliases),
            catch_alls=tuple(r.id for r in catch_alls),
        )  # fmt: skip


def facts_for(db: Database, address: str) -> RecipientFacts:
    with db.session() as s:
        return recipient_facts(s, Address.parse(address))


def mailbox(world: World, address: str, state: MailboxState = MailboxState.ACTIVE) -> MailboxFacts:
    return MailboxFacts(world.mailboxes[address], Address.parse(address), state)


def test_mailbox_with_forwards(db: Database, now: datetime) -> None:
    """Ensure a mailbox's facts carry its domain, state and forwarding rules in order."""
    world = build(db, now)
    facts = facts_for(db, "Alice@ACME.example")
    assert facts.recipient == Address("alice", "acme.example")
    assert facts.domain == DomainFacts(world.domain, "acme.example", DomainState.ACTIVE,
                                       external_forwarding=True, max_rule_days=90)  # fmt: skip
    assert facts.mailbox == mailbox(world, "alice@acme.example")
    assert [(r.kind, r.id, r.target, r.keep_copy) for r in facts.forwards] == [
        (RuleKind.FORWARD, world.forwards[0], OUTSIDE, False),
        (RuleKind.FORWARD, world.forwards[1], Address("bob", "acme.example"), True),
    ]
    first = facts.forwards[0]
    assert first.owner == f"role:{world.role}"
    assert facts.forwards[1].owner == f"person:{world.person}"
    assert first.purpose == PURPOSE
    assert first.created_at == now
    assert first.expires_at == now + timedelta(days=30)
    assert first.created_at.tzinfo is UTC and first.expires_at.tzinfo is UTC
    assert first.enabled
    # A mailbox wins: its address's aliases and the domain's catch-all are not consulted.
    assert facts.aliases == () and facts.catch_all is None
    assert facts.internal == {Address("bob", "acme.example"): mailbox(world, "bob@acme.example")}
    assert facts.hosted_domains == frozenset({"acme.example"})

    decision = route(facts, now)
    assert decision.action is RouteAction.DELIVER
    assert decision.mailboxes == (mailbox(world, "bob@acme.example"),)
    assert decision.forwards == (OUTSIDE,)


def test_alias_rows_and_internal_target_states(db: Database, now: datetime) -> None:
    """Ensure alias rows load in order and every hosted target comes with its state."""
    world = build(db, now)
    facts = facts_for(db, "sales@acme.example")
    assert facts.mailbox is None
    assert facts.forwards == () and facts.catch_all is None
    assert [(r.kind, r.id) for r in facts.aliases] == [(RuleKind.ALIAS, i) for i in world.aliases]
    assert [str(r.target) for r in facts.aliases] == [
        "bob@acme.example", "carol@acme.example", "ghost@acme.example", "dave@other.example",
        "partner@elsewhere.org",
    ]  # fmt: skip
    assert [r.expires_at is None for r in facts.aliases] == [True, True, True, True, False]
    assert facts.hosted_domains == frozenset({"acme.example", "other.example"})
    assert facts.internal == {
        Address("bob", "acme.example"): mailbox(world, "bob@acme.example"),
        Address("carol", "acme.example"): mailbox(
            world, "carol@acme.example", MailboxState.SUSPENDED
        ),
        # An active mailbox on a suspended domain is unavailable as a target.
        Address("dave", "other.example"): mailbox(
            world, "dave@other.example", MailboxState.SUSPENDED
        ),
    }

    decision = route(facts, now)
    assert decision.action is RouteAction.DELIVER
    assert decision.mailboxes == (mailbox(world, "bob@acme.example"),)
    assert decision.forwards == (PARTNER,)
    assert [s.reason for s in decision.trace if s.outcome == "skip"] == [
        Reason.TARGET_UNAVAILABLE
    ] * 3


def test_catch_all_uses_the_newest_row(db: Database, now: datetime) -> None:
    """Ensure an unknown address gets the current catch-all, and a disabled one stays traced."""
    world = build(db, now)
    facts = facts_for(db, "nobody@acme.example")
    assert facts.mailbox is None and facts.aliases == () and facts.forwards == ()
    assert facts.catch_all is not None
    assert (facts.catch_all.kind, facts.catch_all.id) == (RuleKind.CATCHALL, world.catch_alls[1])
    assert facts.catch_all.target == Address("bob", "acme.example")
    assert facts.catch_all.enabled
    assert facts.internal == {Address("bob", "acme.example"): mailbox(world, "bob@acme.example")}
    assert route(facts, now).rule_ids == (f"catchall:{world.catch_alls[1]}",)

    with db.session() as s:
        disable_rule(s, actor=ACTOR, now=now, kind="catchall", rule_id=world.catch_alls[1],
                     reason="kill persistence")  # fmt: skip
    facts = facts_for(db, "nobody@acme.example")
    assert facts.catch_all is not None and not facts.catch_all.enabled
    decision = route(facts, now)
    assert decision.action is RouteAction.REJECT
    assert decision.reason is Reason.RULE_DISABLED


def test_unknown_domain_and_unknown_address(db: Database, now: datetime) -> None:
    """Ensure a foreign domain yields no facts and an unknown address only its domain."""
    world = build(db, now)
    foreign = facts_for(db, "alice@elsewhere.org")
    assert foreign == RecipientFacts(recipient=Address("alice", "elsewhere.org"), domain=None,
                                     mailbox=None)  # fmt: skip
    assert route(foreign, now).reason is Reason.RELAY_DENIED

    unknown = facts_for(db, "nobody@other.example")  # other.example has no catch-all
    assert unknown.domain is not None
    assert (unknown.domain.id, unknown.domain.state) == (world.other, DomainState.SUSPENDED)
    assert unknown.mailbox is None
    assert (unknown.forwards, unknown.aliases, unknown.catch_all) == ((), (), None)
    assert unknown.internal == {} and unknown.hosted_domains == frozenset()


def test_mailbox_states_and_lookup(db: Database, now: datetime) -> None:
    """Ensure invited and suspended mailboxes arrive with their state and resolve by address."""
    world = build(db, now)
    invited = facts_for(db, "erin@acme.example").mailbox
    assert invited == mailbox(world, "erin@acme.example", MailboxState.INVITED)
    suspended = facts_for(db, "carol@acme.example")
    assert suspended.mailbox == mailbox(world, "carol@acme.example", MailboxState.SUSPENDED)
    assert route(suspended, now).reason is Reason.MAILBOX_SUSPENDED
    with db.session() as s:
        assert _id(s, "BOB@acme.example") == world.mailboxes["bob@acme.example"]
        assert _id(s, "bob@other.example") is None
        assert _id(s, "nobody@nowhere.example") is None


def _id(session: Session, address: str) -> int | None:
    row = find_mailbox(session, Address.parse(address))
    return None if row is None else row.id


def test_corrupt_alias_target_is_never_applied(db: Database, now: datetime) -> None:
    """Ensure a row whose target no longer parses is dropped instead of routed."""
    world = build(db, now)
    with db.session() as s:
        s.add(Alias(domain_id=world.domain, local_part="broken", target="not an address",
                    external=True, owner_person_id=world.person, purpose=PURPOSE,
                    created_by="test", created_at=now, expires_at=None, enabled=True))  # fmt: skip
    facts = facts_for(db, "broken@acme.example")
    assert facts.aliases == ()


def test_directory_version_moves_with_every_change_and_survives_dispose(
    db: Database, now: datetime
) -> None:
    """Ensure the per-thread version read sees each committed change at once, from any thread."""
    import threading

    from storage.directory import current_directory_version

    build(db, now)
    before = current_directory_version(db)
    with db.session() as s:
        create_organization(s, actor=ACTOR, now=now, name="another agency")
    after = current_directory_version(db)
    assert after > before
    seen: list[int] = []
    reader = threading.Thread(target=lambda: seen.append(current_directory_version(db)))
    reader.start()
    reader.join()
    assert seen == [after]
    db.dispose()  # the thread's reader connection goes with the pool, and comes back
    assert current_directory_version(db) == after
