"""IMAP4rev1 commands as frozen dataclasses, and :func:`parse_command`.

``parse_command(buf)`` takes one whole command as the server read it: the
command line, and for each literal the announced octets followed by the rest
of the line, ending with the final CRLF. It returns a :class:`Command` or
raises:

- :class:`NeedsLiteral` when ``buf`` ends right after ``{n}`` / ``{n+}``
  CRLF. The server answers ``+`` (synchronising literals only), appends n
  octets and the next line, and calls ``parse_command`` again;
- :class:`LiteralTooLarge` before any literal octet is needed;
- :class:`NotParseable` (tag attached when it could be read) for anything
  malformed, including unknown commands; ``exc.response()`` is the reply.

Syntax errors found before a literal announcement are raised before the
literal is asked for, so a bad command never costs its literal.

Each command class declares the protocol states where it is legal
(``states``, RFC 3501 §6 and the extension RFCs) so that the session checks
state once, in its dispatch.
"""

import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, StrEnum
from typing import ClassVar, TypeVar

from imap.proto.errors import NeedsLiteral, NotParseable
from imap.proto.fetch import FetchItem, read_fetch_items, read_fetch_modifiers
from imap.proto.limits import (
    MAX_ID_FIELD_LENGTH,
    MAX_ID_PAIRS,
    MAX_ID_VALUE_LENGTH,
    MAX_NUMBER64,
)
from imap.proto.search import SearchKey, check_charset, read_search_criteria
from imap.proto.sequence import SequenceSet, read_sequence_set
from imap.proto.tokens import (
    CRLF,
    check_framing,
    decode_utf8,
    expect,
    fail,
    peek,
    read_astring,
    read_datetime,
    read_end,
    read_flag,
    read_flag_list,
    read_keyword,
    read_list,
    read_list_mailbox,
    read_literal,
    read_mailbox,
    read_nstring,
    read_number,
    read_sp,
    read_string,
    read_tag,
)


class ProtocolState(Enum):
    """Connection states of RFC 3501 §3."""

    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


_ANY = frozenset(
    {ProtocolState.NOT_AUTHENTICATED, ProtocolState.AUTHENTICATED, ProtocolState.SELECTED}
)
_NOT_AUTH = frozenset({ProtocolState.NOT_AUTHENTICATED})
_AUTH = frozenset({ProtocolState.AUTHENTICATED, ProtocolState.SELECTED})
_SELECTED = frozenset({ProtocolState.SELECTED})


@dataclass(frozen=True, slots=True)
class Command:
    tag: str
    name: ClassVar[str]
    states: ClassVar[frozenset[ProtocolState]]


_C = TypeVar("_C", bound=type[Command])


def _command(name: str, states: frozenset[ProtocolState]) -> Callable[[_C], _C]:
    """Set the class-level ``name`` and ``states`` of a command class."""

    def decorate(cls: _C) -> _C:
        cls.name = name
        cls.states = states
        return cls

    return decorate


# RFC 3501 §6.1: any state.
@_command("CAPABILITY", _ANY)
@dataclass(frozen=True, slots=True)
class CapabilityCommand(Command):
    pass


@_command("NOOP", _ANY)
@dataclass(frozen=True, slots=True)
class NoopCommand(Command):
    pass


@_command("LOGOUT", _ANY)
@dataclass(frozen=True, slots=True)
class LogoutCommand(Command):
    pass


@_command("ID", _ANY)  # RFC 2971 §3.1: any state
@dataclass(frozen=True, slots=True)
class IdCommand(Command):
    """``parameters`` is ``None`` for ``ID NIL``."""

    parameters: tuple[tuple[str, str | None], ...] | None


# RFC 3501 §6.2: not authenticated state.
@_command("STARTTLS", _NOT_AUTH)
@dataclass(frozen=True, slots=True)
class StartTLSCommand(Command):
    pass


@_command("AUTHENTICATE", _NOT_AUTH)
@dataclass(frozen=True, slots=True)
class AuthenticateCommand(Command):
    """``initial_response`` is the decoded SASL-IR (RFC 4959), ``b""`` for ``=``."""

    mechanism: str
    initial_response: bytes | None = field(default=None, repr=False)


