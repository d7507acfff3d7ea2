"""ENVELOPE and BODY/BODYSTRUCTURE (RFC 3501 §7.4.2) as nested values.

Values follow the convention of :mod:`imap.mime`: ``None`` is NIL, ``int``
a number, ``str`` a string, tuples parenthesised lists.

ENVELOPE header values are the unfolded field bodies, encoded words left
as they are (RFC 3501 §7.4.2: "the server MUST NOT decode"). Addresses are
``(name adl mailbox host)``; a group is a ``(NIL NIL name NIL)`` marker,
its members, and ``(NIL NIL NIL NIL)``. An address without ``@`` gets the
host ``""`` (not NIL, which would read as a group marker).

BODYSTRUCTURE media types, subtypes, encodings, parameter names and
disposition types are upper-cased, as in the RFC's examples; parameter
values keep their case. Sizes are octets of the part's body in CRLF form;
line counts count CRLFs plus a final unterminated line (the CRLF before a
boundary belongs to the boundary, RFC 2046 §5.1.1).
"""

from dataclasses import dataclass

from imap.mime_entity import Entity, MessageView, parse_params

Nested = None | int | str | tuple["Nested", ...]

_ENVELOPE_ADDRESSES = ("From", "Sender", "Reply-To", "To", "Cc", "Bcc")
_ENVELOPE_FIELDS = frozenset(
    {"date", "subject", "in-reply-to", "message-id", *(n.lower() for n in _ENVELOPE_ADDRESSES)})
_SPECIALS = frozenset('()<>@,;:\\".[]')


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "atom", "quoted", "comment", "literal" (domain literal) or a special
    text: str
    spaced: bool  # whitespace (or a comment) came before it


def _tokens(text: str) -> list[_Token]:
    """RFC 5322 §3.2 lexical tokens of an address list (lenient)."""
    out: list[_Token] = []
    i, n, spaced = 0, len(text), False
    while i < n:
        char = text[i]
        if char in " \t\r\n":
            spaced, i = True, i + 1
        elif char == '"':
            j, chars = i + 1, []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                chars.append(text[j])
                j += 1
            out.append(_Token("quoted", "".join(chars), spaced))
            spaced, i = False, j + 1
        elif char == "(":
            j, depth, chars = i + 1, 1, []
            while j < n:
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                elif text[j] == "(":
                    depth += 1
                elif text[j] == ")":
                    depth -= 1
                    if not depth:
                        break
                chars.append(text[j])
                j += 1
            out.append(_Token("comment", "".join(chars).strip(), spaced))
            spaced, i = True, j + 1
        elif char == "[":
            j = text.find("]", i)
            j = n if j < 0 else j + 1
            out.append(_Token("literal", text[i:j], spaced))
            spaced, i = False, j
        elif char in _SPECIALS:
            out.append(_Token(char, char, spaced))
            spaced, i = False, i + 1
        else:
            j = i
            while j < n and text[j] not in _SPECIALS and text[j] not in " \t\r\n":
                j += 1
            out.append(_Token("atom", text[i:j], spaced))
            spaced, i = False, j
    return out


def _phrase(tokens: list[_Token]) -> str | None:
    """A display name: words and dots, one space wherever the input had some."""
    words = [t for t in tokens if t.kind in ("atom", "quoted", ".")]
    text = "".join((" " if t.spaced and k else "") + t.text for k, t in enumerate(words))
    return text or None


def _addr_spec(tokens: list[_Token]) -> tuple[str | None, str]:
    """``(mailbox, host)`` from the tokens of ``local-part@domain``."""
    tokens = [t for t in tokens if t.kind != "comment"]
    at = max((k for k, t in enumerate(tokens) if t.kind == "@"), default=-1)
    local = "".join(t.text for t in (tokens[:at] if at >= 0 else tokens))
    host = "".join(t.text for t in tokens[at + 1 :]) if at >= 0 else ""
    return local or None, host


def _mailbox(tokens: list[_Token]) -> tuple[Nested, ...] | None:
    """One address ``(name adl mailbox host)``, or None if the tokens are empty."""
    if not any(t.kind != "comment" for t in tokens):
        return None
    opening = next((k for k, t in enumerate(tokens) if t.kind == "<"), -1)
    if opening < 0:
        comments = [t.text for t in tokens if t.kind == "comment" and t.text]
        mailbox, host = _addr_spec(tokens)
        return (comments[0] if comments else None, None, mailbox, host)
    closing = next((k for k, t in enumerate(tokens) if t.kind == ">"), len(tokens))
    name = _phrase(tokens[:opening])
    inner = tokens[opening + 1 : closing]
    adl = None
    colon = next((k for k, t in enumerate(inner) if t.kind == ":"), -1)
    if colon >= 0:  # obs-route: <@relay1,@relay2:user@host> (RFC 5322 §4.4)
        adl = "".join(t.text for t in inner[:colon] if t.kind != "comment") or None
        inner = inner[colon + 1 :]
    mailbox, host = _addr_spec(inner)
    return (name, adl, mailbox, host)


