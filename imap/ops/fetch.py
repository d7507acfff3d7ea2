"""FETCH and UID FETCH (RFC 3501 §6.4.5, §7.4.2; RFC 7162 MODSEQ, CHANGEDSINCE).

Items that need the message (ENVELOPE, BODY, BODYSTRUCTURE, RFC822*,
BODY[...]) read its file in a worker thread, a batch of messages per call;
the others come from the session's view. ``BODY[...]`` without ``.PEEK`` and
``RFC822``/``RFC822.TEXT`` set ``\\Seen`` first, in one STORE, and the
response then carries the new FLAGS (RFC 3501 §6.4.5), except in a folder
opened with EXAMINE, where nothing changes.

A message that disappeared (expunged by another session; its EXPUNGE waits
for a command that may carry it) is left out and the command ends
``NO [EXPUNGEISSUED]`` as RFC 2180 §4.1.2 suggests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from imap.mime import MessageView, body_structure, envelope, partial, render, section
from imap.ops import Completion, Handlers
from imap.ops.selected import SEEN, SelectedFolder
from imap.proto.commands import FetchCommand
from imap.proto.fetch import BodySection, FetchAttr, FetchItem, Section, SectionText, sets_seen
from imap.proto.formatting import Literal, Raw, Value
from imap.proto.responses import ResponseCode, Status, fetch_response

if TYPE_CHECKING:
    from imap.session import Session

_CONTENT_ATTRS = frozenset({
    FetchAttr.ENVELOPE, FetchAttr.BODY, FetchAttr.BODYSTRUCTURE, FetchAttr.RFC822,
    FetchAttr.RFC822_HEADER, FetchAttr.RFC822_TEXT,
})  # fmt: skip
_HEADER = Section(text=SectionText.HEADER)
_TEXT = Section(text=SectionText.TEXT)


def _needs_content(items: Sequence[FetchItem]) -> bool:
    return any(isinstance(item, BodySection) or item in _CONTENT_ATTRS for item in items)


def _content_item(item: FetchItem, view: MessageView) -> tuple[bytes | str, Value]:
    if isinstance(item, BodySection):
        data = section(view, item.section)
        if item.partial is not None:
            data = partial(data, *item.partial)
        return item.response_name(), Literal(data)
    match item:
        case FetchAttr.ENVELOPE:
            return "ENVELOPE", Raw(render(envelope(view)))
        case FetchAttr.BODY:
            return "BODY", Raw(render(body_structure(view, extended=False)))
        case FetchAttr.BODYSTRUCTURE:
            return "BODYSTRUCTURE", Raw(render(body_structure(view, extended=True)))
        case FetchAttr.RFC822:
            return "RFC822", Literal(view.raw)
        case FetchAttr.RFC822_HEADER:
            return "RFC822.HEADER", Literal(section(view, _HEADER))
        case FetchAttr.RFC822_TEXT:
            return "RFC822.TEXT", Literal(section(view, _TEXT))
    raise AssertionError(item)


def render_message(
    selected: SelectedFolder,
    seq: int,
    uid: int,
    items: Sequence[FetchItem],
    *,
    content: bool,
) -> bytes | None:
    """One ``* n FETCH (...)`` response, or None if the message file is gone."""
    view = None
    if content:
        raw = selected.read(uid)
        if raw is None:
            return None
        view = MessageView(raw)
    info = selected.messages[uid]
    out: list[tuple[bytes | str, Value]] = []
    for item in items:
        match item:
            case FetchAttr.UID:
                out.append(("UID", uid))
            case FetchAttr.FLAGS:
                out.append(("FLAGS", selected.flag_items(uid)))
            case FetchAttr.INTERNALDATE:
                out.append(("INTERNALDATE", info.internal_date))
            case FetchAttr.RFC822_SIZE:
                out.append(("RFC822.SIZE", view.size if view is not None else info.rfc822_size))
            case FetchAttr.MODSEQ:
                out.append(("MODSEQ", [info.modseq]))
            case _:
                assert view is not None
                out.append(_content_item(item, view))
    return fetch_response(seq, out)


def _render_batch(
    selected: SelectedFolder,
    batch: Sequence[tuple[int, int]],
    items: Sequence[FetchItem],
    extra: dict[int, tuple[FetchItem, ...]],
) -> tuple[list[bytes], int]:
    content = _needs_content(items)
    responses: list[bytes] = []
    missing = 0
    for seq, uid in batch:
        if uid in selected.vanished:
            missing += 1
            continue
        response = render_message(selected, seq, uid, (*items, *extra.get(uid, ())),
                                  content=content)  # fmt: skip
        if response is None:
            missing += 1
        else:
            responses.append(response)
    return responses, missing


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
            updated, _ = await asyncio.to_thread(
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
    size = max(1, session.ctx.settings.fetch_batch)
    for start in range(0, len(targets), size):
        batch = targets[start : start + size]
        responses, gone = await asyncio.to_thread(_render_batch, selected, batch, items, extra)
        missing += gone
        session.send(*responses)
        await session.flush()
    if missing:
        return Completion("Some messages no longer exist", ResponseCode.EXPUNGEISSUED, Status.NO)
    return Completion("FETCH completed")


HANDLERS: Handlers = {FetchCommand: fetch}