@_command("LOGIN", _NOT_AUTH)
@dataclass(frozen=True, slots=True)
class LoginCommand(Command):
    userid: str
    password: str = field(repr=False)


# RFC 3501 §6.3: authenticated (and selected) state.
@_command("SELECT", _AUTH)
@dataclass(frozen=True, slots=True)
class SelectCommand(Command):
    mailbox: str
    condstore: bool = False  # RFC 7162 §3.1.8 select-param


@_command("EXAMINE", _AUTH)
@dataclass(frozen=True, slots=True)
class ExamineCommand(Command):
    mailbox: str
    condstore: bool = False


@_command("CREATE", _AUTH)
@dataclass(frozen=True, slots=True)
class CreateCommand(Command):
    mailbox: str


@_command("DELETE", _AUTH)
@dataclass(frozen=True, slots=True)
class DeleteCommand(Command):
    mailbox: str


@_command("RENAME", _AUTH)
@dataclass(frozen=True, slots=True)
class RenameCommand(Command):
    source: str
    destination: str


@_command("SUBSCRIBE", _AUTH)
@dataclass(frozen=True, slots=True)
class SubscribeCommand(Command):
    mailbox: str


@_command("UNSUBSCRIBE", _AUTH)
@dataclass(frozen=True, slots=True)
class UnsubscribeCommand(Command):
    mailbox: str


@_command("LIST", _AUTH)
@dataclass(frozen=True, slots=True)
class ListCommand(Command):
    """``pattern`` keeps its ``%`` and ``*`` wildcards (RFC 3501 §6.3.8)."""

    reference: str
    pattern: str


@_command("LSUB", _AUTH)
@dataclass(frozen=True, slots=True)
class LsubCommand(Command):
    reference: str
    pattern: str


class StatusItem(StrEnum):
    MESSAGES = "MESSAGES"
    RECENT = "RECENT"
    UIDNEXT = "UIDNEXT"
    UIDVALIDITY = "UIDVALIDITY"
    UNSEEN = "UNSEEN"
    HIGHESTMODSEQ = "HIGHESTMODSEQ"  # RFC 7162 §3.1.6


@_command("STATUS", _AUTH)
@dataclass(frozen=True, slots=True)
class StatusCommand(Command):
    mailbox: str
    items: tuple[StatusItem, ...]


@_command("APPEND", _AUTH)
@dataclass(frozen=True, slots=True)
class AppendCommand(Command):
    mailbox: str
    message: bytes = field(repr=False)
    flags: tuple[str, ...] = ()
    internal_date: datetime | None = None


@_command("IDLE", _AUTH)  # RFC 2177 §3
@dataclass(frozen=True, slots=True)
class IdleCommand(Command):
    pass


@_command("NAMESPACE", _AUTH)  # RFC 2342 §5
@dataclass(frozen=True, slots=True)
class NamespaceCommand(Command):
    pass


# RFC 5161 §3.1: "only valid in the authenticated state, before any mailbox
# is selected".
@_command("ENABLE", frozenset({ProtocolState.AUTHENTICATED}))
@dataclass(frozen=True, slots=True)
class EnableCommand(Command):
    capabilities: tuple[str, ...]  # upper-cased


@_command("GETQUOTA", _AUTH)  # RFC 9208 §4.2
@dataclass(frozen=True, slots=True)
class GetQuotaCommand(Command):
    root: str


@_command("GETQUOTAROOT", _AUTH)
@dataclass(frozen=True, slots=True)
class GetQuotaRootCommand(Command):
    mailbox: str


@_command("SETQUOTA", _AUTH)
@dataclass(frozen=True, slots=True)
class SetQuotaCommand(Command):
    root: str
    limits: tuple[tuple[str, int], ...]  # (resource name upper-cased, limit)


# RFC 3501 §6.4: selected state.
@_command("CHECK", _SELECTED)
@dataclass(frozen=True, slots=True)
class CheckCommand(Command):
    pass


@_command("CLOSE", _SELECTED)
@dataclass(frozen=True, slots=True)
class CloseCommand(Command):
    pass


@_command("UNSELECT", _SELECTED)  # RFC 3691
@dataclass(frozen=True, slots=True)
class UnselectCommand(Command):
    pass


