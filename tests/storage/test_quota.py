"""Pooled quota: atomic charges at every level, refunds, and no overshoot under load."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

import pytest

from admin.services.directory import (
    Owner,
    create_client,
    create_domain,
    create_mailbox,
    create_organization,
    create_person,
)
from storage import quota
from storage.db import Database, StorageUnavailable
from storage.models import Client, Domain, Mailbox, Organization
from storage.quota import QuotaExceeded

LEVELS = ("mailbox", "domain", "client", "organization")
MODELS = {"mailbox": Mailbox, "domain": Domain, "client": Client, "organization": Organization}


@dataclass(frozen=True)
class Tree:
    organization: int
    client: int
    domain: int
    mailboxes: tuple[int, ...]

    def id(self, level: str) -> int:
        return self.mailboxes[0] if level == "mailbox" else getattr(self, level)


def build(
    db: Database, now: datetime, *, limits: dict[str, int | None] | None = None, mailboxes: int = 1
) -> Tree:
    """An organization → client → domain → mailboxes tree with the given caps."""
    caps = {level: None for level in LEVELS} | (limits or {})
    with db.session() as s:
        org = create_organization(s, actor="test", now=now, name="agency",
                                  quota_bytes=caps["organization"])  # fmt: skip
        owner = create_person(s, actor="test", now=now, organization=org, name="Alice Owner",
                              contact_email="alice@owner.example")  # fmt: skip
        client = create_client(s, actor="test", now=now, organization=org, name="acme",
                               quota_bytes=caps["client"])  # fmt: skip
        domain = create_domain(s, actor="test", now=now, client=client, name="acme.example",
                               quota_bytes=caps["domain"])  # fmt: skip
        boxes = [
            create_mailbox(s, actor="test", now=now, domain=domain, local_part=f"user{i}",
                           owner=Owner(person_id=owner.id), quota_bytes=caps["mailbox"])
            for i in range(mailboxes)
        ]  # fmt: skip
        return Tree(org.id, client.id, domain.id, tuple(m.id for m in boxes))


def used(db: Database, tree: Tree) -> dict[str, int]:
    with db.session() as s:
        return {level: s.get(MODELS[level], tree.id(level)).used_bytes for level in LEVELS}  # type: ignore[union-attr]


def used_by_mailbox(db: Database, tree: Tree) -> list[int]:
    with db.session() as s:
        return [s.get(Mailbox, m).used_bytes for m in tree.mailboxes]  # type: ignore[union-attr]


def set_limit(db: Database, tree: Tree, level: str, limit: int | None) -> None:
    with db.session() as s:
        s.get(MODELS[level], tree.id(level)).quota_bytes = limit  # type: ignore[union-attr]


def charge(db: Database, sizes: dict[int, int]) -> None:
    with db.session() as s:
        quota.charge(s, sizes)


def test_charge_within_limits_updates_every_level(db: Database, now: datetime) -> None:
    """Ensure a charge that fits is added to the mailbox, domain, client and organization."""
    tree = build(db, now, limits={"organization": 10_000, "client": 8_000, "domain": 6_000,
                                  "mailbox": 4_000})  # fmt: skip
    charge(db, {})  # charging nothing touches nothing
    assert used(db, tree) == dict.fromkeys(LEVELS, 0)
    charge(db, {tree.mailboxes[0]: 1_500})
    charge(db, {tree.mailboxes[0]: 500})
    assert used(db, tree) == dict.fromkeys(LEVELS, 2_000)


def test_charge_on_uncapped_levels_always_fits(db: Database, now: datetime) -> None:
    """Ensure a level without a limit never refuses."""
    tree = build(db, now)
    charge(db, {tree.mailboxes[0]: 10**12})
    assert used(db, tree) == dict.fromkeys(LEVELS, 10**12)


def test_charge_over_any_level_is_refused_and_changes_nothing(db: Database, now: datetime) -> None:
    """Ensure a charge over any one level's limit raises and, rolled back, changes nothing."""
    tree = build(db, now)
    charge(db, {tree.mailboxes[0]: 4_000})
    for level in LEVELS:
        set_limit(db, tree, level, 5_000)
        with pytest.raises(QuotaExceeded) as caught:
            charge(db, {tree.mailboxes[0]: 1_001})
        assert (caught.value.scope, caught.value.name) == (level, str(tree.id(level)))
        assert used(db, tree) == dict.fromkeys(LEVELS, 4_000), level
        # The limit is inclusive: filling the level to the byte fits.
        charge(db, {tree.mailboxes[0]: 1_000})
        charge(db, {tree.mailboxes[0]: -1_000})
        set_limit(db, tree, level, None)
    # A full pool is a quota answer (452), never a storage fault (451).
    assert not issubclass(QuotaExceeded, StorageUnavailable)


