"""What FETCH and SEARCH derive from a message file: in memory, and kept in the database.

A Maildir file's content never changes (only its name, with its flags), so
whatever is computed from it can be kept. This is the role of Dovecot's
``dovecot.index.cache``: a client listing a folder asks for the same
ENVELOPE, BODYSTRUCTURE and header fields over and over, and answering from
a summary costs neither a file read nor a MIME parse.

A :class:`Summary` holds the header block (CRLF form, with its blank line:
enough for ``BODY[HEADER]``, ``BODY[HEADER.FIELDS ...]`` and the header
criteria of SEARCH) and the rendered ENVELOPE, BODY and BODYSTRUCTURE, all
made once from the whole message (:func:`summarize`). :meth:`Summary.encode`
is its persisted form, stored beside the message's index row
(``mail_summary``) when the message is indexed (APPEND, COPY, a delivery
found in ``new/``) or, for rows indexed before, the first time a client asks
(:func:`load_summaries`). A restarted server thus answers a listing from one
query instead of reading and parsing every file. The rendered forms are
stored as sent, so the answers are the same octets before and after a
restart; :data:`SUMMARY_FORMAT` names the rendering, and a summary of another
format is made again from the file.

In memory, :class:`SummaryCache` is an LRU keyed by the file's base name
(unique, ``<time>.M<usec>P<pid>Q<n>.<host>``, and kept across renames),
bounded by the bytes its entries take. What is derived on demand (decoded
fields for SEARCH, header sections, the last rendered FETCH response) is
kept on the entry and counted too. It is shared by every session and used
from worker threads and the event loop alike. A listing of messages whose
summaries are in memory costs about a microsecond each; from the database,
about twenty: the bound should hold the folders clients keep listing.
"""

from __future__ import annotations

import logging
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imap.mime import MessageView, body_structure, decode_words, header_fields, render
from imap.mime_entity import Entity, header_block, message_header_fields
from imap.mime_structure import envelope_of
from storage.db import StorageUnavailable

if TYPE_CHECKING:
    from imap.ops.selected import SelectedFolder
    from storage.mailindex import MailStore

log = logging.getLogger("mailward.imap")

# The rendering the persisted summaries hold; bump it when ENVELOPE, BODY or
# BODYSTRUCTURE would render differently, so older summaries are made again.
SUMMARY_FORMAT = 1
_LAYOUT = struct.Struct(">B4I")  # format, then the lengths of the four parts

# What an entry costs beyond its octets: the Summary object, the headers of
# its bytes objects, its key and its slot in the LRU (tracemalloc over the
# benchmark's messages, listed and searched: 1,700 bytes an entry, 900 of
# them octets; the cost counted 1,650).
ENTRY_OVERHEAD = 600
# What a derived value costs beyond its octets (a dict slot, a key, an object).
ITEM_OVERHEAD = 150
# Field lists remembered per message (clients use one or two).
MAX_SECTIONS = 2
# The default bound: the summaries of about 15,000 messages with short
# headers like the benchmark's, 5,000 with the Received and DKIM fields of
# real mail. Those beyond it are read from the database when listed.
DEFAULT_MAX_BYTES = 24 * 1024 * 1024