@_command("EXPUNGE", _SELECTED)
@dataclass(frozen=True, slots=True)
class ExpungeCommand(Command):
    pass


@_command("UID EXPUNGE", _SELECTED)  # RFC 4315 §2.1
@dataclass(frozen=True, slots=True)
class UidExpungeCommand(Command):
    sequence_set: SequenceSet


@_command("SEARCH", _SELECTED)
@dataclass(frozen=True, slots=True)
class SearchCommand(Command):
    """Several top-level keys come as one :class:`AndKey`."""

    key: SearchKey
    charset: str | None = None
    uid: bool = False


@_command("FETCH", _SELECTED)
@dataclass(frozen=True, slots=True)
class FetchCommand(Command):
    sequence_set: SequenceSet
    items: tuple[FetchItem, ...]
    uid: bool = False
    changed_since: int | None = None  # RFC 7162 §3.1.4.1


class StoreMode(Enum):
    REPLACE = ""
    ADD = "+"
    REMOVE = "-"


@_command("STORE", _SELECTED)
@dataclass(frozen=True, slots=True)
class StoreCommand(Command):
    sequence_set: SequenceSet
    mode: StoreMode
    flags: tuple[str, ...]
    silent: bool = False
    uid: bool = False
    unchanged_since: int | None = None  # RFC 7162 §3.1.3


@_command("COPY", _SELECTED)
@dataclass(frozen=True, slots=True)
class CopyCommand(Command):
    sequence_set: SequenceSet
    mailbox: str
    uid: bool = False


@_command("MOVE", _SELECTED)  # RFC 6851
@dataclass(frozen=True, slots=True)
class MoveCommand(Command):
    sequence_set: SequenceSet
    mailbox: str
    uid: bool = False


# --- argument parsers: (tag, buf, pos after the name, uid) -> (command, pos)

_Parser = Callable[[str, bytes, int, bool], tuple[Command, int]]

# AUTHENTICATE initial response and continuation lines (RFC 4648 base64).
_BASE64 = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def _no_arguments(cls: type[Command]) -> _Parser:
    def parse(tag: str, buf: bytes, pos: int, uid: bool) -> tuple[Command, int]:
        return cls(tag), pos

    return parse


def _one_mailbox(cls: Callable[[str, str], Command]) -> _Parser:
    def parse(tag: str, buf: bytes, pos: int, uid: bool) -> tuple[Command, int]:
        mailbox, pos = read_mailbox(buf, read_sp(buf, pos))
        return cls(tag, mailbox), pos

    return parse


def _decode_base64(data: bytes) -> bytes:
    if _BASE64.fullmatch(data) is None:
        raise NotParseable("invalid base64")
    try:
        return binascii.a2b_base64(data, strict_mode=True)
    except binascii.Error:
        raise NotParseable("invalid base64") from None


def _parse_authenticate(tag: str, buf: bytes, pos: int, uid: bool) -> tuple[Command, int]:
    mechanism, pos = read_keyword(buf, read_sp(buf, pos))
    initial: bytes | None = None
    if peek(buf, pos) == b" ":
        pos += 1
        if peek(buf, pos) == b"=":  # RFC 4959 §3: "=" is an empty response
            initial, pos = b"", pos + 1
        else:
            end = buf.find(CRLF, pos)
            end = len(buf) if end < 0 else end
            if end == pos:
                raise NotParseable("empty initial response must be sent as '='")
            initial, pos = _decode_base64(buf[pos:end]), end
    return AuthenticateCommand(tag, mechanism, initial), pos


def _parse_login(tag: str, buf: bytes, pos: int, uid: bool) -> tuple[Command, int]:
    userid, pos = read_astring(buf, read_sp(buf, pos))
    password, pos = read_astring(buf, read_sp(buf, pos))
    return LoginCommand(
        tag, decode_utf8(userid, "user name"), decode_utf8(password, "password")
    ), pos