def test_several_mailboxes_are_charged_together(db: Database, now: datetime) -> None:
    """Ensure one charge over two mailboxes sums at shared levels and fails as a whole."""
    tree = build(db, now, limits={"domain": 1_200, "mailbox": 800}, mailboxes=2)
    first, second = tree.mailboxes
    charge(db, {first: 300, second: 700})
    assert used_by_mailbox(db, tree) == [300, 700]
    assert used(db, tree) | {"mailbox": 0} == {"mailbox": 0, "domain": 1_000, "client": 1_000,
                                               "organization": 1_000}  # fmt: skip
    # Each mailbox still fits its own cap, but together they overflow the domain.
    with pytest.raises(QuotaExceeded) as caught:
        charge(db, {first: 150, second: 80})
    assert caught.value.scope == "domain"
    assert used_by_mailbox(db, tree) == [300, 700]


def test_refunds_lower_every_level(db: Database, now: datetime) -> None:
    """Ensure a negative charge (expunge) gives space back everywhere, even over a lower cap."""
    tree = build(db, now, limits={"organization": 5_000})
    charge(db, {tree.mailboxes[0]: 3_000})
    charge(db, {tree.mailboxes[0]: -1_000})
    assert used(db, tree) == dict.fromkeys(LEVELS, 2_000)
    charge(db, {tree.mailboxes[0]: 3_000})  # the refunded space is usable again
    assert used(db, tree) == dict.fromkeys(LEVELS, 5_000)
    set_limit(db, tree, "mailbox", 1_000)  # usage is now above the mailbox cap
    charge(db, {tree.mailboxes[0]: -2_000})  # freeing space is never refused
    assert used(db, tree) == dict.fromkeys(LEVELS, 3_000)


def test_snapshot_reports_each_level(db: Database, now: datetime) -> None:
    """Ensure the quota snapshot names every level with its usage and limit."""
    tree = build(db, now, limits={"organization": 10_000, "mailbox": 2_000})
    charge(db, {tree.mailboxes[0]: 1_500})
    with db.session() as s:
        snap = quota.snapshot(s, tree.mailboxes[0])
    assert [(lvl.scope, lvl.name, lvl.used, lvl.limit) for lvl in snap.levels] == [
        ("mailbox", "user0", 1_500, 2_000),
        ("domain", "acme.example", 1_500, None),
        ("client", "acme", 1_500, None),
        ("organization", "agency", 1_500, 10_000),
    ]
    assert snap.fits(500) and not snap.fits(501)
    limiting = snap.limiting()
    assert limiting is not None and limiting.scope == "mailbox"


def test_concurrent_charges_never_overshoot_the_pool(db: Database, now: datetime) -> None:
    """Ensure 20 threads racing for a 150,000-byte pool get exactly 150 charges of 1,000."""
    tree = build(db, now, limits={"organization": 150_000})
    mailbox = tree.mailboxes[0]
    start = threading.Barrier(20)
    lock = threading.Lock()
    outcomes: list[str] = []

    def worker() -> None:
        start.wait()
        for _ in range(10):
            try:
                charge(db, {mailbox: 1_000})
                outcome = "ok"
            except QuotaExceeded:
                outcome = "full"
            except Exception as exc:  # anything else is a bug the test must show
                outcome = repr(exc)
            with lock:
                outcomes.append(outcome)

    with ThreadPoolExecutor(max_workers=20) as pool:
        for future in [pool.submit(worker) for _ in range(20)]:
            future.result(timeout=60)
    assert sorted(set(outcomes)) == ["full", "ok"]
    assert outcomes.count("ok") == 150
    assert outcomes.count("full") == 50
    assert used(db, tree) == dict.fromkeys(LEVELS, 150_000)


def test_ledger_charge_refused_at_any_level_gives_back_the_others_without_a_savepoint(
    db: Database, now: datetime
) -> None:
    """Ensure a group-commit unit whose charge one level refuses leaves every level as it was
    (it runs without a savepoint), while the other units of the batch commit."""
    from functools import partial

    from storage.committer import GroupCommitter

    tree = build(db, now, mailboxes=3)
    first, second, third = tree.mailboxes
    committer = GroupCommitter(db)
    try:
        for level in LEVELS:
            set_limit(db, tree, level, 10_000)
            before = used(db, tree)
            over = 10_001 - before[level]  # one byte too many at this level only
            units = [committer.submit(partial(quota.charge_tx, sizes=sizes), isolated=False)
                     for sizes in ({second: 10}, {first: over}, {third: 20})]  # fmt: skip
            with pytest.raises(QuotaExceeded) as caught:
                units[1].result()
            assert caught.value.scope == level
            units[0].result()
            units[2].result()
            after = used(db, tree)
            expected = {lvl: before[lvl] + 30 for lvl in LEVELS}
            expected["mailbox"] = before["mailbox"]  # the first mailbox was not charged
            assert after == expected, level
            set_limit(db, tree, level, None)
    finally:
        committer.close()
