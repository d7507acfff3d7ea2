"""Cheap syncs: the store re-reads only what changed, and never misses what did."""

from __future__ import annotations

import os
from pathlib import Path

from storage.db import Database
from storage.mailindex import MailStore
from storage.mailindex_state import (
    MTIME_TRUST_NS,
    MessageInfo,
    Snapshot,
    check_disk,
    trusted,
)
from tests.storage.test_mailindex import MSG, _deliver, _setup


def _cur(tmp_path: Path) -> Path:
    return tmp_path / "mail" / "acme.test" / "alice" / "cur"


def test_unchanged_folder_is_not_read_again(db: Database, now, tmp_path) -> None:
    """Ensure a second sync of an unchanged folder returns the remembered messages."""
    store, box = _setup(db, now, tmp_path)
    for _ in range(3):
        _deliver(tmp_path)
    first = store.sync(box, "INBOX")
    again = store.sync(box, "INBOX")
    assert again.messages is first.messages and again.recent == frozenset()


def test_changes_by_another_process_are_seen(db: Database, now, tmp_path) -> None:
    """Ensure flags, appends and expunges made through another store show up."""
    mine, box = _setup(db, now, tmp_path)
    other = MailStore(db, tmp_path / "mail")  # another server process on the same data
    for _ in range(3):
        _deliver(tmp_path)
    folder = mine.sync(box, "INBOX").folder.id
    other.store_flags(folder, [2], "+", ["\\Flagged", "$Todo"])
    state = mine.sync(box, "INBOX")
    assert state.messages[1].flags == {"\\Flagged", "$Todo"}
    assert state.messages[1].path.name.endswith(":2,F") and state.messages[1].path.exists()
    other.append(box, "INBOX", MSG, ["\\Seen"], None)
    other.store_flags(folder, [1], "+", ["\\Deleted"])
    assert other.expunge(folder) == [1]
    state = mine.sync(box, "INBOX")
    assert [m.uid for m in state.messages] == [2, 3, 4]
    assert state.folder.highest_modseq == other.sync(box, "INBOX").folder.highest_modseq
    assert all(m.path.exists() for m in state.messages)


def test_delivery_to_a_remembered_folder(db: Database, now, tmp_path) -> None:
    """Ensure a delivery after the folder was remembered gets the next UID and \\Recent."""
    store, box = _setup(db, now, tmp_path)
    _deliver(tmp_path)
    store.sync(box, "INBOX")
    store.store_flags(store.sync(box, "INBOX").folder.id, [1], "+", ["\\Seen"])
    _deliver(tmp_path)
    state = store.sync(box, "INBOX")
    assert [m.uid for m in state.messages] == [1, 2] and state.recent == {2}
    assert state.messages[0].flags == {"\\Seen"}
    assert all(m.path.parent.name == "cur" and m.path.exists() for m in state.messages)


def test_files_removed_or_added_by_other_tools(db: Database, now, tmp_path) -> None:
    """Ensure a file deleted from cur/ is dropped and one copied into cur/ is indexed."""
    store, box = _setup(db, now, tmp_path)
    _deliver(tmp_path)
    _deliver(tmp_path)
    first, _second = store.sync(box, "INBOX").messages
    first.path.unlink()
    (_cur(tmp_path) / "1700000000.M9P9.other:2,S").write_bytes(b"Subject: x\n\nfrom elsewhere\n")
    state = store.sync(box, "INBOX")
    assert [m.uid for m in state.messages] == [2, 3]
    assert state.messages[1].flags == {"\\Seen"}


def test_store_finds_a_file_renamed_behind_its_back(db: Database, now, tmp_path) -> None:
    """Ensure STORE renames the file under its current name, not the remembered one."""
    store, box = _setup(db, now, tmp_path)
    _deliver(tmp_path)
    [msg] = store.sync(box, "INBOX").messages
    os.rename(msg.path, msg.path.with_name(msg.base_name + ":2,F"))  # another Maildir tool
    folder = store.sync(box, "INBOX").folder.id
    store.store_flags(folder, [1], "+", ["\\Answered"])
    assert [p.name for p in _cur(tmp_path).iterdir()] == [msg.base_name + ":2,FR"]
    [after] = store.sync(box, "INBOX").messages
    assert after.flags == {"\\Flagged", "\\Answered"} and after.path.exists()


def test_renames_in_the_same_clock_tick_are_not_missed(db: Database, now, tmp_path) -> None:
    """Ensure a listing is not trusted while cur/'s mtime is too recent to tell changes apart."""
    assert trusted(10, 10 + MTIME_TRUST_NS - 1) is None
    assert trusted(10, 10 + MTIME_TRUST_NS) == 10
    store, box = _setup(db, now, tmp_path)
    _deliver(tmp_path)
    [msg] = store.sync(box, "INBOX").messages
    store.sync(box, "INBOX")
    os.rename(msg.path, msg.path.with_name(msg.base_name + ":2,S"))
    assert store.sync(box, "INBOX").messages[0].flags == {"\\Seen"}


def _snapshot(names: dict[int, str]) -> Snapshot:
    cur = Path("/m/cur")
    messages = tuple(MessageInfo(uid, frozenset(), 1, 1, 1, None, cur, name)  # type: ignore[arg-type]
                     for uid, name in names.items())  # fmt: skip
    return Snapshot(1, 1, 1, Path("/m"), messages, frozenset(names.values()))


def test_check_disk_tells_own_renames_from_foreign_changes() -> None:
    """Ensure only names that disagree with the index send the caller to reconcile."""
    snap = _snapshot({1: "a:2,", 2: "b:2,"})
    same = check_disk(snap, [], frozenset({"a:2,", "b:2,"}))
    assert same is not None and same.messages == snap.messages
    assert check_disk(snap, ["c"], frozenset({"a:2,", "b:2,"})) is None  # a delivery
    assert check_disk(snap, [], frozenset({"a:2,S", "b:2,"})) is None  # flags changed elsewhere
    assert check_disk(snap, [], frozenset({"a:2,"})) is None  # b deleted elsewhere
    assert check_disk(snap, [], frozenset({"a:2,", "b:2,", "c:2,"})) is None  # c copied in
    foreign = check_disk(snap, [], frozenset({"a:2,a", "b:2,"}))  # an info letter we ignore
    assert foreign is not None and foreign.messages[0].filename == "a:2,a"


def test_cached_state_only_while_nothing_unseen_changed(db: Database, now, tmp_path) -> None:
    """Ensure the in-memory state is offered only when fresh and untouched by other writes."""
    store, box = _setup(db, now, tmp_path)
    _deliver(tmp_path)
    _deliver(tmp_path)
    folder = store.sync(box, "INBOX").folder.id
    assert store.cached_state(folder, max_age=60) is not None
    assert store.cached_state(folder, max_age=0) is None  # too old: the caller must sync
    store.store_flags(folder, [2], "+", ["\\Seen"])  # applied to the memory as well
    state = store.cached_state(folder, max_age=60)
    assert state is not None and state.messages[1].flags == {"\\Seen"}
    assert state.folder.highest_modseq == store.sync(box, "INBOX").folder.highest_modseq
    store.append(box, "INBOX", MSG, [], None)  # not applied to the memory: sync needed
    assert store.cached_state(folder, max_age=60) is None
    assert len(store.sync(box, "INBOX").messages) == 3
    assert store.cached_state(folder, max_age=60) is not None
