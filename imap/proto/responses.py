"""Server responses as bytes (RFC 3501 §7), one function per response shape.

Every function returns a complete response line ending in CRLF, ready to be
written. Human-readable text is reduced to TEXT-CHAR (RFC 3501 §9: 7-bit, no
CR or LF) so that no caller can split a response by accident or by echoing
client input. Mailbox names are given as Unicode and sent in modified UTF-7.
"""

from base64 import b64encode
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum

from imap.proto import mutf7
from imap.proto.formatting import (
    CRLF,
    Atom,
    Value,
    format_flags,
    format_nstring,
    format_string,
    format_uid_set,
    format_value,
)


class Status(StrEnum):
    OK = "OK"
    NO = "NO"
    BAD = "BAD"
    PREAUTH = "PREAUTH"
    BYE = "BYE"


class ResponseCode(StrEnum):
    """Response codes of RFC 3501 §7.1 and the extensions we speak."""

    ALERT = "ALERT"
    BADCHARSET = "BADCHARSET"
    CAPABILITY = "CAPABILITY"
    PARSE = "PARSE"
    PERMANENTFLAGS = "PERMANENTFLAGS"
    READ_ONLY = "READ-ONLY"
    READ_WRITE = "READ-WRITE"
    TRYCREATE = "TRYCREATE"
    UIDNEXT = "UIDNEXT"
    UIDVALIDITY = "UIDVALIDITY"
    UNSEEN = "UNSEEN"
    # RFC 4315 (UIDPLUS)
    APPENDUID = "APPENDUID"
    COPYUID = "COPYUID"
    UIDNOTSTICKY = "UIDNOTSTICKY"
    # RFC 7162 (CONDSTORE)
    HIGHESTMODSEQ = "HIGHESTMODSEQ"
    NOMODSEQ = "NOMODSEQ"
    MODIFIED = "MODIFIED"
    # RFC 7162 §3.2.11: the previous mailbox was closed by SELECT/EXAMINE
    CLOSED = "CLOSED"
    # RFC 4469 §6 / RFC 7889 (APPENDLIMIT)
    TOOBIG = "TOOBIG"
    # RFC 5530
    UNAVAILABLE = "UNAVAILABLE"
    AUTHENTICATIONFAILED = "AUTHENTICATIONFAILED"
    AUTHORIZATIONFAILED = "AUTHORIZATIONFAILED"
    EXPIRED = "EXPIRED"
    PRIVACYREQUIRED = "PRIVACYREQUIRED"
    CONTACTADMIN = "CONTACTADMIN"
    NOPERM = "NOPERM"
    INUSE = "INUSE"
    EXPUNGEISSUED = "EXPUNGEISSUED"
    CORRUPTION = "CORRUPTION"
    SERVERBUG = "SERVERBUG"
    CLIENTBUG = "CLIENTBUG"
    CANNOT = "CANNOT"
    LIMIT = "LIMIT"
    OVERQUOTA = "OVERQUOTA"
    ALREADYEXISTS = "ALREADYEXISTS"
    NONEXISTENT = "NONEXISTENT"


def _text(text: str) -> bytes:
    cleaned = " ".join(text.split())  # CR, LF and other whitespace runs -> SP
    raw = cleaned.encode("ascii", "replace")
    return raw or b"."  # RFC 3501 §9: text = 1*TEXT-CHAR


def _code(code: str | bytes | None) -> bytes:
    if code is None:
        return b""
    raw = code.encode("ascii", "replace") if isinstance(code, str) else code
    if b"\r" in raw or b"\n" in raw or b"]" in raw:
        raise ValueError("response code must be one line without ']'")
    return b"[" + raw + b"] "


def format_code(name: str, *args: Value) -> bytes:
    """A response code body, e.g. ``format_code("UIDNEXT", 5) == b"UIDNEXT 5"``."""
    return b" ".join([name.encode("ascii"), *(format_value(arg) for arg in args)])


def appenduid_code(uidvalidity: int, uids: Sequence[int]) -> bytes:
    """``APPENDUID uidvalidity uid-set`` (RFC 4315 §3)."""
    return b"APPENDUID %d " % uidvalidity + format_uid_set(uids)


def copyuid_code(uidvalidity: int, source: Sequence[int], destination: Sequence[int]) -> bytes:
    """``COPYUID uidvalidity source-set dest-set`` (RFC 4315 §3).

    The two sets correspond element by element, so they are given as
    parallel sequences and formatted in the order given.
    """
    if len(source) != len(destination):
        raise ValueError("COPYUID source and destination must correspond")
    return b"COPYUID %d %s %s" % (uidvalidity, format_uid_set(source), format_uid_set(destination))


def badcharset_code(supported: Iterable[str]) -> bytes:
    """``BADCHARSET (UTF-8 ...)`` (RFC 3501 §7.1)."""
    return format_code("BADCHARSET", [Atom(name) for name in supported])


def tagged(tag: str, status: Status | str, text: str, code: str | bytes | None = None) -> bytes:
    """``tag OK [code] text`` (RFC 3501 §7.1)."""
    return (
        tag.encode("ascii")
        + b" "
        + Status(status).encode()
        + b" "
        + _code(code)
        + _text(text)
        + CRLF
    )


def untagged_status(status: Status | str, text: str, code: str | bytes | None = None) -> bytes:
    """``* OK [code] text``, also ``* BYE`` and ``* PREAUTH``."""
    return b"* " + Status(status).encode() + b" " + _code(code) + _text(text) + CRLF


def untagged(*parts: bytes) -> bytes:
    """``*`` followed by already formatted parts, space separated."""
    return b" ".join([b"*", *parts]) + CRLF


