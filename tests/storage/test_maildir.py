"""Maildir++ delivery: stage in tmp/, commit into new/ exactly once, or discard."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storage import maildir as maildir_module
from storage.maildir import Maildir, commit, discard, mailbox_path, sync_directories

MESSAGE = b"From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n"


@pytest.fixture
def maildir(tmp_path: Path) -> Maildir:
    return Maildir(tmp_path / "example.com" / "alice")


def info(path: Path) -> dict[str, str]:
    """The Maildir++ ``,KEY=value`` fields of a file name (S= size, W= CRLF size)."""
    return dict(field.split("=", 1) for field in path.name.split(":2,")[0].split(",")[1:])


def files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file()) if directory.exists() else []


def test_stage_writes_to_tmp_only(maildir: Maildir) -> None:
    """Ensure a staged message is complete in tmp/ and invisible to readers."""
    staged = maildir.stage(MESSAGE)
    assert staged.size == len(MESSAGE)
    assert staged.tmp_path.parent == maildir.path / "tmp"
    assert staged.tmp_path.read_bytes() == MESSAGE
    assert info(staged.tmp_path)["S"] == str(len(MESSAGE))
    assert staged.new_path == maildir.path / "new" / staged.tmp_path.name
    assert not staged.new_path.exists()
    assert maildir.messages() == []
    assert {p.name for p in maildir.path.iterdir()} == {"cur", "new", "tmp"}


def test_file_name_carries_crlf_size(maildir: Maildir) -> None:
    """Ensure W= counts bare LF line ends as CRLF, as IMAP reports RFC822.SIZE."""
    staged = maildir.stage(b"a\nb\r\nc\n")
    assert info(staged.tmp_path) == {"S": "7", "W": "9"}


def test_staged_file_is_private(maildir: Maildir) -> None:
    """Ensure message files are readable by the owner only."""
    staged = maildir.stage(MESSAGE)
    assert staged.tmp_path.stat().st_mode & 0o777 == 0o600


def test_commit_moves_into_new_exactly_once(maildir: Maildir) -> None:
    """Ensure commit lands the message in new/ once, with its size, and empties tmp/."""
    staged = maildir.stage(MESSAGE)
    commit([staged])
    new = files(maildir.path / "new")
    assert new == [staged.new_path]
    assert info(new[0])["S"] == str(len(MESSAGE))
    assert new[0].read_bytes() == MESSAGE
    assert files(maildir.path / "tmp") == []
    assert files(maildir.path / "cur") == []
    assert maildir.messages() == [staged.new_path]


def test_commit_of_several_messages_gives_distinct_files(maildir: Maildir) -> None:
    """Ensure each staged message gets its own unique name and lands once."""
    bodies = [b"one\r\n", b"two two\r\n", b"", MESSAGE]
    staged = [maildir.stage(body) for body in bodies]
    commit(staged)
    new = files(maildir.path / "new")
    assert len(new) == len(bodies)
    assert sorted(p.read_bytes() for p in new) == sorted(bodies)
    assert sorted(int(info(p)["S"]) for p in new) == sorted(len(b) for b in bodies)
    assert len({p.name for p in new}) == len(bodies)
    assert files(maildir.path / "tmp") == []


def test_commit_into_several_mailboxes(tmp_path: Path) -> None:
    """Ensure one commit makes messages visible in every mailbox it covers."""
    alice, bob = Maildir(tmp_path / "alice"), Maildir(tmp_path / "bob")
    commit([alice.stage(MESSAGE), bob.stage(MESSAGE)])
    assert len(alice.messages()) == 1
    assert len(bob.messages()) == 1


def test_discard_removes_staged_message(maildir: Maildir) -> None:
    """Ensure discard deletes the staged file and nothing becomes visible."""
    staged = maildir.stage(MESSAGE)
    discard([staged])
    assert files(maildir.path / "tmp") == []
    assert files(maildir.path / "new") == []
    assert maildir.messages() == []
    discard([staged])  # discarding twice is harmless


def test_commit_after_discard_fails_and_delivers_nothing(maildir: Maildir) -> None:
    """Ensure a discarded message can never be committed afterwards."""
    staged = maildir.stage(MESSAGE)
    discard([staged])
    with pytest.raises(FileNotFoundError):
        commit([staged])
    assert maildir.messages() == []


def test_messages_lists_new_and_cur(maildir: Maildir) -> None:
    """Ensure messages() includes read (cur/) and unread (new/) messages only."""
    staged = maildir.stage(MESSAGE)
    commit([staged])
    seen = maildir.path / "cur" / f"{staged.new_path.name}:2,S"
    os.rename(staged.new_path, seen)
    other = maildir.stage(b"x")
    commit([other])
    maildir.stage(b"pending")
    assert maildir.messages() == sorted([seen, other.new_path])


@pytest.mark.parametrize(
    ("name", "suffix"),
    [("", None), ("INBOX", None), ("inbox", None), ("Sent", ".Sent"),
     ("Archive/2024", ".Archive.2024")],
)  # fmt: skip
def test_folder_paths_follow_maildir_plus_plus(
    maildir: Maildir, name: str, suffix: str | None
) -> None:
    """Ensure INBOX is the maildir itself and sub-folders are dot-named siblings."""
    folder = maildir.folder(name)
    assert folder.path == (maildir.path if suffix is None else maildir.path / suffix)


def test_mailbox_path_for_a_valid_mailbox(tmp_path: Path) -> None:
    """Ensure a mailbox lives at <root>/<domain>/<local>."""
    assert mailbox_path(tmp_path, "example.com", "alice") == tmp_path / "example.com" / "alice"


@pytest.mark.parametrize(
    ("domain", "local_part"),
    [("example.com", "../x"), ("example.com", ".hidden"), ("example.com", "a/b"),
     ("example.com", ".."), ("example.com", ""), ("../etc", "alice"), (".example.com", "alice"),
     ("a/b", "alice"), ("", "alice")],
)  # fmt: skip
def test_mailbox_path_refuses_unsafe_names(tmp_path: Path, domain: str, local_part: str) -> None:
    """Ensure names that escape or alias the mail root are refused."""
    with pytest.raises(ValueError, match="unsafe"):
        mailbox_path(tmp_path, domain, local_part)


def _boxes(root: Path, count: int) -> list[Path]:
    dirs = []
    for i in range(count):
        box = Maildir(root / "acme.test" / f"user{i}")
        box.ensure()
        dirs.append(box.path / "new")
    return dirs


@pytest.mark.skipif(maildir_module._syncfs is None, reason="this C library has no syncfs(2)")
def test_sync_directories_syncs_a_file_system_once_however_many_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dirs = _boxes(tmp_path, 5)
    real, calls = maildir_module._syncfs, []

    def counted(fd: int) -> int:
        calls.append(fd)
        return real(fd)

    monkeypatch.setattr(maildir_module, "_syncfs", counted)
    fsyncs: list[int] = []
    monkeypatch.setattr(os, "fsync", lambda fd: fsyncs.append(fd))
    synced, failed = sync_directories(dirs)
    assert synced == set(dirs) and failed == {}
    assert len(calls) == 1 and fsyncs == []  # one syncfs, no fsync per directory


def test_sync_directories_reports_the_ones_that_are_gone(tmp_path: Path) -> None:
    dirs = _boxes(tmp_path, 3)
    gone = dirs[1]
    gone.rmdir()
    synced, failed = sync_directories(dirs)
    assert synced == {dirs[0], dirs[2]}
    assert set(failed) == {gone} and isinstance(failed[gone], FileNotFoundError)


def test_sync_directories_fsyncs_each_without_syncfs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dirs = _boxes(tmp_path, 3)
    monkeypatch.setattr(maildir_module, "_syncfs", None)  # a C library without it
    real_fsync, fsynced = os.fsync, []

    def counted(fd: int) -> None:
        fsynced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counted)
    synced, failed = sync_directories(dirs)
    assert synced == set(dirs) and failed == {}
    assert sorted(fsynced) == sorted(str(d) for d in dirs)


def test_sync_directories_falls_back_to_fsync_when_syncfs_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ctypes
    import errno

    dirs = _boxes(tmp_path, 2)

    def failing(fd: int) -> int:
        ctypes.set_errno(errno.EIO)
        return -1

    monkeypatch.setattr(maildir_module, "_syncfs", failing)
    real_fsync, fsynced = os.fsync, []

    def counted(fd: int) -> None:
        fsynced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counted)
    synced, failed = sync_directories(dirs)
    assert synced == set(dirs) and failed == {}
    assert len(fsynced) == 2