def address_list(value: str | None) -> tuple[Nested, ...] | None:
    """The ENVELOPE address list for a header value; None (NIL) when empty."""
    if value is None:
        return None
    out: list[Nested] = []
    group: list[Nested] | None = None
    current: list[_Token] = []
    in_angle = False

    def flush() -> None:
        address = _mailbox(current)
        if address is not None:
            (group if group is not None else out).append(address)
        current.clear()

    for token in _tokens(value):
        if token.kind == "<":
            in_angle = True
        elif token.kind == ">":
            in_angle = False
        if in_angle or token.kind not in (":", ",", ";"):
            current.append(token)
        elif token.kind == ":" and group is None:
            group = [(None, None, _phrase(current) or "", None)]
            current.clear()
        elif token.kind == ",":
            flush()
        elif token.kind == ";" and group is not None:
            flush()
            out.extend(group)
            out.append((None, None, None, None))
            group = None
        else:
            current.append(token)
    flush()
    if group is not None:  # unterminated group: close it
        out.extend(group)
        out.append((None, None, None, None))
    return tuple(out) or None


def envelope_of(entity: Entity) -> tuple[Nested, ...]:
    """ENVELOPE of a message (the root, or an encapsulated message/rfc822)."""
    first: dict[str, str] = {}  # lower-case name → value of its first field
    for field in entity.fields:
        if field.name:
            name = field.name.lower()
            if name in _ENVELOPE_FIELDS and name not in first:
                first[name] = field.value
    addresses = {name: address_list(first.get(name.lower())) for name in _ENVELOPE_ADDRESSES}
    # RFC 3501 §7.4.2: absent or empty Sender and Reply-To default to From.
    sender = addresses["Sender"] or addresses["From"]
    reply_to = addresses["Reply-To"] or addresses["From"]
    return (
        first.get("date"),
        first.get("subject"),
        addresses["From"],
        sender,
        reply_to,
        addresses["To"],
        addresses["Cc"],
        addresses["Bcc"],
        first.get("in-reply-to"),
        first.get("message-id"),
    )


def envelope(view: MessageView) -> tuple[Nested, ...]:
    """The ENVELOPE fetch item of the message."""
    return view.memo("envelope", lambda: envelope_of(view.root))


def _params(pairs: tuple[tuple[str, str], ...]) -> tuple[str, ...] | None:
    """``body-fld-param``: ``(name value ...)`` or NIL when there are none."""
    return tuple(item for name, value in pairs for item in (name.upper(), value)) or None


def _disposition(entity: Entity) -> Nested:
    value = entity.header("Content-Disposition")
    if value is None:
        return None
    kind, pairs = parse_params(value)
    return (kind.upper(), _params(pairs)) if kind else None


def _language(entity: Entity) -> Nested:
    value = entity.header("Content-Language")
    if value is None:
        return None
    tags = tuple(t.strip() for t in parse_params(value)[0].split(",") if t.strip())
    if not tags:
        return None
    return tags[0] if len(tags) == 1 else tags


def _lines(body: bytes) -> int:
    return body.count(b"\r\n") + (1 if body and not body.endswith(b"\r\n") else 0)


def structure_of(raw: bytes, entity: Entity, extended: bool) -> tuple[Nested, ...]:
    """BODY (``extended=False``) or BODYSTRUCTURE of one entity (RFC 3501 §9 ``body``)."""
    location = entity.header("Content-Location")
    if entity.is_multipart:
        parts: tuple[Nested, ...] = tuple(
            structure_of(raw, child, extended) for child in entity.children
        )
        multipart = (*parts, entity.subtype.upper())
        if not extended:
            return multipart
        # body-ext-mpart: params, disposition, language, location.
        return (
            *multipart,
            _params(entity.params),
            _disposition(entity),
            _language(entity),
            location,
        )
    body = raw[entity.body_start : entity.end]
    fields: tuple[Nested, ...] = (
        entity.maintype.upper(),
        entity.subtype.upper(),
        _params(entity.params),
        entity.header("Content-ID"),
        entity.header("Content-Description"),
        entity.encoding.upper(),
        len(body),
    )
    if entity.message is not None:
        fields += (
            envelope_of(entity.message),
            structure_of(raw, entity.message, extended),
            _lines(body),
        )
    elif entity.maintype == "text":
        fields += (_lines(body),)
    if not extended:
        return fields
    # body-ext-1part: md5, disposition, language, location.
    return (
        *fields,
        entity.header("Content-MD5"),
        _disposition(entity),
        _language(entity),
        location,
    )


def body_structure(view: MessageView, extended: bool) -> tuple[Nested, ...]:
    """BODY (``extended=False``) or BODYSTRUCTURE (``extended=True``) of the message."""
    key = "bodystructure" if extended else "body"
    return view.memo(key, lambda: structure_of(view.raw, view.root, extended))
