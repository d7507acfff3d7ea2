"""Changing the selected folder: STORE, COPY, MOVE, EXPUNGE, UID EXPUNGE, CLOSE, UNSELECT.

STORE reports the resulting flags of every message it touched unless
``.SILENT`` (RFC 3501 §6.4.6). With UNCHANGEDSINCE (RFC 7162 §3.1.3) the
messages modified since are left alone and listed in ``[MODIFIED set]``;
under CONDSTORE every FETCH carries MODSEQ, even a silent one. Its own
changes are applied to the session's view directly, so STORE does not
re-read the folder afterwards; changes by others are reported as usual,
when they wake the session or at the poll.

COPY and MOVE answer ``[COPYUID]`` (RFC 4315); MOVE sends it untagged before
its EXPUNGE responses (RFC 6851 §4.3). A missing destination is
``NO [TRYCREATE]`` (RFC 3501 §6.4.7). A folder opened with EXAMINE refuses
every command that would change it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from imap.ops import Completion, Handlers
from imap.ops.selected import SelectedFolder
from imap.proto import IMAPError
from imap.proto.commands import (
    CloseCommand,
    CopyCommand,
    ExpungeCommand,
    MoveCommand,
    StoreCommand,
    StoreMode,
    UidExpungeCommand,
    UnselectCommand,
)
from imap.proto.formatting import format_uid_set
from imap.proto.responses import ResponseCode, copyuid_code, untagged_status
from imap.workers import run_blocking, run_index
from storage.mailindex import FolderMissing

if TYPE_CHECKING:
    from imap.session import Session

_MODES = {StoreMode.REPLACE: "=", StoreMode.ADD: "+", StoreMode.REMOVE: "-"}


def _writable(session: Session) -> SelectedFolder:
    selected = session.selected
    assert selected is not None
    if selected.read_only:
        raise IMAPError.no("The folder is open read-only (EXAMINE)", ResponseCode.READ_ONLY)
    return selected


async def store(session: Session, cmd: StoreCommand) -> Completion:
    selected = _writable(session)
    if cmd.unchanged_since is not None:
        session.enable_condstore()
    targets = selected.resolve(cmd.sequence_set, cmd.uid)
    uids = [uid for _, uid in targets]
    if not uids:
        return Completion("STORE completed")
    updated, failed = await run_index(
        session.ctx.store.store_flags, selected.folder.id, uids, _MODES[cmd.mode], cmd.flags,
        cmd.unchanged_since,
    )  # fmt: skip
    session.send(*selected.apply(updated))
    seqs = dict((uid, seq) for seq, uid in targets)
    for uid, _flags, modseq in updated:
        if not cmd.silent:
            session.send(selected.flag_fetch(seqs[uid], uid, modseq=session.condstore))
        elif cmd.unchanged_since is not None:
            # RFC 7162 §3.1.3 example: a silent conditional STORE still reports MODSEQ.
            session.send(b"* %d FETCH (UID %d MODSEQ (%d))\r\n" % (seqs[uid], uid, modseq))
    if updated:
        session.changed(reread=False)  # the view already holds what this STORE did
    if failed:
        numbers = sorted(uid if cmd.uid else seqs[uid] for uid in failed)
        code = b"MODIFIED " + format_uid_set(numbers)
        return Completion("Conditional STORE failed for some messages", code)
    return Completion("STORE completed")


async def _transfer(session: Session, cmd: CopyCommand | MoveCommand, move: bool) -> Completion:
    selected = _writable(session) if move else session.selected
    assert selected is not None
    targets = selected.resolve(cmd.sequence_set, cmd.uid)
    uids = [uid for _, uid in targets if uid not in selected.vanished]
    verb = "MOVE" if move else "COPY"
    if not uids:
        return Completion(f"{verb} completed, nothing to do")
    operation = session.ctx.store.move if move else session.ctx.store.copy
    try:
        validity, pairs = await run_blocking(
            operation, selected.folder.id, uids, session.mailbox_id, cmd.mailbox)  # fmt: skip
    except FolderMissing:
        raise IMAPError.no("No such folder", ResponseCode.TRYCREATE) from None
    session.changed()
    code = None
    if pairs:
        code = copyuid_code(validity, [s for s, _ in pairs], [d for _, d in pairs])
    if move:
        if code is not None:
            session.send(untagged_status("OK", "Moved", code))
        session.send(*selected.remove(s for s, _ in pairs))
        return Completion("MOVE completed")
    return Completion("COPY completed", code)


async def copy(session: Session, cmd: CopyCommand) -> Completion:
    return await _transfer(session, cmd, move=False)


async def move(session: Session, cmd: MoveCommand) -> Completion:
    return await _transfer(session, cmd, move=True)


async def expunge(session: Session, cmd: ExpungeCommand) -> Completion:
    selected = _writable(session)
    removed = await run_blocking(session.ctx.store.expunge, selected.folder.id)
    session.send(*selected.remove(removed))
    if removed:
        session.changed()
    return Completion("EXPUNGE completed")


async def uid_expunge(session: Session, cmd: UidExpungeCommand) -> Completion:
    selected = _writable(session)
    uids = [uid for _, uid in selected.resolve(cmd.sequence_set, uid=True)]
    removed: list[int] = []
    if uids:
        removed = await run_blocking(session.ctx.store.expunge, selected.folder.id, uids)
    session.send(*selected.remove(removed))
    if removed:
        session.changed()
    return Completion("UID EXPUNGE completed")


async def close(session: Session, cmd: CloseCommand) -> Completion:
    selected = session.selected
    assert selected is not None
    session.deselect()  # RFC 3501 §6.4.2: no EXPUNGE responses, even on failure
    if not selected.read_only:
        removed = await run_blocking(session.ctx.store.expunge, selected.folder.id)
        if removed:
            session.changed()
    return Completion("CLOSE completed")


async def unselect(session: Session, cmd: UnselectCommand) -> Completion:
    session.deselect()  # RFC 3691: like CLOSE, without the expunge
    return Completion("UNSELECT completed")


HANDLERS: Handlers = {
    StoreCommand: store,
    CopyCommand: copy,
    MoveCommand: move,
    ExpungeCommand: expunge,
    UidExpungeCommand: uid_expunge,
    CloseCommand: close,
    UnselectCommand: unselect,
}
