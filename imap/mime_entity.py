"""A stored message as IMAP sees it: CRLF octets and a tree of MIME entities.

Maildir keeps messages with LF line endings; IMAP counts sizes and offsets
in the CRLF form (RFC 3501 §2.3.4 RFC822.SIZE, §6.4.5 partial fetch), so a
:class:`MessageView` converts once and everything else works on ``view.raw``.

The MIME structure is found from the boundaries themselves (RFC 2046 §5.1.1)
rather than through ``email.message_from_bytes``: every :class:`Entity`
records the offsets of its header, its body and its end in ``view.raw``, so
``BODY[1.2]`` is a slice of the original octets, never a re-encoding.
Header fields are split here too, keeping each field's exact octets for
``HEADER.FIELDS``; :mod:`email` is used for dates and encoded words only.

An entity's extent follows RFC 2046 §5.1.1: the CRLF before a delimiter line
belongs to the delimiter, so a part's body normally does not end in CRLF.
The tree is parsed lazily on first use and cached on the view.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar

CRLF: Final = b"\r\n"

# RFC 2046 sets no bound on nesting; RFC 9051 §11 asks servers to guard
# against resource exhaustion. These match Dovecot's message parser defaults.
MAX_MIME_DEPTH: Final = 100
MAX_MIME_PARTS: Final = 10_000

# RFC 2045 §5.1 token: CHAR except SPACE, CTLs and tspecials.
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
# Encodings under which a message/rfc822 body is itself a message (RFC 2046 §5.2.1).
_IDENTITY_ENCODINGS = frozenset({"7bit", "8bit", "binary"})

T = TypeVar("T")


def to_crlf(data: bytes) -> bytes:
    """Every line ending as CRLF; CRLF input is returned unchanged in content."""
    if b"\n" not in data:
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@dataclass(frozen=True, slots=True)
class HeaderField:
    """One header field: ``name`` as written, ``raw`` its octets with folding and CRLF.

    Lines that are neither a field nor a continuation keep ``name=""`` so that
    ``HEADER.FIELDS.NOT`` still returns them.
    """

    name: str
    raw: bytes

    @property
    def value(self) -> str:
        """The unfolded value without surrounding whitespace (RFC 5322 §2.2.3)."""
        colon = self.raw.find(b":")
        if not self.name or colon < 0:
            return ""
        unfolded = self.raw[colon + 1 :].replace(CRLF, b"")
        return unfolded.strip(b" \t\r\n").decode("utf-8", "replace")


# RFC 5322 §2.2 field name: printable US-ASCII except colon (the colon ends it).
_FIELD_NAME = re.compile(rb"[\x21-\x7e]+")


def parse_header_fields(block: bytes) -> tuple[HeaderField, ...]:
    """Split a header block (CRLF form) into fields, continuation lines attached."""
    fields: list[HeaderField] = []
    name = ""
    chunk: list[bytes] = []
    lines = block.split(CRLF)
    if lines and lines[-1] == b"":
        lines.pop()
    for line in lines:
        if line[:1] in (b" ", b"\t") and chunk:
            chunk.append(line)
            continue
        if chunk:
            fields.append(HeaderField(name, CRLF.join(chunk) + CRLF))
        colon = line.find(b":")
        raw_name = line[:colon].rstrip(b" \t") if colon > 0 else b""
        name = raw_name.decode("ascii") if _FIELD_NAME.fullmatch(raw_name) else ""
        chunk = [line]
    if chunk:
        fields.append(HeaderField(name, CRLF.join(chunk) + CRLF))
    return tuple(fields)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_params(text: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """``value; attr=val; ...`` (RFC 2045 §5.1, RFC 2183 §2): the value and the pairs.

    Comments are dropped, quoted values unquoted; RFC 2231 continuations are
    passed through untouched, as IMAP clients expect to decode them.
    """
    segments: list[str] = []
    current: list[str] = []
    depth = 0
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
            if not depth:
                current.append(char)
        elif char == "\\" and (quoted or depth):
            escaped = True
            if quoted:
                current.append(char)
        elif quoted:
            current.append(char)
            quoted = char != '"'
        elif depth:
            depth += {"(": 1, ")": -1}.get(char, 0)
        elif char == "(":
            depth = 1
        elif char == '"':
            quoted = True
            current.append(char)
        elif char == ";":
            segments.append("".join(current))
            current = []
        else:
            current.append(char)
    segments.append("".join(current))
    params: list[tuple[str, str]] = []
    for segment in segments[1:]:
        attribute, equals, value = segment.partition("=")
        attribute = attribute.strip()
        if equals and attribute:
            params.append((attribute, _unquote(value.strip())))
    return segments[0].strip(), tuple(params)


@dataclass(frozen=True, slots=True)
class Entity:
    """A MIME entity: header at ``raw[start:body_start]``, body up to ``end``.

    ``maintype``/``subtype`` are lower case, after defaults (RFC 2045 §5.2,
    RFC 2046 §5.1.5 for digests). ``params`` are as written; when there is no
    Content-Type the default ``charset=US-ASCII`` is filled in. A multipart has
    ``children``; a message/rfc822 in an identity encoding has ``message``,
    the encapsulated message spanning this entity's body.
    """

    start: int
    body_start: int
    end: int
    fields: tuple[HeaderField, ...]
    maintype: str
    subtype: str
    params: tuple[tuple[str, str], ...]
    children: tuple["Entity", ...] = ()
    message: "Entity | None" = None

    @property
    def is_multipart(self) -> bool:
        return bool(self.children)

    @property
    def encoding(self) -> str:
        """Content-Transfer-Encoding in lower case, ``7bit`` by default (RFC 2045 §6.1)."""
        value = self.header("Content-Transfer-Encoding")
        return value.strip().lower() if value else "7bit"

    def header(self, name: str) -> str | None:
        """The unfolded value of the first field called ``name``, else None."""
        for field in self.fields:
            if field.name.lower() == name.lower():
                return field.value
        return None

    def headers(self, name: str) -> list[str]:
        return [field.value for field in self.fields if field.name.lower() == name.lower()]

    def param(self, name: str) -> str | None:
        for attribute, value in self.params:
            if attribute.lower() == name.lower():
                return value
        return None

    def walk(self) -> "list[Entity]":
        """This entity and all below it, depth first, encapsulated messages included."""
        found = [self]
        for child in self.children:
            found.extend(child.walk())
        if self.message is not None:
            found.extend(self.message.walk())
        return found


def _header_end(raw: bytes, start: int, end: int) -> tuple[int, int]:
    """``(header_end, body_start)``: the header excludes, the body follows, the blank line."""
    if raw.startswith(CRLF, start) and start + 2 <= end:
        return start, start + 2
    blank = raw.find(b"\r\n\r\n", start, end)
    if blank < 0:
        return end, end  # header only, no body
    return blank + 2, blank + 4


def message_header_fields(raw: bytes) -> tuple[HeaderField, ...]:
    """The fields of a message's (or a header block's) header, nothing else parsed."""
    return parse_header_fields(raw[: _header_end(raw, 0, len(raw))[0]])


def header_block(raw: bytes) -> bytes:
    """The message header with the blank line that ends it (``BODY[HEADER]``), unparsed."""
    return raw[: _header_end(raw, 0, len(raw))[1]]


def split_multipart(raw: bytes, start: int, end: int, boundary: bytes) -> list[tuple[int, int]]:
    """The ``(start, end)`` of each body part between delimiter lines (RFC 2046 §5.1.1).

    A delimiter line is ``--boundary`` at the start of a line, optionally
    ``--`` (the close delimiter), then transport padding (spaces, tabs).
    The CRLF before it ends the previous part. Without a close delimiter the
    last part runs to ``end``; preamble and epilogue are dropped.
    """
    dash = b"--" + boundary
    spans: list[tuple[int, int]] = []
    part_start: int | None = None
    pos = start
    while True:
        if pos == start and raw.startswith(dash, start) and start + len(dash) <= end:
            cut = line = start
        else:
            found = raw.find(CRLF + dash, max(pos - 2, start), end)
            if found < 0:
                break
            cut, line = found, found + 2
        after = line + len(dash)
        closing = raw.startswith(b"--", after) and after + 2 <= end
        tail = after + 2 if closing else after
        while tail < end and raw[tail] in b" \t":
            tail += 1
        if tail < end and not raw.startswith(CRLF, tail):
            pos = line + 1  # "--boundaryX": a longer line, not a delimiter
            continue
        if part_start is not None:
            spans.append((part_start, max(cut, part_start)))
        if closing:
            return spans
        part_start = pos = min(tail + 2, end)
    if part_start is not None:
        spans.append((part_start, end))
    return spans


class _Budget:
    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts = 0


def parse_entity(
    raw: bytes,
    start: int,
    end: int,
    *,
    digest: bool = False,
    depth: int = 0,
    budget: _Budget | None = None,
) -> Entity:
    """Parse the entity at ``raw[start:end]``; ``digest`` if its parent is multipart/digest."""
    budget = budget or _Budget()
    budget.parts += 1
    header_end, body_start = _header_end(raw, start, end)
    fields = parse_header_fields(raw[start:header_end])
    maintype, subtype, params = _content_type(fields, digest)
    entity = Entity(start, body_start, end, fields, maintype, subtype, params)
    nested_ok = depth < MAX_MIME_DEPTH and budget.parts < MAX_MIME_PARTS
    if maintype == "multipart":
        boundary = entity.param("boundary")
        spans = (
            split_multipart(raw, body_start, end, boundary.encode("utf-8"))
            if boundary and nested_ok
            else []
        )
        # Past MAX_MIME_PARTS the remaining parts are dropped, not parsed.
        spans = spans[: max(1, MAX_MIME_PARTS - budget.parts)]
        if not spans:
            # Unusable multipart: shown as one opaque text part, since the
            # BODYSTRUCTURE grammar needs at least one body (RFC 3501 §9).
            return Entity(start, body_start, end, fields, "text", "plain", params)
        children = tuple(
            parse_entity(raw, s, e, digest=subtype == "digest", depth=depth + 1, budget=budget)
            for s, e in spans
        )
        return Entity(start, body_start, end, fields, maintype, subtype, params, children)
    is_message = (maintype, subtype) == ("message", "rfc822")
    if is_message and nested_ok and entity.encoding in _IDENTITY_ENCODINGS:
        message = parse_entity(raw, body_start, end, depth=depth + 1, budget=budget)
        return Entity(start, body_start, end, fields, maintype, subtype, params, (), message)
    return entity


def _content_type(
    fields: tuple[HeaderField, ...], digest: bool
) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    default = ("message", "rfc822", ()) if digest else ("text", "plain", (("charset", "US-ASCII"),))
    field = next((f for f in fields if f.name.lower() == "content-type"), None)
    if field is None:
        return default
    value, params = parse_params(field.value)
    maintype, slash, subtype = value.partition("/")
    maintype, subtype = maintype.strip().lower(), subtype.strip().lower()
    if not slash or not _TOKEN.fullmatch(maintype) or not _TOKEN.fullmatch(subtype):
        # RFC 2045 §5.2: an invalid Content-Type is taken as text/plain.
        return "text", "plain", (("charset", "US-ASCII"),)
    return maintype, subtype, params


class MessageView:
    """A message in CRLF form, its MIME tree parsed on first use.

    ``raw`` is the message as IMAP presents it; ``size`` is RFC822.SIZE.
    :meth:`memo` caches derived values (search text, envelope) per view.
    """

    __slots__ = ("_memo", "_root", "raw")

    def __init__(self, data: bytes) -> None:
        self.raw: bytes = to_crlf(data)
        self._root: Entity | None = None
        self._memo: dict[str, object] = {}

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def root(self) -> Entity:
        if self._root is None:
            self._root = parse_entity(self.raw, 0, len(self.raw))
        return self._root

    def header_bytes(self, entity: Entity) -> bytes:
        """The entity's header including the blank line that ends it."""
        return self.raw[entity.start : entity.body_start]

    def body_bytes(self, entity: Entity) -> bytes:
        return self.raw[entity.body_start : entity.end]

    def memo(self, key: str, compute: Callable[[], T]) -> T:
        """``compute()`` once per view and key."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"<MessageView {self.size} octets>"