def _select_like(cls: type[SelectCommand] | type[ExamineCommand]) -> _Parser:
    def parse(tag: str, buf: bytes, pos: int, uid: bool) -> tuple[Command, int]:
        mailbox, pos = read_mailbox(buf, read_sp(buf, pos))
        condstore = False
        if peek(buf, pos) == b" ":
            # RFC 4466 §2.1 select-params; only CONDSTORE (RFC 7162 §3.1.8) is known.
            params, pos = read_list(buf, pos + 1, read_keyword)
            if any(param != "CONDSTORE" for param in params):
                raise NotParseable("unknown select parameter")
            condstore = True
        return cls(tag, mailbox, condstore), pos

    return parse


def _parse_rename(tag: str, buf: bytes, pos: int, uid: bool) -> tuple[Command, int]:
    source, pos = read_mailbox(buf, read_sp(buf, pos))
    destination, pos = read_mailbox(buf, read_sp(buf, pos))
    return RenameCommand(tag, source, destination), pos


def _list_like(cls: type[ListCommand] | type[LsubCommand]) -> _Parser:
    def parse(tag: str, buf: bytes, pos: int, uid: bool) -> tuple[Command, int]:
        reference, pos = read_mailbox(buf, read_sp(buf, pos))
        pattern, pos = read_list_mailbox(buf, read_sp(buf, pos))
        return cls(tag, reference, pattern), pos

    return parse


def _read_status_item(buf: bytes, pos: int) -> tuple[StatusItem, int]:
    name, pos = read_keyword(buf, pos)
    try:
        return StatusItem(name), pos
    except ValueError:
        raise NotParseable("unknown status item") from None


def _parse_status(tag: str, buf: bytes, pos: int, uid: bool) -> tuple[Command, int]:
    mailbox, pos = read_mailbox(buf, read_sp(buf, pos))
    items, pos = read_list(buf, read_sp(buf, pos), _read_status_item)
    return StatusCommand(tag, mailbox, items), pos


def _parse_append(tag: str, buf: bytes, pos: int, uid: bool) -> tuple[Command, int]:
    mailbox, pos = read_mailbox(buf, read_sp(buf, pos))
    pos = read_sp(buf, pos)
    flags: tuple[str, ...] = ()
    internal_date: datetime | None = None
    if peek(buf, pos) == b"(":
        flags, pos = read_flag_list(buf, pos)
        pos = read_sp(buf, pos)
    if peek(buf, pos) == b'"':
        internal_date, pos = read_datetime(buf, pos)
        pos = read_sp(buf, pos)
    if peek(buf, pos) != b"{":
        raise fail(buf, pos, "message literal")
    message, pos = read_literal(buf, pos, allow_nul=True)
    return AppendCommand(tag, mailbox, message, flags, internal_date), pos


def _parse_search(tag: str, buf: bytes, pos: int, uid: bool) -> tuple[Command, int]:
    charset: str | None = None
    if buf[pos : pos + 9].upper() == b" CHARSET ":
        raw, pos = read_astring(buf, pos + 9)
        charset = check_charset(raw.decode("ascii", "replace"))
    key, pos = read_search_criteria(buf, pos)
    return SearchCommand(tag, key, charset, uid), pos


def _parse_fetch(tag: str, buf: bytes, pos: int, uid: bool) -> tuple[Command, int]:
    sequence_set, pos = read_sequence_set(buf, read_sp(buf, pos))
    items, pos = read_fetch_items(buf, read_sp(buf, pos))
    changed_since = None
    if peek(buf, pos) == b" ":
        changed_since, pos = read_fetch_modifiers(buf, pos + 1)
    return FetchCommand(tag, sequence_set, items, uid, changed_since), pos


_STORE_ATT = re.compile(rb"([+-]?)FLAGS(\.SILENT)?(?= )", re.IGNORECASE)


def _read_unchangedsince(buf: bytes, pos: int) -> tuple[int, int]:
    """``"(" UNCHANGEDSINCE mod-sequence-valzer ")"`` (RFC 7162 §3.1.3)."""
    pos = expect(buf, pos, b"(", "'('")
    name, pos = read_keyword(buf, pos)
    if name != "UNCHANGEDSINCE":
        raise NotParseable("unknown store modifier")
    value, pos = read_number(buf, read_sp(buf, pos), maximum=MAX_NUMBER64)
    return value, expect(buf, pos, b")", "')'")


