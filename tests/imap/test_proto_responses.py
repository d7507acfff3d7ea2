"""Response lines (RFC 3501 §7) as bytes."""

import pytest

from imap.proto.fetch import BodySection, Section, SectionText
from imap.proto.formatting import Literal, Raw, format_flags
from imap.proto.responses import (
    ResponseCode,
    Status,
    appenduid_code,
    badcharset_code,
    bye,
    capability_response,
    continuation,
    copyuid_code,
    enabled_response,
    exists_response,
    expunge_response,
    fetch_response,
    flags_response,
    format_code,
    id_response,
    list_response,
    namespace_response,
    quota_response,
    quotaroot_response,
    recent_response,
    sasl_challenge,
    search_response,
    status_response,
    tagged,
    untagged,
    untagged_status,
)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("a1", Status.OK, "LOGIN completed"), b"a1 OK LOGIN completed\r\n"),
        (("a2", "NO", "no such mailbox", "TRYCREATE"), b"a2 NO [TRYCREATE] no such mailbox\r\n"),
        (
            ("a3", Status.OK, "SELECT completed", ResponseCode.READ_WRITE),
            b"a3 OK [READ-WRITE] SELECT completed\r\n",
        ),
        (("a4", Status.BAD, ""), b"a4 BAD .\r\n"),
        (("a5", Status.OK, "tab\tand\r\nnewline"), b"a5 OK tab and newline\r\n"),
        (("a6", Status.OK, "naïve"), b"a6 OK na?ve\r\n"),
    ],
)
def test_tagged(args: tuple[str, ...], line: bytes) -> None:
    """Ensure tagged lines carry status, code and sanitised one-line text."""
    assert tagged(*args) == line  # type: ignore[arg-type]


def test_tagged_refuses_code_breaking_syntax() -> None:
    """Ensure a response code cannot close its brackets early or span lines."""
    with pytest.raises(ValueError):
        tagged("a", Status.NO, "x", "ALERT] injected")
    with pytest.raises(ValueError):
        tagged("a", Status.NO, "x", "A\r\nB")


def test_untagged_forms() -> None:
    """Ensure untagged status, BYE, continuation and raw untagged lines."""
    assert untagged_status(Status.OK, "ready", "UIDNEXT 4392") == b"* OK [UIDNEXT 4392] ready\r\n"
    assert untagged_status("PREAUTH", "hi") == b"* PREAUTH hi\r\n"
    assert bye("Autologout") == b"* BYE Autologout\r\n"
    assert untagged(b"1 EXISTS") == b"* 1 EXISTS\r\n"
    assert continuation() == b"+ \r\n"
    assert continuation("Ready for literal data") == b"+ Ready for literal data\r\n"
    assert sasl_challenge(b"") == b"+ \r\n"
    assert sasl_challenge(b"hi") == b"+ aGk=\r\n"


def test_codes() -> None:
    """Ensure UIDPLUS and other codes render with compact sets and lists."""
    assert appenduid_code(38505, [3955]) == b"APPENDUID 38505 3955"
    assert copyuid_code(38505, [304, 319, 320], [3956, 3957, 3958]) == (
        b"COPYUID 38505 304,319:320 3956:3958"
    )
    assert badcharset_code(["UTF-8"]) == b"BADCHARSET (UTF-8)"
    assert format_code("UIDVALIDITY", 3857529045) == b"UIDVALIDITY 3857529045"
    assert format_code("PERMANENTFLAGS", Raw(format_flags(["\\Seen", "\\*"]))) == (
        b"PERMANENTFLAGS (\\Seen \\*)"
    )
    with pytest.raises(ValueError):
        copyuid_code(1, [1, 2], [3])


def test_simple_untagged() -> None:
    """Ensure the counting and listing untagged responses."""
    assert exists_response(172) == b"* 172 EXISTS\r\n"
    assert recent_response(1) == b"* 1 RECENT\r\n"
    assert expunge_response(3) == b"* 3 EXPUNGE\r\n"
    assert flags_response(["\\Seen", "\\Draft"]) == b"* FLAGS (\\Seen \\Draft)\r\n"
    assert capability_response(["IMAP4rev1", "IDLE", "AUTH=PLAIN"]) == (
        b"* CAPABILITY IMAP4rev1 IDLE AUTH=PLAIN\r\n"
    )
    assert enabled_response(["CONDSTORE"]) == b"* ENABLED CONDSTORE\r\n"


