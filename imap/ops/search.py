"""SEARCH and UID SEARCH (RFC 3501 §6.4.4; RFC 7162 §3.1.5 MODSEQ).

The criteria tree from the parser is evaluated by :mod:`imap.search_match`
in a worker thread, since content criteria read message files. Flags, dates,
sizes and numbers come from the session's view, so a search over them never
touches the disk. Messages already expunged elsewhere (not yet announced)
never match. With a MODSEQ criterion the response carries the highest
mod-sequence of the matches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from imap.mime import MessageView
from imap.ops import Completion, Handlers
from imap.ops.selected import SelectedFolder
from imap.proto.commands import SearchCommand
from imap.proto.responses import search_response
from imap.proto.search import SearchKey, uses_modseq
from imap.search_match import MessageFacts, SearchContext, matches

if TYPE_CHECKING:
    from imap.session import Session


class _Gone(Exception):
    pass


def _loader(selected: SelectedFolder, uid: int) -> Callable[[], MessageView]:
    def load() -> MessageView:
        raw = selected.read(uid)
        if raw is None:
            raise _Gone(uid)
        return MessageView(raw)

    return load


def run_search(selected: SelectedFolder, key: SearchKey) -> list[tuple[int, int, int]]:
    """``(seq, uid, modseq)`` of every matching message (worker thread)."""
    ctx = SearchContext(max_seq=selected.exists, max_uid=selected.max_uid)
    found = []
    for seq, uid in enumerate(selected.uids, 1):
        if uid in selected.vanished:
            continue
        info = selected.messages[uid]
        facts = MessageFacts(
            seq=seq,
            uid=uid,
            flags=info.flags,
            internal_date=info.internal_date,
            size=info.rfc822_size,
            modseq=info.modseq,
            load=_loader(selected, uid),
            recent=uid in selected.recent,
        )
        try:
            if matches(key, facts, ctx):
                found.append((seq, uid, info.modseq))
        except _Gone:
            continue
    return found


async def search(session: Session, cmd: SearchCommand) -> Completion:
    selected = session.selected
    assert selected is not None
    with_modseq = uses_modseq(cmd.key)
    if with_modseq:
        session.enable_condstore()  # RFC 7162 §3.1: SEARCH MODSEQ enables CONDSTORE
    found = await asyncio.to_thread(run_search, selected, cmd.key)
    numbers = [uid if cmd.uid else seq for seq, uid, _ in found]
    highest = max((modseq for _, _, modseq in found), default=None) if with_modseq else None
    session.send(search_response(numbers, highest))
    return Completion("SEARCH completed")


HANDLERS: Handlers = {SearchCommand: search}
