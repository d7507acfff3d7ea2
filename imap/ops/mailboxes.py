"""Folder commands: SELECT, EXAMINE, CREATE, DELETE, RENAME, SUBSCRIBE,
UNSUBSCRIBE, LIST, LSUB, STATUS and NAMESPACE.

The hierarchy delimiter is ``.`` (Maildir++, see ``storage.folder_names``).
LIST answers with SPECIAL-USE attributes (RFC 6154) and ``\\HasChildren`` /
``\\HasNoChildren`` (RFC 3348). A level that only exists because something
below it does (``a`` of ``a.b``) is listed as ``\\Noselect`` when a pattern
reaches it (RFC 3501 §6.3.8); CREATE makes the missing superiors instead of
leaving such gaps (§6.3.3), and DELETE refuses a folder that still has
sub-folders, since the store has no ``\\Noselect`` folders to leave behind.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from imap.ops import Completion, Handlers
from imap.ops.selected import SEEN, SelectedFolder, closed_response
from imap.proto import IMAPError
from imap.proto.commands import (
    CreateCommand,
    DeleteCommand,
    ExamineCommand,
    ListCommand,
    LsubCommand,
    NamespaceCommand,
    RenameCommand,
    SelectCommand,
    StatusCommand,
    StatusItem,
    SubscribeCommand,
    UnsubscribeCommand,
)
from imap.proto.responses import ResponseCode, list_response, namespace_response, status_response
from imap.workers import run_blocking, run_index
from storage.folder_names import DELIMITER, validate
from storage.mailindex import FolderExists, FolderInfo, FolderMissing, MailStore

if TYPE_CHECKING:
    from imap.session import Session

INBOX = "INBOX"


async def _select(session: Session, name: str, condstore: bool, read_only: bool) -> Completion:
    if session.selected is not None:
        session.deselect()
        session.send(closed_response())
    if condstore:
        session.enable_condstore()
    try:
        state = await run_index(session.ctx.store.sync, session.mailbox_id, name)
    except FolderMissing:
        raise IMAPError.no("No such folder", ResponseCode.NONEXISTENT) from None
    view = SelectedFolder(session.mailbox_id, state, read_only=read_only)
    session.send(*view.select_responses())
    session.select(view)
    if read_only:
        return Completion("EXAMINE completed", ResponseCode.READ_ONLY)
    return Completion("SELECT completed", ResponseCode.READ_WRITE)


async def select(session: Session, cmd: SelectCommand) -> Completion:
    return await _select(session, cmd.mailbox, cmd.condstore, read_only=False)


async def examine(session: Session, cmd: ExamineCommand) -> Completion:
    return await _select(session, cmd.mailbox, cmd.condstore, read_only=True)


def _superiors(name: str) -> list[str]:
    parts = name.split(DELIMITER)
    return [DELIMITER.join(parts[:i]) for i in range(1, len(parts))]


def _create(store: MailStore, mailbox_id: int, name: str) -> None:
    existing = {f.name for f in store.list_folders(mailbox_id)}
    if name in existing:
        raise FolderExists(name)
    for superior in _superiors(name):
        if superior not in existing:
            with contextlib.suppress(FolderExists):  # created concurrently: fine
                store.create_folder(mailbox_id, superior)
    store.create_folder(mailbox_id, name)


async def create(session: Session, cmd: CreateCommand) -> Completion:
    # RFC 3501 §6.3.3: a trailing delimiter declares intent to create children.
    name = cmd.mailbox.removesuffix(DELIMITER)
    name = validate(name)
    if name == INBOX:
        raise IMAPError.no("INBOX always exists", ResponseCode.ALREADYEXISTS)
    await run_blocking(_create, session.ctx.store, session.mailbox_id, name)
    session.changed()
    return Completion("CREATE completed")


def _delete(store: MailStore, mailbox_id: int, name: str) -> None:
    names = {f.name for f in store.list_folders(mailbox_id)}
    if name not in names:
        raise FolderMissing(name)
    if any(other.startswith(name + DELIMITER) for other in names):
        raise IMAPError.no("Delete the sub-folders first", ResponseCode.INUSE)
    store.delete_folder(mailbox_id, name)


async def delete(session: Session, cmd: DeleteCommand) -> Completion:
    if cmd.mailbox == INBOX:
        raise IMAPError.no("INBOX cannot be deleted", ResponseCode.CANNOT)
    await run_blocking(_delete, session.ctx.store, session.mailbox_id, cmd.mailbox)
    if session.selected is not None and session.selected.name == cmd.mailbox:
        session.deselect()
        session.send(closed_response())
    session.changed()
    return Completion("DELETE completed")


def _rename(store: MailStore, mailbox_id: int, old: str, new: str) -> None:
    existing = {f.name for f in store.list_folders(mailbox_id)}
    if old not in existing:
        raise FolderMissing(old)
    if new in existing:
        raise FolderExists(new)
    for superior in _superiors(new):
        if superior not in existing:
            with contextlib.suppress(FolderExists):
                store.create_folder(mailbox_id, superior)
    store.rename_folder(mailbox_id, old, new)


async def rename(session: Session, cmd: RenameCommand) -> Completion:
    old, new = cmd.source, validate(cmd.destination)
    if new == INBOX:
        raise IMAPError.no("INBOX already exists", ResponseCode.ALREADYEXISTS)
    if new == old or new.startswith(old + DELIMITER):
        raise IMAPError.no("Cannot rename a folder into itself", ResponseCode.CANNOT)
    await run_blocking(_rename, session.ctx.store, session.mailbox_id, old, new)
    view = session.selected
    if view is not None and old != INBOX and (view.name == old or view.name.startswith(old + ".")):
        view.name = new + view.name[len(old) :]  # same folder row, new name
    session.changed()
    return Completion("RENAME completed")


async def subscribe(session: Session, cmd: SubscribeCommand) -> Completion:
    await run_blocking(session.ctx.store.subscribe, session.mailbox_id, cmd.mailbox, True)
    return Completion("SUBSCRIBE completed")


async def unsubscribe(session: Session, cmd: UnsubscribeCommand) -> Completion:
    await run_blocking(session.ctx.store.subscribe, session.mailbox_id, cmd.mailbox, False)
    return Completion("UNSUBSCRIBE completed")


# -- LIST / LSUB --------------------------------------------------------------------


def pattern_matcher(pattern: str) -> re.Pattern[str]:
    """``*`` matches anything, ``%`` anything but the delimiter (RFC 3501 §6.3.8)."""
    out = []
    for char in pattern:
        if char == "*":
            out.append(".*")
        elif char == "%":
            out.append(f"[^{re.escape(DELIMITER)}]*")
        else:
            out.append(re.escape(char))
    return re.compile("".join(out), re.DOTALL)


def _matches(matcher: re.Pattern[str], name: str) -> bool:
    if matcher.fullmatch(name):
        return True
    # INBOX is case-insensitive (RFC 3501 §5.1): "inbox" and "Inbox.%" reach it.
    head, sep, rest = name.partition(DELIMITER)
    if head != INBOX:
        return False
    return any(matcher.fullmatch(spelling + sep + rest) for spelling in ("inbox", "Inbox"))


def _with_superiors(names: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for name in names:
        found.add(name)
        found.update(_superiors(name))
    return found


def _order(names: Iterable[str]) -> list[str]:
    return sorted(names, key=lambda n: (n != INBOX, n.split(DELIMITER)))


def _listing(folders: list[FolderInfo], pattern: str) -> list[bytes]:
    by_name = {f.name: f for f in folders}
    every = _with_superiors(by_name)
    matcher = pattern_matcher(pattern)
    parents = {superior for name in every for superior in _superiors(name)}
    out = []
    for name in _order(every):
        if not _matches(matcher, name):
            continue
        attributes = []
        folder = by_name.get(name)
        if folder is None:
            attributes.append("\\Noselect")
        attributes.append("\\HasChildren" if name in parents else "\\HasNoChildren")
        if folder is not None and folder.special_use:
            attributes.append(folder.special_use)
        out.append(list_response(attributes, DELIMITER, name))
    return out


def _subscriptions(folders: list[FolderInfo], pattern: str) -> list[bytes]:
    subscribed = {f.name for f in folders if f.subscribed}
    matcher = pattern_matcher(pattern)
    out = []
    for name in _order(_with_superiors(subscribed)):
        if _matches(matcher, name):
            attributes = [] if name in subscribed else ["\\Noselect"]
            out.append(list_response(attributes, DELIMITER, name, command="LSUB"))
    return out


def _root_response(reference: str, command: str) -> bytes:
    """``LIST ref ""``: the delimiter and the reference's root (RFC 3501 §6.3.8)."""
    root = reference.split(DELIMITER)[0] + DELIMITER if DELIMITER in reference else ""
    return list_response(["\\Noselect"], DELIMITER, root, command=command)