def continuation(text: str = "") -> bytes:
    """``+ text`` command continuation request (RFC 3501 §7.5)."""
    return b"+ " + (_text(text) if text else b"") + CRLF


def sasl_challenge(data: bytes) -> bytes:
    """``+ base64`` challenge of AUTHENTICATE (RFC 3501 §6.2.2)."""
    return b"+ " + b64encode(data) + CRLF


def capability_response(capabilities: Iterable[str]) -> bytes:
    return untagged(b"CAPABILITY", *(Atom(cap).value.encode("ascii") for cap in capabilities))


def enabled_response(capabilities: Iterable[str]) -> bytes:
    """``* ENABLED ...`` (RFC 5161 §3.2)."""
    return untagged(b"ENABLED", *(Atom(cap).value.encode("ascii") for cap in capabilities))


def flags_response(flags: Iterable[str]) -> bytes:
    return untagged(b"FLAGS", format_flags(flags))


def exists_response(count: int) -> bytes:
    return untagged(b"%d EXISTS" % count)


def recent_response(count: int) -> bytes:
    return untagged(b"%d RECENT" % count)


def expunge_response(sequence_number: int) -> bytes:
    return untagged(b"%d EXPUNGE" % sequence_number)


def search_response(numbers: Iterable[int], highest_modseq: int | None = None) -> bytes:
    """``* SEARCH 2 3 6``, with ``(MODSEQ n)`` under CONDSTORE (RFC 7162 §3.1.5).

    RFC 7162 forbids the MODSEQ part when nothing matched.
    """
    parts = [b"SEARCH", *(b"%d" % number for number in numbers)]
    if highest_modseq is not None and len(parts) > 1:
        parts.append(b"(MODSEQ %d)" % highest_modseq)
    return untagged(*parts)


def status_response(mailbox: str, items: Mapping[str, int]) -> bytes:
    """``* STATUS name (MESSAGES 3 UNSEEN 1)`` (RFC 3501 §7.2.4)."""
    body = b" ".join(b"%s %d" % (str(key).encode("ascii"), value) for key, value in items.items())
    return untagged(b"STATUS", format_string(mutf7.encode(mailbox)), b"(" + body + b")")


def list_response(
    attributes: Iterable[str], delimiter: str | None, mailbox: str, *, command: str = "LIST"
) -> bytes:
    """``* LIST (\\HasNoChildren) "/" name``; also LSUB (RFC 3501 §7.2.2).

    The hierarchy delimiter is a parameter (``"/"`` or ``"."``), ``None``
    for a flat namespace.
    """
    if command not in ("LIST", "LSUB"):
        raise ValueError("command must be LIST or LSUB")
    if delimiter is not None and len(delimiter) != 1:
        raise ValueError("the hierarchy delimiter is a single character")
    return untagged(
        command.encode("ascii"),
        format_flags(attributes),
        format_nstring(delimiter),
        format_string(mutf7.encode(mailbox)),
    )


def fetch_response(sequence_number: int, items: Iterable[tuple[str | bytes, Value]]) -> bytes:
    """``* 12 FETCH (UID 7 FLAGS (\\Seen) ...)`` (RFC 3501 §7.4.2).

    Item names are written verbatim (``b"BODY[HEADER]<0>"`` comes from
    :meth:`imap.proto.fetch.BodySection.response_name`); values go through
    :func:`format_value`, so pass ``Raw(format_flags(...))`` for FLAGS.
    """
    rendered = [
        (name.encode("ascii") if isinstance(name, str) else name) + b" " + format_value(value)
        for name, value in items
    ]
    return untagged(b"%d FETCH" % sequence_number, b"(" + b" ".join(rendered) + b")")


def _namespace(entries: Sequence[tuple[str, str | None]] | None) -> bytes:
    if not entries:
        return b"NIL"
    return format_value([[mutf7.encode(prefix), delimiter] for prefix, delimiter in entries])


def namespace_response(
    personal: Sequence[tuple[str, str | None]] | None,
    other_users: Sequence[tuple[str, str | None]] | None = None,
    shared: Sequence[tuple[str, str | None]] | None = None,
) -> bytes:
    """``* NAMESPACE (("" "/")) NIL NIL`` (RFC 2342 §5); entries are (prefix, delimiter)."""
    return untagged(b"NAMESPACE", _namespace(personal), _namespace(other_users), _namespace(shared))


def id_response(parameters: Mapping[str, str | None] | None) -> bytes:
    """``* ID ("name" "Mailward")`` or ``* ID NIL`` (RFC 2971 §3.2)."""
    if not parameters:
        return untagged(b"ID", b"NIL")
    flat: list[Value] = []
    for key, value in parameters.items():
        flat.extend((key, value))
    return untagged(b"ID", format_value(flat))


def quota_response(root: str, resources: Iterable[tuple[str, int, int]]) -> bytes:
    """``* QUOTA root (STORAGE used limit)`` (RFC 9208 §5.1); (name, usage, limit)."""
    body = b" ".join(
        b"%s %d %d" % (Atom(name).value.encode("ascii"), usage, limit)
        for name, usage, limit in resources
    )
    return untagged(b"QUOTA", format_string(root), b"(" + body + b")")


def quotaroot_response(mailbox: str, roots: Iterable[str]) -> bytes:
    """``* QUOTAROOT mailbox root...`` (RFC 9208 §5.2)."""
    return untagged(
        b"QUOTAROOT", format_string(mutf7.encode(mailbox)), *(format_string(r) for r in roots)
    )


def bye(text: str) -> bytes:
    return untagged_status(Status.BYE, text)
