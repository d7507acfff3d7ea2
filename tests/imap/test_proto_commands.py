"""Command parsing: bytes in, command values or protocol errors out."""

import random
from datetime import datetime, timedelta, timezone

import pytest

from imap.proto.commands import (
    COMMAND_NAMES,
    AppendCommand,
    AuthenticateCommand,
    CapabilityCommand,
    CheckCommand,
    CloseCommand,
    Command,
    CopyCommand,
    CreateCommand,
    DeleteCommand,
    EnableCommand,
    ExamineCommand,
    ExpungeCommand,
    FetchCommand,
    GetQuotaCommand,
    GetQuotaRootCommand,
    IdCommand,
    IdleCommand,
    ListCommand,
    LoginCommand,
    LogoutCommand,
    LsubCommand,
    MoveCommand,
    NamespaceCommand,
    NoopCommand,
    ProtocolState,
    RenameCommand,
    SearchCommand,
    SelectCommand,
    SetQuotaCommand,
    StartTLSCommand,
    StatusCommand,
    StatusItem,
    StoreCommand,
    StoreMode,
    SubscribeCommand,
    UidExpungeCommand,
    UnselectCommand,
    UnsubscribeCommand,
    is_idle_done,
    parse_command,
    parse_sasl_response,
)
from imap.proto.errors import LiteralTooLarge, NeedsLiteral, NotParseable
from imap.proto.fetch import BodySection, FetchAttr, Section, SectionText
from imap.proto.limits import MAX_LINE_LENGTH, MAX_LITERAL_SIZE, MAX_LITERALS_PER_COMMAND
from imap.proto.search import AllKey, AndKey, FlagKey, HeaderKey, SequenceKey
from imap.proto.sequence import SequenceSet


def seq(text: bytes) -> SequenceSet:
    return SequenceSet.parse(text)