def _parse_store(tag: str, buf: bytes, pos: int, uid: bool) -> tuple[Command, int]:
    sequence_set, pos = read_sequence_set(buf, read_sp(buf, pos))
    pos = read_sp(buf, pos)
    unchanged_since = None
    if peek(buf, pos) == b"(":
        unchanged_since, pos = _read_unchangedsince(buf, pos)
        pos = read_sp(buf, pos)
    match = _STORE_ATT.match(buf, pos)
    if match is None:
        raise fail(buf, pos, "FLAGS, +FLAGS or -FLAGS")
    mode = StoreMode(match.group(1).decode("ascii"))
    pos = read_sp(buf, match.end())
    if peek(buf, pos) == b"(":
        flags, pos = read_flag_list(buf, pos)
    else:
        flag, pos = read_flag(buf, pos)
        flags = (flag,)
        while peek(buf, pos) == b" ":
            flag, pos = read_flag(buf, pos + 1)
            flags += (flag,)
    silent = match.group(2) is not None
    return StoreCommand(tag, sequence_set, mode, flags, silent, uid, unchanged_since), pos


def _copy_like(cls: type[CopyCommand] | type[MoveCommand]) -> _Parser:
    def parse(tag: str, buf: bytes, pos: int, uid: bool) -> tuple[Command, int]:
        sequence_set, pos = read_sequence_set(buf, read_sp(buf, pos))
        mailbox, pos = read_mailbox(buf, read_sp(buf, pos))
        return cls(tag, sequence_set, mailbox, uid), pos

    return parse


def _parse_uid_expunge(tag: str, buf: bytes, pos: int, uid: bool) -> tuple[Command, int]:
    sequence_set, pos = read_sequence_set(buf, read_sp(buf, pos))
    return UidExpungeCommand(tag, sequence_set), pos


def _read_id_pair(buf: bytes, pos: int) -> tuple[tuple[str, str | None], int]:
    key, pos = read_string(buf, pos)
    value, pos = read_nstring(buf, read_sp(buf, pos))
    if len(key) > MAX_ID_FIELD_LENGTH or (value is not None and len(value) > MAX_ID_VALUE_LENGTH):
        raise NotParseable("ID field or value too long", code="LIMIT")
    decoded = None if value is None else decode_utf8(value, "ID value")
    return (decode_utf8(key, "ID field"), decoded), pos


def _parse_id(tag: str, buf: bytes, pos: int, uid: bool) -> tuple[Command, int]:
    pos = read_sp(buf, pos)
    if buf[pos : pos + 3].upper() == b"NIL":
        return IdCommand(tag, None), pos + 3
    pairs, pos = read_list(buf, pos, _read_id_pair, empty=True)
    if len(pairs) > MAX_ID_PAIRS:
        raise NotParseable("too many ID parameters", code="LIMIT")
    return IdCommand(tag, pairs), pos


def _parse_enable(tag: str, buf: bytes, pos: int, uid: bool) -> tuple[Command, int]:
    capabilities: list[str] = []
    pos = read_sp(buf, pos)
    while True:
        name, pos = read_keyword(buf, pos)
        capabilities.append(name)
        if peek(buf, pos) != b" ":
            return EnableCommand(tag, tuple(capabilities)), pos
        pos += 1


def _read_quota_root(buf: bytes, pos: int) -> tuple[str, int]:
    raw, pos = read_astring(buf, pos)
    return decode_utf8(raw, "quota root"), pos


def _parse_getquota(tag: str, buf: bytes, pos: int, uid: bool) -> tuple[Command, int]:
    root, pos = _read_quota_root(buf, read_sp(buf, pos))
    return GetQuotaCommand(tag, root), pos


def _read_quota_limit(buf: bytes, pos: int) -> tuple[tuple[str, int], int]:
    name, pos = read_keyword(buf, pos)
    limit, pos = read_number(buf, read_sp(buf, pos), maximum=MAX_NUMBER64)
    return (name, limit), pos


def _parse_setquota(tag: str, buf: bytes, pos: int, uid: bool) -> tuple[Command, int]:
    root, pos = _read_quota_root(buf, read_sp(buf, pos))
    limits, pos = read_list(buf, read_sp(buf, pos), _read_quota_limit, empty=True)
    return SetQuotaCommand(tag, root, limits), pos


