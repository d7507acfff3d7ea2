"""APPEND (RFC 3501 §6.3.11) with APPENDUID (RFC 4315 §3).

The message literal has already been read by the loop, within the
APPENDLIMIT (RFC 7889) the session allows. The store charges the pooled
quota in the same transaction as the index row, so a full pool answers
``NO [OVERQUOTA]`` and leaves nothing behind. A missing folder is
``NO [TRYCREATE]``. Appending to the selected folder is announced with
EXISTS by the refresh that precedes the tagged OK. The message's summary
(:mod:`imap.message_cache`) is made while its octets are at hand, and indexed
with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from imap.message_cache import summarize
from imap.mime import MessageView
from imap.ops import Completion, Handlers
from imap.proto import IMAPError
from imap.proto.commands import AppendCommand
from imap.proto.responses import ResponseCode, appenduid_code
from imap.workers import run_blocking
from storage.mailindex import Appended, FolderMissing

if TYPE_CHECKING:
    from imap.session import Session


async def append(session: Session, cmd: AppendCommand) -> Completion:
    if not cmd.message:
        raise IMAPError.no("Empty message", ResponseCode.CANNOT)
    store, cache, mailbox_id = session.ctx.store, session.ctx.summaries, session.mailbox_id

    def append_and_summarize() -> Appended:
        # Made from the octets as the store keeps them (LF line endings), so it is
        # the summary the file would give: the same answers after a restart.
        summary = summarize(MessageView(cmd.message.replace(b"\r\n", b"\n")))
        stored = store.append_message(mailbox_id, cmd.mailbox, cmd.message, cmd.flags,
                                      cmd.internal_date, summary.encode())  # fmt: skip
        # The client that appends usually lists the folder next: have it in memory.
        cache.put(stored.base_name, summary)
        return stored

    try:
        stored = await run_blocking(append_and_summarize)
    except FolderMissing:
        raise IMAPError.no("No such folder", ResponseCode.TRYCREATE) from None
    session.changed()
    return Completion("APPEND completed", appenduid_code(stored.uid_validity, [stored.uid]))


HANDLERS: Handlers = {AppendCommand: append}
