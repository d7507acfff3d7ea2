"""FETCH attributes (RFC 3501 §6.4.5, §9 ``fetch-att``; RFC 7162 MODSEQ).

An attribute is either a :class:`FetchAttr` (a fixed data item) or a
:class:`BodySection` (``BODY[section]<partial>`` and ``BODY.PEEK[...]``).
The macros ALL, FAST and FULL are expanded here; the server never sees them.

A section is a part path (``1.2.3``, empty for the whole message) and an
optional :class:`SectionText`. RFC 3501 §6.4.5 allows MIME only after a part
number, and ``HEADER.FIELDS`` / ``HEADER.FIELDS.NOT`` carry a header list.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from imap.proto.errors import NotParseable
from imap.proto.limits import MAX_NESTING_DEPTH, MAX_NUMBER64
from imap.proto.tokens import (
    expect,
    fail,
    peek,
    read_astring,
    read_keyword,
    read_list,
    read_number,
    read_sp,
)


class FetchAttr(StrEnum):
    ENVELOPE = "ENVELOPE"
    FLAGS = "FLAGS"
    INTERNALDATE = "INTERNALDATE"
    RFC822 = "RFC822"
    RFC822_HEADER = "RFC822.HEADER"
    RFC822_SIZE = "RFC822.SIZE"
    RFC822_TEXT = "RFC822.TEXT"
    BODY = "BODY"  # the non-extensible BODYSTRUCTURE
    BODYSTRUCTURE = "BODYSTRUCTURE"
    UID = "UID"
    MODSEQ = "MODSEQ"  # RFC 7162 §3.1.4.1


class SectionText(StrEnum):
    HEADER = "HEADER"
    HEADER_FIELDS = "HEADER.FIELDS"
    HEADER_FIELDS_NOT = "HEADER.FIELDS.NOT"
    TEXT = "TEXT"
    MIME = "MIME"


# RFC 3501 §6.4.5
MACROS: dict[str, tuple[FetchAttr, ...]] = {
    "ALL": (FetchAttr.FLAGS, FetchAttr.INTERNALDATE, FetchAttr.RFC822_SIZE, FetchAttr.ENVELOPE),
    "FAST": (FetchAttr.FLAGS, FetchAttr.INTERNALDATE, FetchAttr.RFC822_SIZE),
    "FULL": (
        FetchAttr.FLAGS,
        FetchAttr.INTERNALDATE,
        FetchAttr.RFC822_SIZE,
        FetchAttr.ENVELOPE,
        FetchAttr.BODY,
    ),
}

_ATT_NAME = re.compile(rb"[A-Za-z0-9.]+")
_SECTION_TEXT = re.compile(rb"[A-Za-z]+(?:\.[A-Za-z]+)*")
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")  # RFC 5322 §3.6.8


@dataclass(frozen=True, slots=True)
class Section:
    """``section-spec``: part path, then HEADER/HEADER.FIELDS[.NOT]/TEXT/MIME."""

    parts: tuple[int, ...] = ()
    text: SectionText | None = None
    headers: tuple[str, ...] = ()

    def to_bytes(self) -> bytes:
        """The section as written between the brackets, e.g. ``1.2.HEADER``."""
        pieces = [b"%d" % part for part in self.parts]
        if self.text is not None:
            pieces.append(self.text.encode("ascii"))
        spec = b".".join(pieces)
        if self.headers:
            spec += b" (" + b" ".join(name.encode("ascii") for name in self.headers) + b")"
        return spec


@dataclass(frozen=True, slots=True)
class BodySection:
    """``BODY[section]<origin.length>``, or ``BODY.PEEK[...]`` with ``peek``."""

    section: Section = Section()
    peek: bool = False
    partial: tuple[int, int] | None = None  # (origin, length)

    def response_name(self) -> bytes:
        """The item name in the FETCH response: ``BODY[...]<origin>`` (RFC 3501 §7.4.2).

        PEEK is not echoed, and the partial keeps only its origin.
        """
        name = b"BODY[" + self.section.to_bytes() + b"]"
        if self.partial is not None:
            name += b"<%d>" % self.partial[0]
        return name


FetchItem = FetchAttr | BodySection


def _read_field_name(buf: bytes, pos: int) -> tuple[str, int]:
    raw, pos = read_astring(buf, pos)
    if _FIELD_NAME.fullmatch(raw) is None:
        raise NotParseable("invalid header field name")
    return raw.decode("ascii"), pos


def read_section(buf: bytes, pos: int) -> tuple[Section, int]:
    """``section = "[" [section-spec] "]"``."""
    pos = expect(buf, pos, b"[", "'['")
    parts: list[int] = []
    needs_text = False
    while peek(buf, pos).isdigit():
        part, pos = read_number(buf, pos, nonzero=True)
        parts.append(part)
        if len(parts) > MAX_NESTING_DEPTH:
            raise NotParseable("section part nested too deeply", code="LIMIT")
        needs_text = peek(buf, pos) == b"."
        if not needs_text:
            break
        pos += 1
        if not peek(buf, pos).isdigit():
            break
        needs_text = False
    text: SectionText | None = None
    headers: tuple[str, ...] = ()
    if needs_text or (not parts and peek(buf, pos) != b"]"):
        match = _SECTION_TEXT.match(buf, pos)
        if match is None:
            raise fail(buf, pos, "section text")
        try:
            text = SectionText(match.group().decode("ascii").upper())
        except ValueError:
            raise NotParseable("unknown section text") from None
        pos = match.end()
        if text is SectionText.MIME and not parts:
            raise NotParseable("MIME requires a part number")
        if text in (SectionText.HEADER_FIELDS, SectionText.HEADER_FIELDS_NOT):
            pos = read_sp(buf, pos)
            headers, pos = read_list(buf, pos, _read_field_name)
    pos = expect(buf, pos, b"]", "']'")
    return Section(tuple(parts), text, headers), pos


def _read_partial(buf: bytes, pos: int) -> tuple[tuple[int, int], int]:
    pos = expect(buf, pos, b"<", "'<'")
    origin, pos = read_number(buf, pos)
    pos = expect(buf, pos, b".", "'.'")
    length, pos = read_number(buf, pos, nonzero=True)
    pos = expect(buf, pos, b">", "'>'")
    return (origin, length), pos


def read_fetch_att(buf: bytes, pos: int) -> tuple[FetchItem, int]:
    """One ``fetch-att``; macros are not attributes and are refused here."""
    match = _ATT_NAME.match(buf, pos)
    if match is None:
        raise fail(buf, pos, "fetch attribute")
    name, pos = match.group().decode("ascii").upper(), match.end()
    if name in ("BODY", "BODY.PEEK") and peek(buf, pos) == b"[":
        section, pos = read_section(buf, pos)
        partial = None
        if peek(buf, pos) == b"<":
            partial, pos = _read_partial(buf, pos)
        return BodySection(section, name == "BODY.PEEK", partial), pos
    try:
        return FetchAttr(name), pos
    except ValueError:
        raise NotParseable("unknown fetch attribute") from None


def read_fetch_items(buf: bytes, pos: int) -> tuple[tuple[FetchItem, ...], int]:
    """A macro, one attribute, or a parenthesised list of attributes."""
    if peek(buf, pos) == b"(":
        return read_list(buf, pos, read_fetch_att)
    match = _ATT_NAME.match(buf, pos)
    if match is not None and match.group().upper().decode("ascii") in MACROS:
        return MACROS[match.group().upper().decode("ascii")], match.end()
    item, pos = read_fetch_att(buf, pos)
    return (item,), pos


def read_fetch_modifiers(buf: bytes, pos: int) -> tuple[int | None, int]:
    """``"(" fetch-modifier *(SP fetch-modifier) ")"`` (RFC 4466 §2.4).

    Only CHANGEDSINCE (RFC 7162 §3.1.4.1) is known; returns its value.
    """
    changed_since: int | None = None

    def modifier(b: bytes, p: int) -> tuple[None, int]:
        nonlocal changed_since
        name, p = read_keyword(b, p)
        if name != "CHANGEDSINCE":
            raise NotParseable("unknown fetch modifier")
        if changed_since is not None:
            raise NotParseable("CHANGEDSINCE given twice")
        p = read_sp(b, p)
        changed_since, p = read_number(b, p, maximum=MAX_NUMBER64)
        return None, p

    _, pos = read_list(buf, pos, modifier)
    return changed_since, pos


def sets_seen(items: Iterable[FetchItem]) -> bool:
    """Whether fetching these items sets ``\\Seen`` (RFC 3501 §6.4.5)."""
    return any(
        (isinstance(item, BodySection) and not item.peek)
        or item in (FetchAttr.RFC822, FetchAttr.RFC822_TEXT)
        for item in items
    )
