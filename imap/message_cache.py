"""What FETCH and SEARCH derive from a message file, remembered per process.

A Maildir file's content never changes (only its name, with its flags), so
whatever is computed from it can be kept under its base name, which is
unique (``<time>.M<usec>P<pid>Q<n>.<host>``, Maildir's own guarantee) and
survives renames. This is the role of Dovecot's ``dovecot.index.cache``: a
client listing a folder asks for the same ENVELOPE, BODYSTRUCTURE and header
fields over and over, and answering from here costs neither a file read nor
a MIME parse.

A :class:`Summary` holds the header block (CRLF form, with its blank line:
enough for ENVELOPE, ``BODY[HEADER]``, ``BODY[HEADER.FIELDS ...]`` and the
header criteria of SEARCH), and what was derived from it or from the whole
message once something asked: the rendered ENVELOPE, BODY, BODYSTRUCTURE,
header sections, decoded fields for SEARCH, rendered FETCH lines. :class:`SummaryCache` is an LRU
bounded by the octets it holds; it is shared by every session and used from
worker threads and the event loop alike.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from imap.mime import MessageView, body_structure, decode_words, header_fields, render
from imap.mime_entity import Entity, header_block, message_header_fields
from imap.mime_structure import envelope_of

# What one entry costs beyond its octets (the object, its key, the LRU links).
ENTRY_OVERHEAD = 400
# Field lists and item lists remembered per message (clients use one or two).
MAX_SECTIONS = 2
MAX_LINES = 2
# The default bound: about 25,000 messages with ordinary headers.
DEFAULT_MAX_BYTES = 32 * 1024 * 1024


@dataclass(slots=True)
class Summary:
    header: bytes  # the header block in CRLF form, with the blank line that ends it
    envelope_data: bytes | None = None  # the rendered ENVELOPE, once asked for
    body: bytes | None = None  # the rendered BODY, once asked for
    bodystructure: bytes | None = None  # the rendered BODYSTRUCTURE, once asked for
    # Decoded values of the fields SEARCH asked about (a client's quick filter
    # asks for the same few over and over); a few short strings per message.
    decoded: dict[str, list[str]] | None = None
    # BODY[HEADER.FIELDS (...)] as rendered for the field lists clients asked
    # for (each client asks for its own list, for every message it shows).
    sections: dict[tuple[str, tuple[str, ...]], bytes] | None = None
    # FETCH responses without their sequence number, per item list, with the
    # index entry (flags, mod-sequence) they were rendered for: a client lists
    # the same folder with the same items again and again.
    lines: dict[int, tuple[object, bytes]] | None = None
    referenced: bool = False  # used since the clock hand last passed (see SummaryCache)

    @property
    def cost(self) -> int:
        extra = len(self.body or b"") + len(self.bodystructure or b"")
        extra += sum(len(data) for data in (self.sections or {}).values())
        extra += sum(len(line) for _, line in (self.lines or {}).values())
        return ENTRY_OVERHEAD + len(self.header) + len(self.envelope_data or b"") + extra

    @property
    def envelope(self) -> bytes:
        """The rendered ENVELOPE (RFC 3501 §7.4.2): the header fields only, no MIME parse."""
        if self.envelope_data is None:
            header = self.header
            fields = message_header_fields(header)
            root = Entity(0, len(header), len(header), fields, "text", "plain", ())
            self.envelope_data = render(envelope_of(root))
        return self.envelope_data

    def header_view(self) -> MessageView:
        """A view of the header alone: the same fields and header sections as the message."""
        return MessageView(self.header)

    def line(self, plan: int, entry: object) -> bytes | None:
        """The items rendered for ``plan`` if that was for this very index entry."""
        if self.lines is None:
            return None
        hit = self.lines.get(plan)
        return hit[1] if hit is not None and hit[0] is entry else None

    def remember_line(self, plan: int, entry: object, line: bytes) -> bool:
        """Keep a rendering; True if it is a new item list (the cost grew)."""
        if self.lines is None:
            self.lines = {}
        new = plan not in self.lines
        if new and len(self.lines) >= MAX_LINES:
            self.lines.clear()
        self.lines[plan] = (entry, line)
        return new

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
        key = "\0" + name.lower()  # beside the decoded values, under a key no field has
        if self.decoded is None:
            self.decoded = {}
        folded = self.decoded.get(key)
        if folded is None:
            folded = self.decoded[key] = ["\0".join(self.header_values(name)).casefold()]
        return folded[0]

    def header_values(self, name: str) -> list[str]:
        """Every field ``name`` of the header, unfolded and decoded (for SEARCH)."""
        key = name.lower()
        if self.decoded is None:
            self.decoded = {}
        values = self.decoded.get(key)
        if values is None:
            fields = message_header_fields(self.header)  # the fields only: no MIME parse
            values = [decode_words(f.value) for f in fields if f.name.lower() == key]
            self.decoded[key] = values
        return values

    def add_structures(self, view: MessageView) -> None:
        """Fill in BODY and BODYSTRUCTURE from the whole message."""
        if self.bodystructure is None:
            self.bodystructure = render(body_structure(view, extended=True))
        if self.body is None:
            self.body = render(body_structure(view, extended=False))


def summarize(view: MessageView) -> Summary:
    """The summary of a whole message (the rest is derived when asked for)."""
    return Summary(header_block(view.raw))


class SummaryCache:
    """An LRU of summaries bounded by their cost, approximated the CLOCK way.

    A hit only sets the entry's ``referenced`` bit (no lock, no reordering:
    listing a folder looks up every message); eviction gives a referenced
    entry a second chance at the young end instead of dropping it.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, Summary] = OrderedDict()
        self._costs: dict[str, int] = {}
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
        """Add or re-account an entry (after its structures were filled in)."""
        cost = summary.cost
        if cost > self.max_bytes:
            return
        with self._lock:
            self._bytes += cost - self._costs.get(base_name, 0)
            self._entries[base_name] = summary
            self._costs[base_name] = cost
            chances = len(self._entries)
            while self._bytes > self.max_bytes:
                old, entry = self._entries.popitem(last=False)
                if entry.referenced and chances > 0:
                    chances -= 1
                    entry.referenced = False
                    self._entries[old] = entry
                    continue
                self._bytes -= self._costs.pop(old)