def test_search_response() -> None:
    """Ensure SEARCH lists numbers, adding MODSEQ only when something matched."""
    assert search_response([2, 3, 6]) == b"* SEARCH 2 3 6\r\n"
    assert search_response([]) == b"* SEARCH\r\n"
    assert search_response([2, 5], 917162500) == b"* SEARCH 2 5 (MODSEQ 917162500)\r\n"
    assert search_response([], 917162500) == b"* SEARCH\r\n"


def test_status_response() -> None:
    """Ensure STATUS encodes the mailbox name and lists items in order."""
    line = status_response("Entwürfe", {"MESSAGES": 231, "UIDNEXT": 44292})
    assert line == b'* STATUS "Entw&APw-rfe" (MESSAGES 231 UIDNEXT 44292)\r\n'


@pytest.mark.parametrize(
    ("args", "kwargs", "line"),
    [
        ((["\\HasNoChildren"], "/", "INBOX"), {}, b'* LIST (\\HasNoChildren) "/" "INBOX"\r\n'),
        (([], ".", "Archiv.2024"), {}, b'* LIST () "." "Archiv.2024"\r\n'),
        (
            (["\\Noselect"], None, "日本語"),
            {"command": "LSUB"},
            b'* LSUB (\\Noselect) NIL "&ZeVnLIqe-"\r\n',
        ),
        ((["\\Sent"], "\\", 'Say "hi"'), {}, b'* LIST (\\Sent) "\\\\" "Say \\"hi\\""\r\n'),
    ],
)
def test_list_response(args: tuple[object, ...], kwargs: dict[str, str], line: bytes) -> None:
    """Ensure LIST/LSUB lines take attributes, the delimiter parameter and mUTF-7 names."""
    assert list_response(*args, **kwargs) == line  # type: ignore[arg-type]


@pytest.mark.parametrize(("delimiter", "command"), [("//", "LIST"), ("/", "XLIST")])
def test_list_response_rejects(delimiter: str, command: str) -> None:
    """Ensure a multi-character delimiter or an unknown command is refused."""
    with pytest.raises(ValueError):
        list_response([], delimiter, "x", command=command)


def test_fetch_response() -> None:
    """Ensure FETCH items render names verbatim and values through format_value."""
    section = BodySection(Section((), SectionText.HEADER), peek=True, partial=(0, 10))
    line = fetch_response(
        12,
        [
            ("UID", 4827313),
            ("FLAGS", Raw(format_flags(["\\Seen"]))),
            ("RFC822.SIZE", 44827),
            (section.response_name(), Literal(b"Subject: x")),
        ],
    )
    assert line == (
        b"* 12 FETCH (UID 4827313 FLAGS (\\Seen) RFC822.SIZE 44827 "
        b"BODY[HEADER]<0> {10}\r\nSubject: x)\r\n"
    )


def test_namespace_response() -> None:
    """Ensure NAMESPACE renders each class as a list or NIL (RFC 2342)."""
    assert namespace_response([("", "/")]) == b'* NAMESPACE (("" "/")) NIL NIL\r\n'
    assert namespace_response([("INBOX.", ".")], None, [("Shared/", "/")]) == (
        b'* NAMESPACE (("INBOX." ".")) NIL (("Shared/" "/"))\r\n'
    )


def test_id_response() -> None:
    """Ensure ID renders pairs or NIL (RFC 2971)."""
    assert id_response(None) == b"* ID NIL\r\n"
    assert id_response({"name": "Mailward", "support-url": None}) == (
        b'* ID ("name" "Mailward" "support-url" NIL)\r\n'
    )


def test_quota_responses() -> None:
    """Ensure QUOTA and QUOTAROOT follow RFC 9208."""
    assert quota_response("", [("STORAGE", 10, 512)]) == b'* QUOTA "" (STORAGE 10 512)\r\n'
    assert quotaroot_response("INBOX", [""]) == b'* QUOTAROOT "INBOX" ""\r\n'
