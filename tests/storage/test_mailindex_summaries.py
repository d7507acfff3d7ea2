"""Summaries kept beside the index rows: made when indexed, copied, dropped; both backends."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import delete, func, select

from storage import mailindex
from storage.db import Database
from storage.mailindex import MailStore
from storage.models import MailSummary
from tests.storage.test_mailindex import MSG, _deliver, _setup


def summarize(data: bytes) -> bytes:
    """A stand-in for IMAP's summaries: opaque bytes derived from the stored octets."""
    return b"summary of " + data


def _store(db: Database, tmp_path: Path) -> MailStore:
    return MailStore(db, tmp_path / "mail", summarize)


def _count(db: Database) -> int:
    with db.reader() as s:
        return s.scalar(select(func.count()).select_from(MailSummary))


def test_append_copy_move_keep_summaries_and_expunge_drops_them(db, now, tmp_path) -> None:
    """Ensure APPEND stores the summary given, COPY and MOVE carry it, EXPUNGE removes it."""
    _, box = _setup(db, now, tmp_path)
    store = _store(db, tmp_path)
    stored = store.append_message(box, "INBOX", MSG, [], None, b"given")
    inbox = store.sync(box, "INBOX").folder
    assert store.summaries(inbox.id, [stored.uid, 99]) == {stored.uid: b"given"}
    _, copied = store.copy(inbox.id, [stored.uid], box, "Archive")
    _, moved = store.move(inbox.id, [stored.uid], box, "Trash")
    for name, pairs in (("Archive", copied), ("Trash", moved)):
        folder = store.sync(box, name).folder
        assert store.summaries(folder.id, [pairs[0][1]]) == {pairs[0][1]: b"given"}
    assert store.summaries(inbox.id, [stored.uid]) == {}  # moved away: expunged here
    assert _count(db) == 2
    store.delete_folder(box, "Trash")
    assert _count(db) == 1


def test_deliveries_are_summarized_when_indexed(db, now, tmp_path, monkeypatch) -> None:
    """Ensure files found in new/ are indexed with their summary, large ones left for later."""
    _, box = _setup(db, now, tmp_path)
    store = _store(db, tmp_path)
    store.sync(box, "INBOX")  # the folder's path is known from here on
    monkeypatch.setattr(mailindex, "MAX_INDEX_SUMMARY", 100)
    _deliver(tmp_path)
    _deliver(tmp_path, MSG + b"x" * 200)
    state = store.sync(box, "INBOX")
    assert store.summaries(state.folder.id, [1, 2]) == {1: summarize(MSG.replace(b"\r\n", b"\n"))}


def test_saving_replaces_and_skips_messages_gone(db, now, tmp_path) -> None:
    """Ensure a summary made later replaces an older one, and one for an expunged UID is dropped."""
    _, box = _setup(db, now, tmp_path)
    store = _store(db, tmp_path)
    stored = store.append_message(box, "INBOX", MSG, [], None, b"old format")
    folder = store.sync(box, "INBOX").folder
    store.save_summaries(folder.id, {stored.uid: b"new format", 99: b"never indexed"})
    assert store.summaries(folder.id, [stored.uid, 99]) == {stored.uid: b"new format"}
    assert _count(db) == 1


def test_reindex_fills_in_missing_summaries(db, now, tmp_path) -> None:
    """Ensure reindex summarizes messages indexed without one (before summaries were kept)."""
    plain, box = _setup(db, now, tmp_path)  # a store without a summarizer, as before
    for _ in range(3):
        _deliver(tmp_path)
    folder = plain.sync(box, "INBOX").folder
    plain.append_message(box, "INBOX", MSG, [], None, b"appended")
    with db.session() as s:
        s.execute(delete(MailSummary).where(MailSummary.uid == 2))
    assert set(plain.summaries(folder.id, [1, 2, 3, 4])) == {4}
    store = _store(db, tmp_path)
    assert store.reindex(box)["INBOX"] == 4
    found = store.summaries(folder.id, [1, 2, 3, 4])
    assert found[4] == b"appended"
    assert {found[uid] for uid in (1, 2, 3)} == {summarize(MSG.replace(b"\r\n", b"\n"))}


@pytest.mark.parametrize("many", [3, mailindex.MAX_IN_LIST + 5])
def test_reading_summaries_in_chunks(db, now, tmp_path, many: int) -> None:
    """Ensure long UID lists are read in several queries and all found."""
    _, box = _setup(db, now, tmp_path)
    store = _store(db, tmp_path)
    folder = store.sync(box, "INBOX").folder
    with db.session() as s:  # index rows without files: enough to key summaries on
        s.connection().execute(mailindex._INSERT, [
            {"folder_id": folder.id, "uid": uid, "base_name": f"b{uid}", "flags": "",
             "modseq": 1, "size": 1, "rfc822_size": 1, "internal_date": now}
            for uid in range(1, many + 1)])  # fmt: skip
    store.save_summaries(folder.id, {uid: b"%d" % uid for uid in range(1, many + 1)})
    found = store.summaries(folder.id, list(range(1, many + 1)))
    assert found == {uid: b"%d" % uid for uid in range(1, many + 1)}