def feed(first_line: bytes, *rest: bytes) -> tuple[Command, list[NeedsLiteral]]:
    """Play the server loop: on NeedsLiteral, append literal data and next line."""
    buf = first_line
    pending = list(rest)
    asked: list[NeedsLiteral] = []
    while True:
        try:
            return parse_command(buf), asked
        except NeedsLiteral as need:
            asked.append(need)
            buf += pending.pop(0)


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (b"a1 CAPABILITY\r\n", CapabilityCommand("a1")),
        (b"a2 noop\r\n", NoopCommand("a2")),
        (b"a3 Logout\r\n", LogoutCommand("a3")),
        (b"a4 STARTTLS\r\n", StartTLSCommand("a4")),
        (b"a5 AUTHENTICATE PLAIN\r\n", AuthenticateCommand("a5", "PLAIN")),
        (
            b"a6 AUTHENTICATE plain AGpvZQBzZWNyZXQ=\r\n",
            AuthenticateCommand("a6", "PLAIN", b"\x00joe\x00secret"),
        ),
        (b"a7 AUTHENTICATE EXTERNAL =\r\n", AuthenticateCommand("a7", "EXTERNAL", b"")),
        (b"a8 LOGIN joe secret\r\n", LoginCommand("a8", "joe", "secret")),
        (b'a9 LOGIN "joe@x.org" "p a\\"ss"\r\n', LoginCommand("a9", "joe@x.org", 'p a"ss')),
        (b"b1 SELECT INBOX\r\n", SelectCommand("b1", "INBOX")),
        (b"b2 select inbox (condstore)\r\n", SelectCommand("b2", "INBOX", condstore=True)),
        (b'b3 EXAMINE "Sent Items"\r\n', ExamineCommand("b3", "Sent Items")),
        (b"b4 EXAMINE Archiv (CONDSTORE)\r\n", ExamineCommand("b4", "Archiv", condstore=True)),
        (b"b5 CREATE Entw&APw-rfe\r\n", CreateCommand("b5", "Entwürfe")),
        (b"b6 DELETE foo/bar\r\n", DeleteCommand("b6", "foo/bar")),
        (b"b7 RENAME old new\r\n", RenameCommand("b7", "old", "new")),
        (b"b8 SUBSCRIBE news\r\n", SubscribeCommand("b8", "news")),
        (b"b9 UNSUBSCRIBE news\r\n", UnsubscribeCommand("b9", "news")),
        (b'c1 LIST "" *\r\n', ListCommand("c1", "", "*")),
        (b"c2 LIST ~/Mail/ %\r\n", ListCommand("c2", "~/Mail/", "%")),
        (b'c3 LSUB "#news." "comp.mail.*"\r\n', LsubCommand("c3", "#news.", "comp.mail.*")),
        (
            b"c4 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n",
            StatusCommand("c4", "blurdybloop", (StatusItem.UIDNEXT, StatusItem.MESSAGES)),
        ),
        (
            b"c5 status INBOX (messages recent uidnext uidvalidity unseen highestmodseq)\r\n",
            StatusCommand("c5", "INBOX", tuple(StatusItem)),
        ),
        (b"c6 CHECK\r\n", CheckCommand("c6")),
        (b"c7 CLOSE\r\n", CloseCommand("c7")),
        (b"c8 EXPUNGE\r\n", ExpungeCommand("c8")),
        (b"c9 UID EXPUNGE 3000:3002\r\n", UidExpungeCommand("c9", seq(b"3000:3002"))),
        (b"d1 SEARCH ALL\r\n", SearchCommand("d1", AllKey())),
        (
            b"d2 SEARCH CHARSET utf-8 FROM joe\r\n",
            SearchCommand("d2", HeaderKey("From", "joe"), charset="UTF-8"),
        ),
        (
            b"d3 UID SEARCH 1:* UNSEEN\r\n",
            SearchCommand(
                "d3",
                AndKey((SequenceKey(seq(b"1:*")), FlagKey("\\Seen", present=False))),
                uid=True,
            ),
        ),
        (b"d4 FETCH 1 UID\r\n", FetchCommand("d4", seq(b"1"), (FetchAttr.UID,))),
        (
            b"d5 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n",
            FetchCommand(
                "d5",
                seq(b"2:4"),
                (
                    FetchAttr.FLAGS,
                    BodySection(Section((), SectionText.HEADER_FIELDS, ("DATE", "FROM"))),
                ),
            ),
        ),
        (
            b"d6 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)\r\n",
            FetchCommand("d6", seq(b"1:*"), (FetchAttr.FLAGS,), uid=True, changed_since=12345),
        ),
        (
            b"d7 STORE 2:4 +FLAGS (\\Deleted)\r\n",
            StoreCommand("d7", seq(b"2:4"), StoreMode.ADD, ("\\Deleted",)),
        ),
        (
            b"d8 STORE 1 -flags.silent \\Seen $Junk\r\n",
            StoreCommand("d8", seq(b"1"), StoreMode.REMOVE, ("\\Seen", "$Junk"), silent=True),
        ),
        (
            b"d9 UID STORE 7 (UNCHANGEDSINCE 320162338) FLAGS ()\r\n",
            StoreCommand(
                "d9", seq(b"7"), StoreMode.REPLACE, (), uid=True, unchanged_since=320162338
            ),
        ),
        (b"e1 COPY 2:4 MEETING\r\n", CopyCommand("e1", seq(b"2:4"), "MEETING")),
        (b"e2 UID COPY 5,9 Trash\r\n", CopyCommand("e2", seq(b"5,9"), "Trash", uid=True)),
        (b"e3 MOVE 1:* Archive\r\n", MoveCommand("e3", seq(b"1:*"), "Archive")),
        (b"e4 uid move 42 inbox\r\n", MoveCommand("e4", seq(b"42"), "INBOX", uid=True)),
        (b"e5 IDLE\r\n", IdleCommand("e5")),
        (b"e6 UNSELECT\r\n", UnselectCommand("e6")),
        (b"e7 NAMESPACE\r\n", NamespaceCommand("e7")),
        (b"e8 ID NIL\r\n", IdCommand("e8", None)),
        (b"e9 ID ()\r\n", IdCommand("e9", ())),
        (
            b'f1 ID ("name" "sodr" "version" NIL)\r\n',
            IdCommand("f1", (("name", "sodr"), ("version", None))),
        ),
        (b"f2 ENABLE CONDSTORE\r\n", EnableCommand("f2", ("CONDSTORE",))),
        (
            b"f3 enable condstore utf8=accept\r\n",
            EnableCommand("f3", ("CONDSTORE", "UTF8=ACCEPT")),
        ),
        (b'f4 GETQUOTA ""\r\n', GetQuotaCommand("f4", "")),
        (b"f5 GETQUOTAROOT INBOX\r\n", GetQuotaRootCommand("f5", "INBOX")),
        (
            b'f6 SETQUOTA "" (STORAGE 512 MESSAGE 1000)\r\n',
            SetQuotaCommand("f6", "", (("STORAGE", 512), ("MESSAGE", 1000))),
        ),
        (b"f7 SETQUOTA root ()\r\n", SetQuotaCommand("f7", "root", ())),
    ],
)
def test_parse(line: bytes, command: Command) -> None:
    """Ensure each command parses, case-insensitively, into its value."""
    assert parse_command(line) == command


