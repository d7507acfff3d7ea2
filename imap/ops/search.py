"""SEARCH and UID SEARCH (RFC 3501 §6.4.4; RFC 7162 §3.1.5 MODSEQ).

The criteria tree from the parser is evaluated by :mod:`imap.search_match`.
Flags, dates, sizes and numbers come from the session's view, so a search
over them never touches the disk and runs on the event loop. Header criteria
(FROM, SUBJECT, HEADER, SENT*) are answered from the messages' summaries
(:mod:`imap.message_cache`), on the event loop when all of them are in
memory and the folder is small; otherwise they are loaded (from the
database, or made from the files) in a worker thread, which then searches.
Body criteria read the files in a worker thread. Messages already
expunged elsewhere (not yet announced) never match. With a MODSEQ criterion
the response carries the highest mod-sequence of the matches.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from imap.message_cache import Summary, SummaryCache, load_summaries
from imap.mime import MessageView
from imap.ops import Completion, Handlers
from imap.ops.selected import SelectedFolder
from imap.proto.commands import SearchCommand
from imap.proto.responses import search_response
from imap.proto.search import SearchKey, uses_modseq
from imap.search_match import MessageFacts, SearchContext, compile_key, needs_body, needs_view
from imap.workers import run_blocking

if TYPE_CHECKING:
    from imap.session import Session


# Header criteria over at most this many summaries in memory are evaluated
# on the event loop (about a millisecond); larger folders go to a worker thread.
MAX_LOOP_HEADER_SEARCH = 500
# A worker thread loads summaries this many messages at a time, so a search
# of a large folder never holds all of them at once.
SEARCH_CHUNK = 500

Loader = Callable[[list[int]], dict[int, Summary]]  # UIDs → their summaries (gone: left out)


class _Gone(Exception):
    pass


class _Content:
    """Message content for one SEARCH: whole views from the files, headers from summaries.

    Messages are visited in UID order; summaries are loaded for the next
    :data:`SEARCH_CHUNK` messages whenever one outside those is asked for.
    """

    def __init__(self, selected: SelectedFolder, load: Loader, wait: bool) -> None:
        self.selected = selected
        self.load = load
        self.wait = wait  # False: raise WouldBlock rather than wait for the disk
        self._asked: frozenset[int] = frozenset()
        self._loaded: dict[int, Summary] = {}

    def view(self, uid: int) -> MessageView:
        raw = self.selected.read(uid) if self.wait else self.selected.read_nowait(uid)
        if raw is None:
            raise _Gone(uid)
        return MessageView(raw)

    def header(self, uid: int) -> Summary:
        if uid not in self._asked:
            uids, vanished = self.selected.uids, self.selected.vanished
            start = bisect.bisect_left(uids, uid)
            chunk = [u for u in uids[start : start + SEARCH_CHUNK] if u not in vanished]
            self._asked, self._loaded = frozenset(chunk), self.load(chunk)
        summary = self._loaded.get(uid)
        if summary is None:
            raise _Gone(uid)
        return summary


def _none(uids: list[int]) -> dict[int, Summary]:
    raise AssertionError("no header criteria")


def run_search(
    selected: SelectedFolder, key: SearchKey, load: Loader = _none, *, wait: bool = True
) -> list[tuple[int, int, int]]:
    """``(seq, uid, modseq)`` of every matching message.

    Header criteria are answered from the summaries ``load`` gives (a
    message without one is gone). With ``wait`` (a worker thread) files are
    read whatever it takes; without, :class:`WouldBlock` is raised as soon
    as one would block.
    """
    ctx = SearchContext(max_seq=selected.exists, max_uid=selected.max_uid)
    test = compile_key(key, ctx)
    content = _Content(selected, load, wait)
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
    if not needs_view(cmd.key):  # flags, numbers, dates and sizes: the view has them all
        found = run_search(selected, cmd.key, wait=False)
    elif needs_body(cmd.key):
        found = await run_blocking(run_search, selected, cmd.key)
    else:
        found = await _search_headers(session, selected, cmd.key)
    numbers = [uid if cmd.uid else seq for seq, uid, _ in found]
    highest = max((modseq for _, _, modseq in found), default=None) if with_modseq else None
    session.send(search_response(numbers, highest))
    return Completion("SEARCH completed")


async def _search_headers(
    session: Session, selected: SelectedFolder, key: SearchKey
) -> list[tuple[int, int, int]]:
    """SEARCH with header criteria: on the event loop if every summary is in memory."""
    cache, store = session.ctx.summaries, session.ctx.store
    if selected.exists <= MAX_LOOP_HEADER_SEARCH:
        summaries = _in_memory(selected, cache)
        if summaries is not None:
            return run_search(selected, key, lambda _: summaries, wait=False)
    load = functools.partial(load_summaries, store, cache, selected)
    return await run_blocking(run_search, selected, key, load)


def _in_memory(selected: SelectedFolder, cache: SummaryCache) -> dict[int, Summary] | None:
    """The summaries of the folder's messages if all are in memory, else None."""
    found = {}
    for uid in selected.uids:
        if uid in selected.vanished:
            continue
        summary = cache.get(selected.messages[uid].base_name)
        if summary is None:
            return None
        found[uid] = summary
    return found


HANDLERS: Handlers = {SearchCommand: search}
