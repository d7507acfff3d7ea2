"""FETCH and UID FETCH (RFC 3501 §6.4.5, §7.4.2; RFC 7162 MODSEQ, CHANGEDSINCE).

Flags, dates, sizes and mod-sequences come from the session's view. ENVELOPE,
BODY, BODYSTRUCTURE and the header sections come from the messages'
summaries (:mod:`imap.message_cache`): those the process's cache lacks are
loaded for a whole batch in a worker thread, from the database (made from
the files only for messages indexed before summaries were stored). Message
files are read only for the octets themselves, and then without waiting for
the disk: a batch whose files are all in the page cache
(:func:`~imap.ops.selected.read_if_cached`) is rendered on the event loop;
any other batch goes to a worker thread. Listing a folder therefore costs no
thread hand-off once its summaries are cached, and listing it again with the
same items reuses each message's rendered response (kept on its summary with
the index entry it was made for, so changed flags render anew).

``BODY[...]`` without ``.PEEK`` and ``RFC822``/``RFC822.TEXT`` set ``\\Seen``
first, in one STORE, and the response then carries the new FLAGS (RFC 3501
§6.4.5), except in a folder opened with EXAMINE, where nothing changes.

A message that disappeared (expunged by another session; its EXPUNGE waits
for a command that may carry it) is left out and the command ends
``NO [EXPUNGEISSUED]`` as RFC 2180 §4.1.2 suggests.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from imap.message_cache import Summary, SummaryCache, load_summaries
from imap.mime import MessageView, partial, section
from imap.ops import Completion, Handlers
from imap.ops.selected import SEEN, SelectedFolder, WouldBlock
from imap.proto.commands import FetchCommand
from imap.proto.fetch import BodySection, FetchAttr, FetchItem, Section, SectionText, sets_seen
from imap.proto.formatting import format_datetime, format_literal
from imap.proto.responses import ResponseCode, Status
from imap.workers import run_blocking, run_index
from storage.mailindex import MessageInfo
from storage.mailindex_state import INFO_SEPARATOR

if TYPE_CHECKING:
    from imap.session import Session

_TEXT = Section(text=SectionText.TEXT)
_HEADER_TEXTS = frozenset({SectionText.HEADER, SectionText.HEADER_FIELDS,
                           SectionText.HEADER_FIELDS_NOT})  # fmt: skip


# How each fetch item is answered (plain ints: compared once per item per message).
K_UID, K_FLAGS, K_INTERNALDATE, K_SIZE, K_MODSEQ = 0, 1, 2, 3, 4
K_ENVELOPE = 5  # from the summary
K_BODY, K_BODYSTRUCTURE = 6, 7  # from the summary, filled from the file once
K_RFC822_HEADER = 8  # from the summary
K_HEADER_SECTION = 9  # BODY[HEADER], BODY[HEADER.FIELDS (...)]: from the summary
K_CONTENT = 10  # the message octets

_KINDS = {
    FetchAttr.UID: K_UID, FetchAttr.FLAGS: K_FLAGS, FetchAttr.INTERNALDATE: K_INTERNALDATE,
    FetchAttr.RFC822_SIZE: K_SIZE, FetchAttr.MODSEQ: K_MODSEQ, FetchAttr.ENVELOPE: K_ENVELOPE,
    FetchAttr.BODY: K_BODY, FetchAttr.BODYSTRUCTURE: K_BODYSTRUCTURE,
    FetchAttr.RFC822_HEADER: K_RFC822_HEADER, FetchAttr.RFC822: K_CONTENT,
    FetchAttr.RFC822_TEXT: K_CONTENT,
}  # fmt: skip


def kind_of(item: FetchItem) -> int:
    if isinstance(item, BodySection):
        header_only = not item.section.parts and item.section.text in _HEADER_TEXTS
        return K_HEADER_SECTION if header_only else K_CONTENT
    return _KINDS[item]


def _name(item: FetchItem) -> bytes:
    return item.response_name() if isinstance(item, BodySection) else item.value.encode()


@dataclass(frozen=True, slots=True)
class Plan:
    """The items of one FETCH, classified once for every message."""

    steps: tuple[tuple[int, FetchItem, bytes], ...]  # (kind, item, response name)
    whole: bool  # some item needs the message octets
    summary: bool  # some item is answered from the summary
    key: int  # names this plan in the summaries' rendered lines

    @classmethod
    def of(cls, items: Sequence[FetchItem]) -> Plan:
        return _plan(tuple(items))

    @classmethod
    def make(cls, items: tuple[FetchItem, ...]) -> Plan:
        steps = tuple((kind_of(item), item, _name(item)) for item in items)
        kinds = {kind for kind, _, _ in steps}
        summary = bool(kinds & {K_ENVELOPE, K_BODY, K_BODYSTRUCTURE, K_RFC822_HEADER,
                                K_HEADER_SECTION})  # fmt: skip
        return cls(steps, K_CONTENT in kinds, summary, next(_plan_keys))


_plan_keys = itertools.count()


@lru_cache(maxsize=256)
def _plan(items: tuple[FetchItem, ...]) -> Plan:
    return Plan.make(items)  # clients send the same few item lists over and over


def _content_item(item: FetchItem, view: MessageView) -> bytes:
    if isinstance(item, BodySection):
        data = section(view, item.section)
        if item.partial is not None:
            data = partial(data, *item.partial)
        return item.response_name() + b" " + format_literal(data)
    if item is FetchAttr.RFC822:
        return b"RFC822 " + format_literal(view.raw)
    if item is FetchAttr.RFC822_TEXT:
        return b"RFC822.TEXT " + format_literal(section(view, _TEXT))
    raise AssertionError(item)


def render_message(
    selected: SelectedFolder,
    seq: int,
    info: MessageInfo,
    plan: Plan,
    summary: Summary | None,
    view: MessageView | None,
) -> bytes:
    """One ``* n FETCH (...)`` response (RFC 3501 §7.4.2)."""
    return b"* %d FETCH (%s)\r\n" % (seq, render_items(selected, info, plan, summary, view))


def render_items(
    selected: SelectedFolder,
    info: MessageInfo,
    plan: Plan,
    summary: Summary | None,
    view: MessageView | None,
) -> bytes:
    """What goes between the parentheses of a FETCH response.

    ``summary`` is given when ``plan.summary``, ``view`` when the plan needs
    the octets. Every listing of a folder comes through here for each
    message, so the response is assembled from bytes directly.
    """
    out: list[bytes] = []
    for kind, item, name in plan.steps:
        if kind == K_ENVELOPE:
            out.append(b"ENVELOPE " + summary.envelope)  # type: ignore[union-attr]
        elif kind == K_FLAGS:
            out.append(b"FLAGS " + selected.flags_bytes(info))
        elif kind == K_SIZE:
            out.append(b"RFC822.SIZE %d" % (view.size if view is not None else info.rfc822_size))
        elif kind == K_UID:
            out.append(b"UID %d" % info.uid)
        elif kind == K_INTERNALDATE:
            out.append(b"INTERNALDATE " + format_datetime(info.internal_date))
        elif kind == K_MODSEQ:
            out.append(b"MODSEQ (%d)" % info.modseq)
        elif kind == K_BODY:
            out.append(b"BODY " + summary.body)  # type: ignore[union-attr]
        elif kind == K_BODYSTRUCTURE:
            out.append(b"BODYSTRUCTURE " + summary.bodystructure)  # type: ignore[union-attr]
        elif kind == K_RFC822_HEADER:
            out.append(b"RFC822.HEADER " + format_literal(summary.header))  # type: ignore[union-attr]
        elif kind == K_HEADER_SECTION:
            assert isinstance(item, BodySection) and item.section.text is not None
            data = summary.header_section(item.section.text, item.section.headers)  # type: ignore[union-attr]
            if item.partial is not None:
                data = partial(data, *item.partial)
            out.append(name + b" " + format_literal(data))
        else:
            assert view is not None
            out.append(_content_item(item, view))
    return b" ".join(out)


def render_batch(
    selected: SelectedFolder,
    cache: SummaryCache,
    summaries: Mapping[int, Summary],
    batch: Sequence[tuple[int, int]],
    items: Sequence[FetchItem],
    extra: dict[int, tuple[FetchItem, ...]],
    *,
    wait: bool = True,
) -> tuple[list[bytes], int, Sequence[tuple[int, int]]]:
    """The responses for a batch, how many messages were gone, and what is left.

    ``summaries`` has those of the batch's messages when the items need them
    (a message without one is gone). With ``wait`` (a worker thread) files
    are read whatever it takes and nothing is left; without, rendering stops
    at the first message whose file is not in the page cache, and the rest
    of the batch is returned.
    """
    responses: list[bytes] = []
    missing = 0
    plan = Plan.of(items)
    vanished, messages, recent = selected.vanished, selected.messages, selected.recent
    for done, (seq, uid) in enumerate(batch):
        if uid in vanished:
            missing += 1
            continue
        if extra:
            plan = Plan.of((*items, *extra.get(uid, ())))
        info = messages[uid]
        summary = summaries.get(uid) if plan.summary else None
        if plan.summary and summary is None:
            missing += 1  # its file is gone
            continue
        if not plan.whole:
            # A listing again: the same items of the same message render the same
            # (not where this session shows \Recent, which the line would not carry).
            keep = summary is not None and uid not in recent
            line = summary.rendered(plan.key, info) if keep else None  # type: ignore[union-attr]
            if line is None:
                line = render_items(selected, info, plan, summary, None)
                if keep and summary.remember_line(plan.key, info, line):  # type: ignore[union-attr]
                    cache.put(info.filename.partition(INFO_SEPARATOR)[0], summary)  # re-account
            responses.append(b"* %d FETCH (%s)\r\n" % (seq, line))
            continue
        try:
            raw = selected.read(uid) if wait else selected.read_nowait(uid)
        except WouldBlock:
            return responses, missing, batch[done:]
        if raw is None:
            missing += 1
            continue
        view = MessageView(raw)
        responses.append(render_message(selected, seq, info, plan, summary, view))
    return responses, missing, ()


def _cached(
    selected: SelectedFolder, cache: SummaryCache, batch: Sequence[tuple[int, int]]
) -> dict[int, Summary] | None:
    """The summaries of the batch's messages if all are in memory, else None."""
    lookup = cache.get
    found: dict[int, Summary] = {}
    for _, uid in batch:
        if uid in selected.vanished:
            continue
        summary = lookup(selected.messages[uid].filename.partition(INFO_SEPARATOR)[0])
        if summary is None:
            return None
        found[uid] = summary
    return found