def test_append_with_everything() -> None:
    """Ensure APPEND takes flags, date-time and a literal message (RFC 3501 §6.3.11)."""
    line = b'A003 APPEND saved-messages (\\Seen) " 7-Feb-1994 21:52:25 -0800" {23}\r\n'
    message = b"Subject: hi\r\n\r\nhello\r\n\r\n"[:23]
    command, asked = feed(line, message + b"\r\n")
    assert command == AppendCommand(
        "A003",
        "saved-messages",
        message,
        ("\\Seen",),
        datetime(1994, 2, 7, 21, 52, 25, tzinfo=timezone(-timedelta(hours=8))),
    )
    assert [(n.size, n.non_sync, n.tag, n.command) for n in asked] == [
        (23, False, "A003", "APPEND")
    ]


def test_append_minimal_and_non_sync() -> None:
    """Ensure APPEND works with only a literal, and reports a {n+} literal as non-sync."""
    command, asked = feed(b"a APPEND INBOX {5+}\r\n", b"a\x00b\r\n\r\n")
    assert command == AppendCommand("a", "INBOX", b"a\x00b\r\n")
    assert asked[0].non_sync


def test_login_with_two_literals() -> None:
    """Ensure the parser asks for each literal in turn, then returns the command."""
    command, asked = feed(b"a1 LOGIN {3}\r\n", b"joe {7}\r\n", b"s\xc3\xa9cr\r\n\r\n")
    assert command == LoginCommand("a1", "joe", "sécr\r\n")
    assert [n.size for n in asked] == [3, 7]
    assert all(n.command == "LOGIN" for n in asked)


def test_search_with_literal() -> None:
    """Ensure a literal inside SEARCH criteria is requested and decoded."""
    command, _ = feed(b"s UID SEARCH CHARSET UTF-8 SUBJECT {3}\r\n", "ün".encode() + b"\r\n")
    assert isinstance(command, SearchCommand)
    assert command.key == HeaderKey("Subject", "ün")


def test_error_found_before_literal_is_requested() -> None:
    """Ensure a command already known to be bad never asks for its literal."""
    for line in [b"a1 BOGUS {5}\r\n", b"a1 FETCH 0 {5}\r\n", b"a1 APPEND INBOX (\\Recent) {5}\r\n"]:
        with pytest.raises(NotParseable):
            parse_command(line)


def test_huge_literal_refused_before_reading() -> None:
    """Ensure a huge announcement is LiteralTooLarge with the tag, not NeedsLiteral."""
    with pytest.raises(LiteralTooLarge) as info:
        parse_command(b"a1 APPEND INBOX {%d}\r\n" % (MAX_LITERAL_SIZE + 1))
    assert info.value.tag == "a1"
    assert info.value.response() == b"a1 NO [TOOBIG] literal too large\r\n"


def test_huge_non_sync_literal() -> None:
    """Ensure a huge {n+} is BAD, since its octets are already on the way."""
    with pytest.raises(LiteralTooLarge) as info:
        parse_command(b"a1 LOGIN {4294967296+}\r\n")
    assert info.value.non_sync
    assert info.value.response().startswith(b"a1 BAD [TOOBIG]")


def test_literal_at_limit_is_requested() -> None:
    """Ensure a literal of exactly MAX_LITERAL_SIZE is still asked for."""
    with pytest.raises(NeedsLiteral) as info:
        parse_command(b"a1 APPEND INBOX {%d}\r\n" % MAX_LITERAL_SIZE)
    assert info.value.size == MAX_LITERAL_SIZE


