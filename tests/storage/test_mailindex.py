"""The IMAP message store: UIDs, flags in file names, quota, folders, on both backends."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from admin.services import directory as d
from storage import maildir
from storage.db import Database
from storage.mailindex import FolderExists, MailStore
from storage.models import Mailbox, Organization
from storage.quota import QuotaExceeded

MSG = b"Subject: hi\r\n\r\nhello\r\n"


def _setup(db: Database, now, tmp_path: Path, pool: int | None = None) -> tuple[MailStore, int]:
    with db.session() as s:
        org = d.create_organization(s, actor="t", now=now, name="Org", quota_bytes=pool)
        client = d.create_client(s, actor="t", now=now, organization=org, name="C")
        dom = d.create_domain(s, actor="t", now=now, client=client, name="acme.test")
        p = d.create_person(s, actor="t", now=now, organization=org, name="P",
                            contact_email="p@example.org")  # fmt: skip
        box = d.create_mailbox(s, actor="t", now=now, domain=dom, local_part="alice",
                               owner=d.Owner(person_id=p.id))  # fmt: skip
        box_id = box.id
    store = MailStore(db, tmp_path / "mail")
    store.ensure_defaults(box_id)
    return store, box_id


def _deliver(tmp_path: Path, data: bytes = MSG) -> None:
    box = maildir.Maildir(tmp_path / "mail" / "acme.test" / "alice")
    maildir.commit([box.stage(data.replace(b"\r\n", b"\n"))])


def test_defaults_and_sync_assign_ascending_uids(db, now, tmp_path) -> None:
    """Ensure delivered files get UIDs 1..n, are \\Recent once, and move new/ → cur/."""
    store, box = _setup(db, now, tmp_path)
    names = [f.name for f in store.list_folders(box)]
    assert set(names) == {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"}
    for _ in range(3):
        _deliver(tmp_path)
    state = store.sync(box, "INBOX")
    assert [m.uid for m in state.messages] == [1, 2, 3]
    assert state.recent == {1, 2, 3}
    assert all(m.path.parent.name == "cur" for m in state.messages)
    assert state.messages[0].rfc822_size == len(MSG)
    again = store.sync(box, "INBOX")
    assert again.recent == frozenset() and again.folder.uid_next == 4


def test_flags_written_to_file_names_and_read_back(db, now, tmp_path) -> None:
    """Ensure STORE renames files with :2,FLAGS and external renames are picked up."""
    store, box = _setup(db, now, tmp_path)
    _deliver(tmp_path)
    state = store.sync(box, "INBOX")
    updated, failed = store.store_flags(state.folder.id, [1], "+", ["\\Seen", "$Label1"])
    assert failed == [] and updated[0][1] == {"\\Seen", "$Label1"}
    [path] = store.state(state.folder.id).messages[0:1]
    assert path.path.name.endswith(":2,S")
    path.path.rename(path.path.with_name(path.path.name.split(":2,")[0] + ":2,FS"))
    after = store.sync(box, "INBOX").messages[0]
    assert after.flags == {"\\Seen", "\\Flagged", "$Label1"}
    assert after.modseq > updated[0][2]


def test_unchangedsince_refuses_newer_messages(db, now, tmp_path) -> None:
    """Ensure STORE UNCHANGEDSINCE fails for messages modified after that modseq."""
    store, box = _setup(db, now, tmp_path)
    _deliver(tmp_path)
    state = store.sync(box, "INBOX")
    modseq = state.messages[0].modseq
    store.store_flags(state.folder.id, [1], "+", ["\\Flagged"])
    _, failed = store.store_flags(state.folder.id, [1], "+", ["\\Seen"], unchanged_since=modseq)
    assert failed == [1]


def test_append_charges_quota_and_refuses_over_quota(db, now, tmp_path) -> None:
    """Ensure APPEND charges the pool and an APPEND over quota stores nothing."""
    store, box = _setup(db, now, tmp_path, pool=100)
    validity, uid = store.append(box, "Sent", MSG, ["\\Seen"], None)
    assert uid == 1 and validity > 0
    with db.session() as s:
        assert s.get(Mailbox, box).used_bytes == len(MSG.replace(b"\r\n", b"\n"))
    with pytest.raises(QuotaExceeded):
        store.append(box, "Sent", MSG * 20, [], None)
    state = store.sync(box, "Sent")
    assert [m.uid for m in state.messages] == [1]
    assert list((tmp_path / "mail/acme.test/alice/.Sent/tmp").iterdir()) == []


def test_copy_move_expunge_account_quota(db, now, tmp_path) -> None:
    """Ensure COPY charges, MOVE keeps usage, EXPUNGE refunds, UIDs map correctly."""
    store, box = _setup(db, now, tmp_path)
    _deliver(tmp_path)
    _deliver(tmp_path)
    inbox = store.sync(box, "INBOX")
    one = inbox.messages[0].size

    def used() -> int:
        with db.session() as s:
            return s.get(Organization, 1).used_bytes if s.get(Organization, 1) else -1

    base = used()
    _, pairs = store.copy(inbox.folder.id, [1, 2], box, "Archive")
    assert pairs == [(1, 1), (2, 2)] and used() == base + 2 * one
    _, moved = store.move(inbox.folder.id, [2], box, "Trash")
    assert moved == [(2, 1)] and used() == base + 2 * one
    assert [m.uid for m in store.sync(box, "INBOX").messages] == [1]
    store.store_flags(inbox.folder.id, [1], "+", ["\\Deleted"])
    assert store.expunge(inbox.folder.id) == [1]
    assert used() == base + one


def test_folder_lifecycle(db, now, tmp_path) -> None:
    """Ensure create, rename with children, INBOX rename and delete behave per RFC 3501."""
    store, box = _setup(db, now, tmp_path)
    store.create_folder(box, "Projects")
    store.create_folder(box, "Projects.2026")
    with pytest.raises(FolderExists):
        store.create_folder(box, "Projects")
    store.rename_folder(box, "Projects", "Work")
    names = {f.name for f in store.list_folders(box)}
    assert {"Work", "Work.2026"} <= names and "Projects" not in names
    assert (tmp_path / "mail/acme.test/alice/.Work.2026/cur").is_dir()
    _deliver(tmp_path)
    store.sync(box, "INBOX")
    store.rename_folder(box, "INBOX", "Old")
    assert store.sync(box, "INBOX").messages == ()
    assert len(store.sync(box, "Old").messages) == 1
    store.delete_folder(box, "Work.2026")
    assert not (tmp_path / "mail/acme.test/alice/.Work.2026").exists()


def test_foreign_maildir_files_are_picked_up(db, now, tmp_path) -> None:
    """Ensure a message copied in from another server, with flags, gets indexed."""
    store, box = _setup(db, now, tmp_path)
    cur = tmp_path / "mail/acme.test/alice/cur"
    (cur / "1700000000.M1P1.other:2,RS").write_bytes(b"Subject: old\n\nfrom dovecot\n")
    [msg] = store.sync(box, "INBOX").messages
    assert msg.flags == {"\\Answered", "\\Seen"}
    assert msg.rfc822_size == len(b"Subject: old\r\n\r\nfrom dovecot\r\n")


def test_racing_appends_and_deliveries_keep_uids_unique(db, now, tmp_path) -> None:
    """Ensure concurrent APPENDs and delivery syncs never reuse or reorder UIDs."""
    store, box = _setup(db, now, tmp_path)

    def work(i: int) -> None:
        if i % 2:
            store.append(box, "INBOX", MSG, [], None)
        else:
            _deliver(tmp_path)
            store.sync(box, "INBOX")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(40)))
    state = store.sync(box, "INBOX")
    uids = [m.uid for m in state.messages]
    assert uids == list(range(1, 41))
    assert state.folder.uid_next == 41


def test_reindex_adopts_copied_folders_and_recounts_usage(db, now, tmp_path) -> None:
    """Ensure reindex picks up a Maildir++ folder copied in and sets usage to what is on disk."""
    store, box = _setup(db, now, tmp_path)
    _deliver(tmp_path)  # on disk, never charged (as if copied in by hand)
    imported = tmp_path / "mail/acme.test/alice/.Imported &AOk-t&AOk-"
    for sub in ("cur", "new", "tmp"):
        (imported / sub).mkdir(parents=True)
    (imported / "cur" / "1700000000.M2P2.other:2,S").write_bytes(b"Subject: x\n\nbody\n")
    counts = store.reindex(box)
    assert counts["INBOX"] == 1 and counts["Imported été"] == 1
    folder = store.get_folder(box, "Imported été")
    assert folder is not None and folder.uid_next == 2
    on_disk = sum(m.size for f in ("INBOX", "Imported été") for m in store.sync(box, f).messages)
    with db.session() as s:
        assert s.get(Mailbox, box).used_bytes == on_disk
        assert s.get(Organization, 1).used_bytes == on_disk


def test_folder_names_round_trip_mutf7() -> None:
    """Ensure folder directory names round-trip through modified UTF-7 (RFC 3501 §5.1.3)."""
    from storage.folder_names import decode_mutf7, directory_name, encode_mutf7, folder_name

    for name in ("Sent", "Été & co", "日本語", "a&b", "Archive.2024"):
        assert decode_mutf7(encode_mutf7(name)) == name
        assert folder_name(directory_name(name)) == name
    assert encode_mutf7("Été") == "&AMk-t&AOk-"
    assert folder_name(".&Jjo") is None