_PARSERS: dict[str, _Parser] = {
    "CAPABILITY": _no_arguments(CapabilityCommand),
    "NOOP": _no_arguments(NoopCommand),
    "LOGOUT": _no_arguments(LogoutCommand),
    "STARTTLS": _no_arguments(StartTLSCommand),
    "AUTHENTICATE": _parse_authenticate,
    "LOGIN": _parse_login,
    "SELECT": _select_like(SelectCommand),
    "EXAMINE": _select_like(ExamineCommand),
    "CREATE": _one_mailbox(CreateCommand),
    "DELETE": _one_mailbox(DeleteCommand),
    "RENAME": _parse_rename,
    "SUBSCRIBE": _one_mailbox(SubscribeCommand),
    "UNSUBSCRIBE": _one_mailbox(UnsubscribeCommand),
    "LIST": _list_like(ListCommand),
    "LSUB": _list_like(LsubCommand),
    "STATUS": _parse_status,
    "APPEND": _parse_append,
    "CHECK": _no_arguments(CheckCommand),
    "CLOSE": _no_arguments(CloseCommand),
    "EXPUNGE": _no_arguments(ExpungeCommand),
    "SEARCH": _parse_search,
    "FETCH": _parse_fetch,
    "STORE": _parse_store,
    "COPY": _copy_like(CopyCommand),
    "MOVE": _copy_like(MoveCommand),
    "IDLE": _no_arguments(IdleCommand),
    "UNSELECT": _no_arguments(UnselectCommand),
    "NAMESPACE": _no_arguments(NamespaceCommand),
    "ID": _parse_id,
    "ENABLE": _parse_enable,
    "GETQUOTA": _parse_getquota,
    "GETQUOTAROOT": _one_mailbox(GetQuotaRootCommand),
    "SETQUOTA": _parse_setquota,
}
# RFC 3501 §6.4.8 and RFC 4315 §2.1, RFC 6851 §3: commands taking the UID prefix.
_UID_PARSERS: dict[str, _Parser] = {
    "COPY": _PARSERS["COPY"],
    "MOVE": _PARSERS["MOVE"],
    "FETCH": _PARSERS["FETCH"],
    "SEARCH": _PARSERS["SEARCH"],
    "STORE": _PARSERS["STORE"],
    "EXPUNGE": _parse_uid_expunge,
}

COMMAND_NAMES: frozenset[str] = frozenset(_PARSERS) | {"UID"}


def parse_command(buf: bytes) -> Command:
    """Parse one complete command (see the module docstring for the protocol)."""
    if buf in (b"", CRLF):
        raise NotParseable("empty command line")
    tag: str | None = None
    name: str | None = None
    try:
        tag, pos = read_tag(buf, 0)
    except NotParseable:
        raise NotParseable("invalid tag") from None
    try:
        check_framing(buf)
        pos = read_sp(buf, pos)
        name, pos = read_keyword(buf, pos)
        uid = name == "UID"
        if uid:
            sub, pos = read_keyword(buf, read_sp(buf, pos))
            parser = _UID_PARSERS.get(sub)
            name = f"UID {sub}"
        else:
            parser = _PARSERS.get(name)
        if parser is None:
            raise NotParseable("unknown command")
        command, pos = parser(tag, buf, pos, uid)
        read_end(buf, pos)
        return command
    except NotParseable as exc:
        raise exc.with_tag(tag) from None
    except NeedsLiteral as exc:
        raise exc.with_context(tag, name) from None


def is_idle_done(line: bytes) -> bool:
    """Whether ``line`` is the ``DONE`` CRLF that ends IDLE (RFC 2177 §3)."""
    return line.upper() == b"DONE\r\n"


def parse_sasl_response(line: bytes) -> bytes | None:
    """Decode a client line during AUTHENTICATE (RFC 3501 §6.2.2).

    Returns the decoded octets, or ``None`` when the client cancelled with
    ``*`` (to be answered with BAD). An empty line is an empty response.
    """
    if not line.endswith(CRLF):
        raise NotParseable("expected CRLF")
    data = line[:-2]
    if data == b"*":
        return None
    return _decode_base64(data)