def test_overlong_line() -> None:
    """Ensure a line above MAX_LINE_LENGTH is refused with its tag."""
    line = b"a1 LOGIN joe " + b"x" * MAX_LINE_LENGTH + b"\r\n"
    with pytest.raises(NotParseable) as info:
        parse_command(line)
    assert info.value.response().startswith(b"a1 BAD [LIMIT]")


def test_too_many_literals() -> None:
    """Ensure a command announcing too many literals is refused."""
    buf = b"a SEARCH" + b" TEXT {1+}\r\nx" * (MAX_LITERALS_PER_COMMAND + 1) + b"\r\n"
    with pytest.raises(NotParseable, match="too many literals"):
        parse_command(buf)


@pytest.mark.parametrize(
    ("line", "response"),
    [
        (b"\r\n", b"* BAD empty command line\r\n"),
        (b"", b"* BAD empty command line\r\n"),
        (b"+ NOOP\r\n", b"* BAD invalid tag\r\n"),
        (b"* NOOP\r\n", b"* BAD invalid tag\r\n"),
        (b"\xff NOOP\r\n", b"* BAD invalid tag\r\n"),
        (b"a1 XYZZY\r\n", b"a1 BAD unknown command\r\n"),
        (b"a1 UID NOOP\r\n", b"a1 BAD unknown command\r\n"),
        (b"a1 NOOP extra\r\n", b"a1 BAD unexpected characters after command\r\n"),
        (b"a1 NOOP\r\na2 NOOP\r\n", b"a1 BAD unexpected data after end of command\r\n"),
        (b"a1 NOOP", b"a1 BAD unexpected end of command\r\n"),
        (b"a1 NOOP\n", b"a1 BAD unexpected characters after command\r\n"),
    ],
)
def test_error_responses(line: bytes, response: bytes) -> None:
    """Ensure framing, tag and name errors produce the right BAD line."""
    with pytest.raises(NotParseable) as info:
        parse_command(line)
    assert info.value.response() == response