async def list_folders(session: Session, cmd: ListCommand) -> Completion:
    if not cmd.pattern:
        session.send(_root_response(cmd.reference, "LIST"))
        return Completion("LIST completed")
    folders = await run_blocking(session.ctx.store.list_folders, session.mailbox_id)
    session.send(*_listing(folders, cmd.reference + cmd.pattern))
    return Completion("LIST completed")


async def lsub(session: Session, cmd: LsubCommand) -> Completion:
    if not cmd.pattern:
        session.send(_root_response(cmd.reference, "LSUB"))
        return Completion("LSUB completed")
    folders = await run_blocking(session.ctx.store.list_folders, session.mailbox_id)
    session.send(*_subscriptions(folders, cmd.reference + cmd.pattern))
    return Completion("LSUB completed")


# -- STATUS and NAMESPACE ---------------------------------------------------------------


async def status(session: Session, cmd: StatusCommand) -> Completion:
    if StatusItem.HIGHESTMODSEQ in cmd.items:
        session.enable_condstore()  # RFC 7162 §3.1: a CONDSTORE-enabling command
    state = await run_index(session.ctx.store.sync, session.mailbox_id, cmd.mailbox)
    view = session.selected
    recent = len(state.recent)
    if view is not None and view.folder.id == state.folder.id:
        recent += len(view.recent)
    values = {
        StatusItem.MESSAGES: len(state.messages),
        StatusItem.RECENT: recent,
        StatusItem.UIDNEXT: state.folder.uid_next,
        StatusItem.UIDVALIDITY: state.folder.uid_validity,
        StatusItem.UNSEEN: sum(1 for m in state.messages if SEEN not in m.flags),
        StatusItem.HIGHESTMODSEQ: state.folder.highest_modseq,
    }
    session.send(status_response(cmd.mailbox, {item: values[item] for item in cmd.items}))
    return Completion("STATUS completed")


async def namespace(session: Session, cmd: NamespaceCommand) -> Completion:
    # RFC 2342: one personal namespace, no other users' or shared ones.
    session.send(namespace_response([("", DELIMITER)]))
    return Completion("NAMESPACE completed")


HANDLERS: Handlers = {
    SelectCommand: select,
    ExamineCommand: examine,
    CreateCommand: create,
    DeleteCommand: delete,
    RenameCommand: rename,
    SubscribeCommand: subscribe,
    UnsubscribeCommand: unsubscribe,
    ListCommand: list_folders,
    LsubCommand: lsub,
    StatusCommand: status,
    NamespaceCommand: namespace,
}