@dataclass(slots=True)
class Summary:
    header: bytes  # the header block in CRLF form, with the blank line that ends it
    envelope: bytes  # the rendered ENVELOPE (RFC 3501 §7.4.2)
    body: bytes  # the rendered BODY
    bodystructure: bytes  # the rendered BODYSTRUCTURE
    # The fields SEARCH asked about (a client's quick filter asks for the same
    # few over and over): decoded, and case-folded for substring matches.
    decoded: dict[str, list[str]] | None = None
    folded: dict[str, str] | None = None
    # BODY[HEADER.FIELDS (...)] as rendered for the field lists clients asked
    # for (each client asks for its own list, for every message it shows).
    sections: dict[tuple[str, tuple[str, ...]], bytes] | None = None
    # The last FETCH response without its sequence number, the item list it
    # answered and the index entry (flags, mod-sequence) it was rendered for:
    # a client lists the same folder with the same items again and again.
    line: bytes | None = None
    line_plan: int = -1
    line_entry: object = None
    referenced: bool = False  # used since the clock hand last passed (see SummaryCache)
    charged: int = 0  # the cost the cache counted for this entry

    @property
    def cost(self) -> int:
        """Bytes this entry holds, approximately (what the cache's bound counts)."""
        cost = ENTRY_OVERHEAD + len(self.header) + len(self.envelope) + len(self.body)
        cost += len(self.bodystructure) + len(self.line or b"")
        for data in (self.sections or {}).values():
            cost += ITEM_OVERHEAD + len(data)
        for name, values in (self.decoded or {}).items():
            cost += ITEM_OVERHEAD + len(name) + sum(ITEM_OVERHEAD // 2 + len(v) for v in values)
        for name, text in (self.folded or {}).items():
            cost += ITEM_OVERHEAD + len(name) + len(text)
        return cost

    def encode(self) -> bytes:
        """The persisted form: the format, the parts' lengths, the parts."""
        parts = (self.header, self.envelope, self.body, self.bodystructure)
        return _LAYOUT.pack(SUMMARY_FORMAT, *(len(p) for p in parts)) + b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> Summary | None:
        """A summary from its persisted form; None if another format made it."""
        if len(data) < _LAYOUT.size or data[0] != SUMMARY_FORMAT:
            return None
        _, *lengths = _LAYOUT.unpack_from(data)
        if _LAYOUT.size + sum(lengths) != len(data):
            return None
        parts, pos = [], _LAYOUT.size
        for length in lengths:
            parts.append(data[pos : pos + length])
            pos += length
        return cls(*parts)

    def header_view(self) -> MessageView:
        """A view of the header alone: the same fields and header sections as the message."""
        return MessageView(self.header)

    def rendered(self, plan: int, entry: object) -> bytes | None:
        """The items rendered for ``plan`` if that was for this very index entry."""
        if self.line_plan == plan and self.line_entry is entry:
            return self.line
        return None

    def remember_line(self, plan: int, entry: object, line: bytes) -> bool:
        """Keep a rendering; True if its length changed (the cost with it)."""
        grew = len(line) != len(self.line or b"")
        self.line, self.line_plan, self.line_entry = line, plan, entry
        return grew

    def header_section(self, text: str, headers: tuple[str, ...]) -> bytes:
        """``BODY[HEADER]``, ``BODY[HEADER.FIELDS (...)]`` or ``.NOT`` of the message."""
        if text == "HEADER":
            return self.header
        key = (text, headers)
        if self.sections is not None and key in self.sections:
            return self.sections[key]
        fields = message_header_fields(self.header)
        data = header_fields(fields, headers, keep=text == "HEADER.FIELDS")
        if self.sections is None or len(self.sections) >= MAX_SECTIONS:
            self.sections = {}
        self.sections[key] = data
        return data

    def folded_header(self, name: str) -> str:
        """The decoded values of field ``name``, case-folded and joined by NUL (for SEARCH)."""
        key = name.lower()
        if self.folded is None:
            self.folded = {}
        folded = self.folded.get(key)
        if folded is None:
            folded = self.folded[key] = "\0".join(self._values(key)).casefold()
        return folded

    def header_values(self, name: str) -> list[str]:
        """Every field ``name`` of the header, unfolded and decoded (for SEARCH)."""
        key = name.lower()
        if self.decoded is None:
            self.decoded = {}
        values = self.decoded.get(key)
        if values is None:
            values = self.decoded[key] = self._values(key)
        return values

    def _values(self, key: str) -> list[str]:
        fields = message_header_fields(self.header)  # the fields only: no MIME parse
        return [decode_words(f.value) for f in fields if f.name.lower() == key]


def summarize(view: MessageView) -> Summary:
    """The summary of a whole message."""
    header = header_block(view.raw)
    # ENVELOPE needs the header fields only (RFC 3501 §7.4.2), as from a header alone.
    root = Entity(0, len(header), len(header), message_header_fields(header), "text", "plain", ())
    return Summary(
        header,
        render(envelope_of(root)),
        render(body_structure(view, extended=False)),
        render(body_structure(view, extended=True)),
    )


def encoded_summary(data: bytes) -> bytes:
    """The persisted summary of stored octets (what the store indexes with a message)."""
    return summarize(MessageView(data)).encode()


class SummaryCache:
    """An LRU of summaries bounded by their cost, approximated the CLOCK way.

    A hit only sets the entry's ``referenced`` bit (no lock, no reordering:
    listing a folder looks up every message); eviction gives a referenced
    entry a second chance at the young end instead of dropping it.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, Summary] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        return self._bytes

    def get(self, base_name: str) -> Summary | None:
        entry = self._entries.get(base_name)
        if entry is not None:
            entry.referenced = True
        return entry

    def put(self, base_name: str, summary: Summary) -> None:
        """Add or re-account an entry (after something was derived and kept on it)."""
        cost = summary.cost
        if cost > self.max_bytes:
            return
        with self._lock:
            old = self._entries.get(base_name)
            self._bytes += cost - (old.charged if old is not None else 0)
            summary.charged = cost
            self._entries[base_name] = summary
            chances = len(self._entries)
            while self._bytes > self.max_bytes:
                name, entry = self._entries.popitem(last=False)
                if entry.referenced and chances > 0:
                    chances -= 1
                    entry.referenced = False
                    self._entries[name] = entry
                    continue
                self._bytes -= entry.charged


def load_summaries(
    store: MailStore, cache: SummaryCache, selected: SelectedFolder, uids: Iterable[int]
) -> dict[int, Summary]:
    """The summaries of messages of the selected folder, by UID (blocks).

    Each comes from memory, else from the database, else from its file, and
    a summary made from a file is stored for next time. Messages whose file
    is gone are left out.
    """
    found: dict[int, Summary] = {}
    wanted: dict[int, str] = {}
    for uid in uids:
        base = selected.messages[uid].base_name
        summary = cache.get(base)
        if summary is None:
            wanted[uid] = base
        else:
            found[uid] = summary
    if not wanted:
        return found
    folder_id = selected.folder.id
    for uid, data in store.summaries(folder_id, list(wanted)).items():
        summary = Summary.decode(data)
        if summary is not None:
            found[uid] = summary
            cache.put(wanted.pop(uid), summary)
    made: dict[int, bytes] = {}
    for uid, base in wanted.items():
        raw = selected.read(uid)
        if raw is None:
            continue
        summary = found[uid] = summarize(MessageView(raw))
        cache.put(base, summary)
        made[uid] = summary.encode()
    if made:
        try:
            store.save_summaries(folder_id, made)
        except StorageUnavailable as exc:  # only a cache: made again next time
            log.warning("summaries not stored: %s", exc)
    return found