@pytest.mark.parametrize(
    "line",
    [
        # missing or extra arguments
        b"a LOGIN\r\n",
        b"a LOGIN joe\r\n",
        b"a LOGIN joe pw extra\r\n",
        b"a SELECT\r\n",
        b"a SELECT INBOX (QRESYNC)\r\n",
        b"a SELECT INBOX ()\r\n",
        b"a SELECT INBOX CONDSTORE\r\n",
        b"a RENAME old\r\n",
        b"a LIST\r\n",
        b'a LIST ""\r\n',
        b'a LIST (SUBSCRIBED) "" *\r\n',
        b"a STATUS INBOX\r\n",
        b"a STATUS INBOX ()\r\n",
        b"a STATUS INBOX (SIZE)\r\n",
        b"a STATUS INBOX (MESSAGES\r\n",
        b"a APPEND INBOX\r\n",
        b'a APPEND INBOX "message"\r\n',
        b'a APPEND INBOX "7-Feb-1994 21:52:25 -0800" (\\Seen) {1}\r\n',
        b"a APPEND INBOX (\\Bogus) {1}\r\n",
        b"a SEARCH\r\n",
        b"a SEARCH CHARSET\r\n",
        b"a SEARCH FROM\r\n",
        b"a FETCH 1\r\n",
        b"a FETCH 1 (FLAGS) CHANGEDSINCE 5\r\n",
        b"a FETCH 1:* FLAGS garbage\r\n",
        b"a STORE 1 FLAGS\r\n",
        b"a STORE 1 FLAGSX (\\Seen)\r\n",
        b"a STORE 1 *FLAGS (\\Seen)\r\n",
        b"a STORE 1 +FLAGS (\\Recent)\r\n",
        b"a STORE 1 +FLAGS \\Seen  \\Draft\r\n",
        b"a STORE 1 (UNCHANGEDSINCE x) FLAGS ()\r\n",
        b"a STORE 1 (CHANGEDSINCE 5) FLAGS ()\r\n",
        b"a COPY 1\r\n",
        b"a COPY 1:2:3 x\r\n",
        b"a MOVE x INBOX\r\n",
        b"a UID\r\n",
        b"a UID EXPUNGE\r\n",
        b"a UID LOGIN joe pw\r\n",
        b"a EXPUNGE 1\r\n",
        b"a ENABLE\r\n",
        b"a ID\r\n",
        b'a ID ("name")\r\n',
        b'a ID (name "x")\r\n',
        b"a GETQUOTA\r\n",
        b'a SETQUOTA "" (STORAGE)\r\n',
        b'a SETQUOTA "" (STORAGE -1)\r\n',
        b"a AUTHENTICATE\r\n",
        b"a AUTHENTICATE PLAIN !!!\r\n",
        b"a AUTHENTICATE PLAIN AGpvZQ\r\n",
        b"a AUTHENTICATE PLAIN \r\n",
        # bad sequence sets
        b"a FETCH 0 FLAGS\r\n",
        b"a FETCH 1: FLAGS\r\n",
        b"a FETCH ,1 FLAGS\r\n",
        b"a FETCH foo FLAGS\r\n",
        b"a FETCH 4294967296 FLAGS\r\n",
        # spacing
        b"a  NOOP\r\n",
        b"a LOGIN  joe pw\r\n",
        b"a NOOP \r\n",
        # 8-bit octets where only atoms may stand
        b"a NO\xc3\x96P\r\n",
        b"a LOGIN j\xc3\xb6e pw\r\n",
        b"a SELECT caf\xc3\xa9\r\n",
        b"a STORE 1 +FLAGS (\xc3\xa9)\r\n",
        b"a ENABLE CONDST\xc3\x96RE\r\n",
        # invalid modified UTF-7 and encodings
        b"a SELECT &AGE-\r\n",
        b"a CREATE a&b\r\n",
        b'a SELECT "caf\xc3\xa9"\r\n',
        b"a LOGIN {2}\r\n\xff\xfe pw\r\n",
    ],
)
def test_malformed_commands(line: bytes) -> None:
    """Ensure missing args, extras, bad sets, 8-bit atoms and bad names are BAD with tag."""
    with pytest.raises(NotParseable) as info:
        parse_command(line)
    assert info.value.tag == "a"
    assert info.value.response().startswith(b"a BAD ")


def test_unsupported_charset_is_tagged_no() -> None:
    """Ensure SEARCH with an unknown charset answers NO [BADCHARSET] (RFC 3501 §6.4.4)."""
    with pytest.raises(NotParseable) as info:
        parse_command(b"s1 SEARCH CHARSET KOI8-R ALL\r\n")
    assert info.value.response() == b"s1 NO [BADCHARSET (US-ASCII UTF-8)] unsupported charset\r\n"


def test_id_limits() -> None:
    """Ensure ID pairs, field and value lengths are limited (RFC 2971 §3.3)."""
    pairs = b" ".join(b'"k%d" "v"' % n for n in range(31))
    with pytest.raises(NotParseable, match="too many"):
        parse_command(b"a ID (" + pairs + b")\r\n")
    with pytest.raises(NotParseable, match="too long"):
        parse_command(b'a ID ("' + b"k" * 31 + b'" "v")\r\n')
    with pytest.raises(NotParseable, match="too long"):
        parse_command(b'a ID ("k" "' + b"v" * 1025 + b'")\r\n')


def test_deep_search_nesting_via_command() -> None:
    """Ensure hostile nesting in SEARCH comes back as a tagged BAD [LIMIT]."""
    with pytest.raises(NotParseable) as info:
        parse_command(b"a SEARCH " + b"(" * 1000 + b"ALL" + b")" * 1000 + b"\r\n")
    assert info.value.response().startswith(b"a BAD [LIMIT]")


def test_states() -> None:
    """Ensure each command declares the states where RFC 3501 §6 allows it."""
    assert CapabilityCommand.states == {
        ProtocolState.NOT_AUTHENTICATED,
        ProtocolState.AUTHENTICATED,
        ProtocolState.SELECTED,
    }
    assert LoginCommand.states == {ProtocolState.NOT_AUTHENTICATED}
    assert SelectCommand.states == {ProtocolState.AUTHENTICATED, ProtocolState.SELECTED}
    assert FetchCommand.states == {ProtocolState.SELECTED}
    assert EnableCommand.states == {ProtocolState.AUTHENTICATED}  # RFC 5161 §3.1
    assert UidExpungeCommand.name == "UID EXPUNGE"
    assert FetchCommand.name == "FETCH"


