"""SEARCH and UID SEARCH (RFC 3501 §6.4.4; RFC 7162 §3.1.5 MODSEQ).

The criteria tree from the parser is evaluated by :mod:`imap.search_match`.
Flags, dates, sizes and numbers come from the session's view, so a search
over them never touches the disk and runs on the event loop. Header criteria
(FROM, SUBJECT, HEADER, SENT*) are answered from the cached header blocks
(:mod:`imap.message_cache`), on the event loop when all of them are cached
and the folder is small; body criteria, and anything that must read files
that are not in the page cache, run in a worker thread. Messages already
expunged elsewhere (not yet announced) never match. With a MODSEQ criterion
the response carries the highest mod-sequence of the matches.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from imap.message_cache import Summary, SummaryCache, summarize
from imap.mime import MessageView
from imap.ops import Completion, Handlers
from imap.ops.selected import SelectedFolder, WouldBlock
from imap.proto.commands import SearchCommand
from imap.proto.responses import search_response
from imap.proto.search import SearchKey, uses_modseq
from imap.search_match import MessageFacts, SearchContext, compile_key, needs_body, needs_view
from imap.workers import run_blocking

if TYPE_CHECKING:
    from imap.session import Session


# Header criteria over at most this many cached headers are evaluated on the
# event loop (about a millisecond); larger folders go to a worker thread.
MAX_LOOP_HEADER_SEARCH = 500


class _Gone(Exception):
    pass


class _Content:
    """Message content for one SEARCH: whole views from the files, headers from the cache."""

    def __init__(self, selected: SelectedFolder, cache: SummaryCache, wait: bool) -> None:
        self.selected = selected
        self.cache = cache
        self.wait = wait  # False: raise WouldBlock rather than wait for the disk

    def _read(self, uid: int) -> bytes | None:
        return self.selected.read(uid) if self.wait else self.selected.read_nowait(uid)

    def view(self, uid: int) -> MessageView:
        raw = self._read(uid)
        if raw is None:
            raise _Gone(uid)
        view = MessageView(raw)
        base = self.selected.messages[uid].base_name
        if self.cache.get(base) is None:
            self.cache.put(base, summarize(view))
        return view

    def header(self, uid: int) -> Summary:
        base = self.selected.messages[uid].base_name
        summary = self.cache.get(base)
        if summary is None:
            raw = self._read(uid)
            if raw is None:
                raise _Gone(uid)
            summary = summarize(MessageView(raw))
            self.cache.put(base, summary)
        return summary


def run_search(
    selected: SelectedFolder, key: SearchKey, cache: SummaryCache, *, wait: bool = True
) -> list[tuple[int, int, int]]:
    """``(seq, uid, modseq)`` of every matching message.

    With ``wait`` (a worker thread) files are read whatever it takes;
    without, :class:`WouldBlock` is raised as soon as one would block.
    """
    ctx = SearchContext(max_seq=selected.exists, max_uid=selected.max_uid)
    test = compile_key(key, ctx)
    content = _Content(selected, cache, wait)
    # One facts object moves from message to message; its loaders follow it.
    facts = MessageFacts(0, 0, frozenset(), datetime.now(UTC), 0, 0,
                         lambda: content.view(facts.uid))  # fmt: skip
    if not needs_body(key):
        facts.load_header = lambda: content.header(facts.uid)
    vanished, recent, messages = selected.vanished, selected.recent, selected.messages
    found = []
    for seq, uid in enumerate(selected.uids, 1):
        if uid in vanished:
            continue
        info = messages[uid]
        facts.reset(seq, uid, info.flags, info.internal_date, info.rfc822_size, info.modseq,
                    uid in recent)  # fmt: skip
        try:
            if test(facts):
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
    cache = session.ctx.summaries
    if not needs_view(cmd.key):  # flags, numbers, dates and sizes: the view has them all
        found = run_search(selected, cmd.key, cache, wait=False)
    elif not needs_body(cmd.key) and selected.exists <= MAX_LOOP_HEADER_SEARCH:
        try:  # cached header blocks: no need for a worker thread
            found = run_search(selected, cmd.key, cache, wait=False)
        except WouldBlock:
            found = await run_blocking(run_search, selected, cmd.key, cache)
    else:
        found = await run_blocking(run_search, selected, cmd.key, cache)
    numbers = [uid if cmd.uid else seq for seq, uid, _ in found]
    highest = max((modseq for _, _, modseq in found), default=None) if with_modseq else None
    session.send(search_response(numbers, highest))
    return Completion("SEARCH completed")


HANDLERS: Handlers = {SearchCommand: search}
