"""Decoded text of a message for SEARCH (RFC 3501 §6.4.4).

SEARCH compares strings against what the user sees, so header values are
RFC 2047 decoded and bodies are transfer-decoded (RFC 2045 §6) and converted
from their charset. Undecodable input never fails a search: unknown charsets
fall back to UTF-8 and bad octets become U+FFFD. HTML parts are reduced to
their text so that markup does not match.
"""

import binascii
import codecs
import html
import re

from imap.mime_entity import Entity, MessageView

# RFC 2047 §2 encoded-word; the charset may carry an RFC 2231 §5 language.
_ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([QqBb])\?([^?\s]*)\?=")
_BETWEEN_WORDS = re.compile(r"[ \t\r\n]*")
_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")
_HTML_DROP = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_HTML_TAG = re.compile(r"<[^>]*>")


def _codec(charset: str | None) -> str:
    try:
        return codecs.lookup(charset or "utf-8").name
    except LookupError:
        return "utf-8"


def _word_bytes(encoding: str, text: str) -> bytes:
    if encoding in "Qq":
        # RFC 2047 §4.2: "_" is a space, "=XX" an octet.
        data = text.replace("_", " ").encode("ascii", "replace")
        return _QP_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), data)
    return _base64(text.encode("ascii", "replace"))


def decode_words(value: str) -> str:
    """RFC 2047 decoding; whitespace between adjacent encoded words is dropped (§6.2).

    Consecutive words in the same charset are joined as octets before
    decoding, since encoders may split a multi-octet character across words.
    """
    out: list[str] = []
    pending: list[bytes] = []
    pending_charset = ""
    pos = 0

    def flush() -> None:
        if pending:
            out.append(b"".join(pending).decode(_codec(pending_charset), "replace"))
            pending.clear()

    for match in _ENCODED_WORD.finditer(value):
        gap = value[pos : match.start()]
        if pos == 0 or _BETWEEN_WORDS.fullmatch(gap) is None:
            flush()
            out.append(gap)
        charset = match.group(1).lower()
        if charset != pending_charset:
            flush()
            pending_charset = charset
        pending.append(_word_bytes(match.group(2), match.group(3)))
        pos = match.end()
    flush()
    out.append(value[pos:])
    return "".join(out)


def header_values(view: MessageView, name: str) -> list[str]:
    """Every field ``name`` of the message header, unfolded and decoded."""
    return [decode_words(value) for value in view.root.headers(name)]


def header_value(view: MessageView, name: str) -> str | None:
    """The first field ``name`` of the message header, decoded; None if absent."""
    values = header_values(view, name)
    return values[0] if values else None


def _base64(data: bytes) -> bytes:
    data = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
    data = data[: len(data) - len(data) % 4] if len(data) % 4 == 1 else data
    try:
        return binascii.a2b_base64(data + b"=" * (-len(data) % 4))
    except binascii.Error:
        return b""


def transfer_decode(entity: Entity, body: bytes) -> bytes:
    """The body octets with Content-Transfer-Encoding undone (RFC 2045 §6)."""
    encoding = entity.encoding
    if encoding == "base64":
        return _base64(body)
    if encoding == "quoted-printable":
        return binascii.a2b_qp(body)
    return body


def entity_text(view: MessageView, entity: Entity) -> str:
    """A text/* leaf as a string, transfer-decoded and charset-converted."""
    data = transfer_decode(entity, view.body_bytes(entity))
    text = data.decode(_codec(entity.param("charset")), "replace")
    if entity.subtype == "html":
        text = html.unescape(_HTML_TAG.sub(" ", _HTML_DROP.sub(" ", text)))
    return text


def _header_text(entity: Entity) -> str:
    return "".join(
        f"{field.name}: {decode_words(field.value)}\n" for field in entity.fields if field.name
    )


def text_for_search(view: MessageView) -> str:
    """The decoded body text (SEARCH BODY): text parts and encapsulated headers."""

    def compute() -> str:
        chunks: list[str] = []
        for entity in view.root.walk():
            if entity.message is not None:
                chunks.append(_header_text(entity.message))
            elif not entity.is_multipart and entity.maintype == "text":
                chunks.append(entity_text(view, entity))
        return "\n".join(chunks)

    return view.memo("search_text", compute)


def headers_for_search(view: MessageView) -> str:
    """The message header, each field decoded, one per line (part of SEARCH TEXT)."""
    return view.memo("search_headers", lambda: _header_text(view.root))