def _items(cmd: FetchCommand) -> tuple[FetchItem, ...]:
    items = list(dict.fromkeys(cmd.items))
    if cmd.uid and FetchAttr.UID not in items:
        items.insert(0, FetchAttr.UID)  # RFC 3501 §6.4.8: UID FETCH always returns UID
    if cmd.changed_since is not None and FetchAttr.MODSEQ not in items:
        items.append(FetchAttr.MODSEQ)  # RFC 7162 §3.1.4.1: implied by CHANGEDSINCE
    return tuple(items)


async def fetch(session: Session, cmd: FetchCommand) -> Completion:
    selected = session.selected
    assert selected is not None
    if FetchAttr.MODSEQ in cmd.items or cmd.changed_since is not None:
        session.enable_condstore()
    items = _items(cmd)
    targets = selected.resolve(cmd.sequence_set, cmd.uid)
    if cmd.changed_since is not None:
        since = cmd.changed_since
        targets = [(s, u) for s, u in targets if selected.messages[u].modseq > since]

    extra: dict[int, tuple[FetchItem, ...]] = {}
    if sets_seen(items) and not selected.read_only:
        unseen = [
            u
            for _, u in targets
            if u not in selected.vanished and SEEN not in selected.messages[u].flags
        ]
        if unseen:
            store = session.ctx.store
            updated, _ = await run_index(
                store.store_flags, selected.folder.id, unseen, "+", [SEEN])  # fmt: skip
            session.send(*selected.apply(updated))
            session.changed()
            added: tuple[FetchItem, ...] = ()
            if FetchAttr.FLAGS not in items:
                added += (FetchAttr.FLAGS,)
            if session.condstore and FetchAttr.MODSEQ not in items:
                added += (FetchAttr.MODSEQ,)
            extra = {uid: added for uid, _, _ in updated}

    missing = 0
    cache, store = session.ctx.summaries, session.ctx.store
    plan = Plan.of(items)
    size = max(1, session.ctx.settings.fetch_batch)
    for start in range(0, len(targets), size):
        batch = targets[start : start + size]
        summaries = _cached(selected, cache, batch) if plan.summary else {}
        if summaries is None:  # from the database (or the files) in a worker thread
            wanted = [uid for _, uid in batch if uid not in selected.vanished]
            summaries = await run_blocking(load_summaries, store, cache, selected, wanted)
        responses, gone, rest = render_batch(selected, cache, summaries, batch, items, extra,
                                             wait=False)  # fmt: skip
        if rest:  # a file to read from the disk: the rest of the batch in a worker thread
            more, more_gone, _ = await run_blocking(
                render_batch, selected, cache, summaries, rest, items, extra)  # fmt: skip
            responses += more
            gone += more_gone
        missing += gone
        session.send(b"".join(responses))
        if start + size < len(targets):
            await session.flush()  # (the last batch leaves with the tagged response)
            await asyncio.sleep(0)  # let other sessions run between batches
    if missing:
        return Completion("Some messages no longer exist", ResponseCode.EXPUNGEISSUED, Status.NO)
    return Completion("FETCH completed")


HANDLERS: Handlers = {FetchCommand: fetch}