def test_every_command_name_has_a_class() -> None:
    """Ensure the command names the parser knows match the classes it builds."""
    assert {"LOGIN", "FETCH", "UID", "IDLE", "SETQUOTA"} <= COMMAND_NAMES
    assert "XYZZY" not in COMMAND_NAMES


def test_secrets_stay_out_of_repr() -> None:
    """Ensure passwords, SASL responses and message bodies never reach logs via repr."""
    assert "secret" not in repr(parse_command(b"a LOGIN joe secret\r\n"))
    assert "AGpv" not in repr(parse_command(b"a AUTHENTICATE PLAIN AGpvZQBzZWNyZXQ=\r\n"))
    assert "hello" not in repr(AppendCommand("a", "INBOX", b"hello"))


def test_commands_are_frozen() -> None:
    """Ensure parsed commands are immutable values."""
    command = parse_command(b"a SELECT INBOX\r\n")
    with pytest.raises(AttributeError):
        command.tag = "b"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("line", "done"),
    [(b"DONE\r\n", True), (b"done\r\n", True), (b"DONE", False), (b"a NOOP\r\n", False)],
)
def test_is_idle_done(line: bytes, done: bool) -> None:
    """Ensure only DONE CRLF ends IDLE (RFC 2177 §3)."""
    assert is_idle_done(line) is done


@pytest.mark.parametrize(
    ("line", "value"),
    [(b"AGpvZQBwdw==\r\n", b"\x00joe\x00pw"), (b"\r\n", b""), (b"*\r\n", None)],
)
def test_parse_sasl_response(line: bytes, value: bytes | None) -> None:
    """Ensure SASL continuation lines decode, and '*' means cancel (RFC 3501 §6.2.2)."""
    assert parse_sasl_response(line) == value


@pytest.mark.parametrize("line", [b"AGpvZQ\r\n", b"!!!!\r\n", b"AGpv", b"AG pv\r\n"])
def test_parse_sasl_response_rejects(line: bytes) -> None:
    """Ensure malformed base64 and missing CRLF are refused."""
    with pytest.raises(NotParseable):
        parse_sasl_response(line)


SAMPLES = [
    b"a1 LOGIN joe secret\r\n",
    b'a2 APPEND INBOX (\\Seen) " 7-Feb-1994 21:52:25 -0800" {3}\r\nabc\r\n',
    b"a3 UID SEARCH CHARSET UTF-8 OR (FROM a TO b) NOT 1:3 SINCE 1-Feb-1994 MODSEQ 5\r\n",
    b"a4 FETCH 1:*,7 (FLAGS BODY.PEEK[1.2.HEADER.FIELDS (From)]<0.9>) (CHANGEDSINCE 1)\r\n",
    b"a5 UID STORE 1 (UNCHANGEDSINCE 5) +FLAGS.SILENT (\\Deleted $x)\r\n",
    b'a6 ID ("name" "x" "os" NIL)\r\n',
    b"a7 STATUS &ZeVnLIqe- (MESSAGES HIGHESTMODSEQ)\r\n",
    b"a8 SELECT INBOX (CONDSTORE)\r\n",
    b'a9 SETQUOTA "" (STORAGE 5)\r\n',
]


def test_mutations_only_raise_protocol_errors() -> None:
    """Ensure mangled input yields a command or a protocol error, never a crash."""
    rng = random.Random(3501)
    alphabet = b' ()[]{}<>"\\*%:,.+-0123456789\r\nAZaz\x00\x7f\x80\xff'
    for _ in range(4000):
        data = bytearray(rng.choice(SAMPLES))
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(data))
            match rng.randrange(3):
                case 0:
                    data[pos] = rng.choice(alphabet)
                case 1:
                    del data[pos]
                case _:
                    data.insert(pos, rng.choice(alphabet))
        try:
            parse_command(bytes(data))
        except NotParseable as exc:
            assert exc.response().count(b"\r\n") == 1
        except NeedsLiteral:
            pass
