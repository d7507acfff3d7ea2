"""APPEND (RFC 3501 §6.3.11) with APPENDUID (RFC 4315 §3).

The message literal has already been read by the loop, within the
APPENDLIMIT (RFC 7889) the session allows. The store charges the pooled
quota in the same transaction as the index row, so a full pool answers
``NO [OVERQUOTA]`` and leaves nothing behind. A missing folder is
``NO [TRYCREATE]``. Appending to the selected folder is announced with
EXISTS by the refresh that precedes the tagged OK.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from imap.ops import Completion, Handlers
from imap.proto import IMAPError
from imap.proto.commands import AppendCommand
from imap.proto.responses import ResponseCode, appenduid_code
from storage.mailindex import FolderMissing

if TYPE_CHECKING:
    from imap.session import Session


async def append(session: Session, cmd: AppendCommand) -> Completion:
    if not cmd.message:
        raise IMAPError.no("Empty message", ResponseCode.CANNOT)
    try:
        validity, uid = await asyncio.to_thread(
            session.ctx.store.append, session.mailbox_id, cmd.mailbox, cmd.message, cmd.flags,
            cmd.internal_date,
        )  # fmt: skip
    except FolderMissing:
        raise IMAPError.no("No such folder", ResponseCode.TRYCREATE) from None
    session.changed()
    return Completion("APPEND completed", appenduid_code(validity, [uid]))


HANDLERS: Handlers = {AppendCommand: append}
