"""Message content for FETCH and SEARCH: ENVELOPE, BODYSTRUCTURE, BODY[section].

Everything here is pure: a :class:`MessageView` wraps the stored octets
(LF or CRLF line endings), presents them in CRLF form, and parses the MIME
tree once, lazily (see :mod:`imap.mime_entity`). The functions are:

- :func:`envelope` and :func:`body_structure` (:mod:`imap.mime_structure`);
- :func:`section` for ``BODY[section]`` and :func:`partial` for ``<o.n>``;
- :func:`header_value` and :func:`text_for_search`, decoded text for SEARCH
  (:mod:`imap.mime_text`).

Nested values
-------------
ENVELOPE and BODYSTRUCTURE are returned as plain Python values, which a
serializer turns into IMAP syntax (RFC 3501 §4):

=================  ==========================================================
Python             IMAP
=================  ==========================================================
``None``           ``NIL``
``int``            number
``str``            quoted string; a literal if it holds CR, LF, NUL or 8-bit
``bytes``          literal ``{n}`` CRLF octets
tuple / list       parenthesised list, items separated by one space
=================  ==========================================================

:func:`render` implements this table; ``imap.proto.formatting.format_value``
renders ``str`` the same way (it quotes safe ``bytes`` instead of always
using a literal, which only matters for message octets, sent as literals).

Sections
--------
:func:`section` takes any object with ``parts``, ``text`` and ``headers``
attributes, such as :class:`SectionSpec` or the parser's
``imap.proto.fetch.Section``: ``parts`` is the part path (``(2, 1)`` for
``2.1``, empty for the whole message), ``text`` one of ``HEADER``,
``HEADER.FIELDS``, ``HEADER.FIELDS.NOT``, ``TEXT``, ``MIME`` or None, and
``headers`` the field names of HEADER.FIELDS[.NOT].
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from imap.mime_entity import (
    MAX_MIME_DEPTH,
    MAX_MIME_PARTS,
    Entity,
    HeaderField,
    MessageView,
    header_block,
    to_crlf,
)
from imap.mime_structure import Nested, address_list, body_structure, envelope
from imap.mime_text import (
    decode_words,
    header_value,
    header_values,
    headers_for_search,
    text_for_search,
)

__all__ = [
    "MAX_MIME_DEPTH",
    "MAX_MIME_PARTS",
    "Entity",
    "HeaderField",
    "MessageView",
    "Nested",
    "SectionLike",
    "SectionSpec",
    "address_list",
    "body_structure",
    "decode_words",
    "envelope",
    "header_fields",
    "header_value",
    "header_values",
    "headers_for_search",
    "partial",
    "render",
    "resolve_part",
    "section",
    "text_for_search",
    "to_crlf",
]

SECTION_TEXTS = frozenset({"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"})


class SectionLike(Protocol):
    @property
    def parts(self) -> tuple[int, ...]: ...
    @property
    def text(self) -> str | None: ...
    @property
    def headers(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class SectionSpec:
    """``section-spec`` (RFC 3501 §6.4.5): ``SectionSpec((2, 1), "TEXT")`` is ``2.1.TEXT``."""

    parts: tuple[int, ...] = ()
    text: str | None = None
    headers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.text is not None and self.text.upper() not in SECTION_TEXTS:
            raise ValueError(f"unknown section text {self.text!r}")
        if any(part < 1 for part in self.parts):
            raise ValueError("part numbers start at 1")


def resolve_part(root: Entity, parts: Sequence[int]) -> Entity | None:
    """The entity a non-empty part path names (RFC 3501 §6.4.5), or None.

    Part 1 of a non-multipart message is the message itself, whose body is
    the part's content; the parts of a message/rfc822 are the parts of the
    message it encapsulates.
    """
    current, is_message = root, True
    for number in parts:
        if current.is_multipart:
            candidates: tuple[Entity, ...] = current.children
        elif is_message:
            candidates = (current,)
        elif current.message is not None:
            inner = current.message
            candidates = inner.children if inner.is_multipart else (inner,)
        else:
            return None
        if not 1 <= number <= len(candidates):
            return None
        current, is_message = candidates[number - 1], False
    return current


def header_fields(fields: tuple[HeaderField, ...], names: Sequence[str], keep: bool) -> bytes:
    """``HEADER.FIELDS`` (``keep``) or ``HEADER.FIELDS.NOT`` of a header's fields."""
    wanted = {name.lower() for name in names}
    chosen = b"".join(
        field.raw for field in fields if field.name and (field.name.lower() in wanted) == keep
    )
    return chosen + b"\r\n"  # the blank line ending the header is part of the result


def section(view: MessageView, spec: SectionLike) -> bytes:
    """The octets of ``BODY[spec]``; empty when the part does not exist.

    HEADER, HEADER.FIELDS[.NOT] and TEXT apply to the message itself, or
    after a part path to a message/rfc822 part; elsewhere they are empty.
    MIME needs a part path. HEADER.FIELDS results end with the blank line.
    """
    text = spec.text.upper() if spec.text is not None else None
    if not spec.parts and text in (None, "HEADER"):
        # The whole message, or its header: no need to parse the MIME structure.
        return view.raw if text is None else header_block(view.raw)
    root = view.root
    entity = resolve_part(root, spec.parts) if spec.parts else root
    if entity is None:
        return b""
    if text is None:
        return view.body_bytes(entity) if spec.parts else view.raw
    if text == "MIME":
        return view.header_bytes(entity) if spec.parts else b""
    message = entity.message if spec.parts else root
    if message is None:
        return b""
    if text == "HEADER":
        return view.header_bytes(message)
    if text == "TEXT":
        return view.body_bytes(message)
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        return header_fields(message.fields, spec.headers, keep=text == "HEADER.FIELDS")
    raise ValueError(f"unknown section text {spec.text!r}")


def partial(data: bytes, start: int, count: int | None) -> bytes:
    """``<start.count>`` of a section (RFC 3501 §6.4.5): empty past the end."""
    if start < 0 or (count is not None and count < 0):
        raise ValueError("partial origin and length are unsigned")
    return data[start:] if count is None else data[start : start + count]


# RFC 3501 §9 TEXT-CHAR: any 7-bit CHAR except CR and LF (and NUL, not a CHAR).
_QUOTABLE = re.compile(rb"[\x01-\x09\x0b\x0c\x0e-\x7f]*")


def _literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


def render(value: object) -> bytes:
    """IMAP syntax for a nested value (see the module table)."""
    kind = type(value)  # exact types first: ENVELOPE and BODYSTRUCTURE are all of these
    if kind is tuple or kind is list:
        return b"(" + b" ".join([render(item) for item in value]) + b")"  # type: ignore[attr-defined]
    if kind is str:
        data = value.encode("utf-8")  # type: ignore[attr-defined]
        if _QUOTABLE.fullmatch(data) is None:
            return _literal(data)
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    if value is None:
        return b"NIL"
    if isinstance(value, bool):
        raise TypeError("booleans have no IMAP representation")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("IMAP numbers are unsigned")
        return b"%d" % value
    if isinstance(value, str):
        return render(str(value))
    if isinstance(value, bytes | bytearray | memoryview):
        return _literal(bytes(value))
    if isinstance(value, list | tuple):
        return render(list(value))
    raise TypeError(f"cannot render {type(value).__name__} as IMAP data")
