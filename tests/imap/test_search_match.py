"""SEARCH evaluation against one message's facts (RFC 3501 §6.4.4)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from imap.mime import MessageView
from imap.proto.search import (
    AllKey,
    AndKey,
    BodyKey,
    DateField,
    DateKey,
    DateRelation,
    FlagKey,
    HeaderKey,
    ModSeqKey,
    NotKey,
    OrKey,
    SearchKey,
    SequenceKey,
    SizeKey,
    TextKey,
    read_search_criteria,
)
from imap.proto.sequence import SequenceSet
from imap.search_match import MessageFacts, SearchContext, matches, needs_view, sent_date

EST = timezone(timedelta(hours=-5))

MESSAGE = b"""\
From: =?UTF-8?Q?Ren=C3=A9e?= <renee@example.org>
To: Bob <bob@example.com>, carol@example.net
Cc: Dave <dave@example.com>
Bcc: eve@example.com
Subject: Quarterly =?UTF-8?B?UsOpc3Vtw6k=?=
Date: Sun, 1 Mar 2026 23:30:00 -0500
X-Mailer: Mailward Tests
Content-Type: multipart/alternative; boundary=b

--b
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

The numbers are in: caf=C3=A9 revenue doubled.
--b
Content-Type: text/html

<p>The <b>numbers</b> are in.</p>
--b--
"""


class Loader:
    """Counts how often the message content is read."""

    def __init__(self, data: bytes = MESSAGE) -> None:
        self.data = data
        self.calls = 0

    def __call__(self) -> MessageView:
        self.calls += 1
        return MessageView(self.data)


def facts(
    *flags: str,
    seq: int = 3,
    uid: int = 42,
    size: int = 1000,
    modseq: int = 7,
    recent: bool = False,
    internal: datetime = datetime(2026, 3, 1, 23, 30, tzinfo=EST),
    data: bytes = MESSAGE,
) -> MessageFacts:
    return MessageFacts(
        seq=seq,
        uid=uid,
        flags=frozenset(flags),
        internal_date=internal,
        size=size,
        modseq=modseq,
        load=Loader(data),
        recent=recent,
    )


CTX = SearchContext(max_seq=10, max_uid=50)


def parse(criteria: str) -> SearchKey:
    data = b" " + criteria.encode()
    key, end = read_search_criteria(data, 0)
    assert end == len(data)
    return key


def check(criteria: str, message: MessageFacts, ctx: SearchContext = CTX) -> bool:
    return matches(parse(criteria), message, ctx)


def test_all() -> None:
    """Ensure ALL matches every message without reading it."""
    message = facts()
    assert matches(AllKey(), message, CTX)
    assert not message.loaded


@pytest.mark.parametrize(
    ("flag", "name"),
    [
        ("\\Seen", "SEEN"),
        ("\\Answered", "ANSWERED"),
        ("\\Deleted", "DELETED"),
        ("\\Draft", "DRAFT"),
        ("\\Flagged", "FLAGGED"),
    ],
)
def test_system_flags(flag: str, name: str) -> None:
    """Ensure each system flag key and its UN- form test the flag set."""
    assert check(name, facts(flag))
    assert not check(name, facts())
    assert check(f"UN{name}", facts())
    assert not check(f"UN{name}", facts(flag))


def test_flags_compare_case_insensitively() -> None:
    """Ensure a flag stored in another case still matches."""
    assert matches(FlagKey("\\Seen"), facts("\\SEEN"), CTX)
    assert check("KEYWORD $forwarded", facts("$Forwarded"))


def test_keyword_and_unkeyword() -> None:
    """Ensure KEYWORD and UNKEYWORD test keywords."""
    assert check("KEYWORD $Junk", facts("$Junk"))
    assert not check("KEYWORD $Junk", facts("\\Seen"))
    assert check("UNKEYWORD $Junk", facts("\\Seen"))
    assert not check("UNKEYWORD $Junk", facts("$Junk"))


def test_recent_new_old() -> None:
    """Ensure RECENT, NEW (recent and unseen) and OLD (not recent)."""
    assert check("RECENT", facts(recent=True))
    assert check("RECENT", facts("\\Recent"))
    assert not check("RECENT", facts())
    assert check("NEW", facts(recent=True))
    assert not check("NEW", facts("\\Seen", recent=True))
    assert not check("NEW", facts())
    assert check("OLD", facts("\\Seen"))
    assert not check("OLD", facts(recent=True))


def test_not_or_and() -> None:
    """Ensure NOT, OR and implicit AND (also in parentheses) combine keys."""
    seen = facts("\\Seen")
    flagged = facts("\\Flagged")
    assert check("NOT FLAGGED", seen)
    assert not check("NOT SEEN", seen)
    assert check("OR SEEN FLAGGED", seen) and check("OR SEEN FLAGGED", flagged)
    assert not check("OR SEEN FLAGGED", facts())
    assert check("SEEN UNFLAGGED", seen)
    assert not check("SEEN FLAGGED", seen)
    assert check("(OR DELETED (SEEN UNDRAFT)) NOT (ANSWERED)", seen)
    assert matches(AndKey(()), facts(), CTX)  # an empty conjunction holds


def test_sequence_set() -> None:
    """Ensure a bare sequence set tests the sequence number, with * as EXISTS."""
    assert check("3", facts(seq=3))
    assert check("1:2,3", facts(seq=3))
    assert not check("4:6", facts(seq=3))
    assert check("*", facts(seq=10))
    assert not check("*", facts(seq=9))
    assert check("8:*", facts(seq=9))
    assert check("*:8", facts(seq=9))


def test_uid_set() -> None:
    """Ensure UID tests the UID, with * as the highest UID in use."""
    assert check("UID 42", facts(uid=42))
    assert check("UID 40:45", facts(uid=42))
    assert not check("UID 1:41,43", facts(uid=42))
    assert check("UID *", facts(uid=50))
    assert check("UID 60:*", facts(uid=50))  # n:* includes the highest UID
    assert not check("UID 42", facts(seq=42, uid=1))


def test_sequence_ranges_are_resolved_once_per_context() -> None:
    """Ensure a context caches each set's resolved ranges."""
    ctx = SearchContext(max_seq=5, max_uid=5)
    key = SequenceKey(SequenceSet(((2, 4), (None, None))))
    assert [n for n in range(1, 7) if matches(key, facts(seq=n), ctx)] == [2, 3, 4, 5]
    assert list(ctx._ranges) == [key]


def test_larger_and_smaller() -> None:
    """Ensure LARGER and SMALLER compare the RFC822 size strictly."""
    assert check("LARGER 999", facts(size=1000))
    assert not check("LARGER 1000", facts(size=1000))
    assert check("SMALLER 1001", facts(size=1000))
    assert not check("SMALLER 1000", facts(size=1000))


def test_internal_date_keys_use_the_date_in_its_zone() -> None:
    """Ensure BEFORE, ON and SINCE compare the internal date's own calendar date."""
    # 23:30 -0500 on 1 March is already 2 March in UTC; the date stays 1 March.
    message = facts()
    assert check("ON 1-Mar-2026", message)
    assert not check("ON 2-Mar-2026", message)
    assert check("BEFORE 2-Mar-2026", message)
    assert not check("BEFORE 1-Mar-2026", message)
    assert check("SINCE 1-Mar-2026", message)
    assert not check("SINCE 2-Mar-2026", message)
    assert not message.loaded


def test_sent_date_keys_use_the_date_header() -> None:
    """Ensure SENTBEFORE, SENTON and SENTSINCE compare the Date header's date."""
    message = facts(internal=datetime(2020, 1, 1, tzinfo=EST))
    assert check("SENTON 1-Mar-2026", message)
    assert not check("SENTON 2-Mar-2026", message)
    assert check("SENTBEFORE 2-Mar-2026", message)
    assert not check("SENTBEFORE 1-Mar-2026", message)
    assert check("SENTSINCE 1-Mar-2026", message)
    assert not check("SENTSINCE 2-Mar-2026", message)
    assert message.loaded


@pytest.mark.parametrize("header", [b"", b"Date: not a date\n", b"Date: 31 Feb 2026 10:00 +0000\n"])
def test_sent_date_keys_without_valid_date_match_nothing(header: bytes) -> None:
    """Ensure a missing or unparseable Date header matches no SENT* key."""
    message = facts(data=header + b"Subject: x\n\nbody\n")
    assert sent_date(message.view) is None
    for name in ("SENTBEFORE", "SENTON", "SENTSINCE"):
        assert not check(f"{name} 1-Mar-2026", message)
        assert check(f"NOT {name} 1-Mar-2026", message)


def test_header_substring_is_case_insensitive_and_decoded() -> None:
    """Ensure HEADER matches a decoded substring in any case."""
    message = facts()
    assert check("HEADER X-Mailer mailward", message)
    assert check('HEADER subject "quarterly r\u00e9sum\u00e9"', message)
    assert not check("HEADER X-Mailer Outlook", message)
    assert not check("HEADER X-Absent anything", message)


def test_header_empty_string_tests_presence() -> None:
    """Ensure HEADER with an empty string matches every message having the field."""
    assert check('HEADER X-Mailer ""', facts())
    assert not check('HEADER X-Absent ""', facts())


@pytest.mark.parametrize(
    ("key", "hit", "miss"),
    [
        ("FROM", "Ren\u00e9e", "bob@"),
        ("FROM", "RENEE@EXAMPLE", "dave"),
        ("TO", "carol@example.net", "renee"),
        ("CC", "dave", "carol"),
        ("BCC", "eve@", "bob"),
        ("SUBJECT", "r\u00e9sum\u00e9", "minutes"),
    ],
)
def test_address_and_subject_keys(key: str, hit: str, miss: str) -> None:
    """Ensure FROM, TO, CC, BCC and SUBJECT search their own decoded field."""
    assert check(f'{key} "{hit}"', facts())
    assert not check(f'{key} "{miss}"', facts())


def test_body_searches_decoded_text_not_headers() -> None:
    """Ensure BODY finds decoded body text and ignores header and markup."""
    assert check('BODY "caf\u00e9 REVENUE"', facts())
    assert check("BODY numbers", facts())
    assert not check("BODY Quarterly", facts())
    assert not check("BODY <b>", facts())


def test_text_searches_headers_and_body() -> None:
    """Ensure TEXT finds strings in the header as well as the body."""
    assert check("TEXT quarterly", facts())
    assert check("TEXT doubled", facts())
    assert check("TEXT x-mailer", facts())
    assert not check("TEXT absent-word", facts())


def test_modseq() -> None:
    """Ensure MODSEQ matches messages with a mod-sequence at least the given one."""
    assert check("MODSEQ 7", facts(modseq=7))
    assert check("MODSEQ 3", facts(modseq=7))
    assert not check("MODSEQ 8", facts(modseq=7))
    assert check('MODSEQ "/flags/\\\\Seen" all 7', facts(modseq=7))


def test_flag_only_searches_never_read_the_message() -> None:
    """Ensure flags, sizes, numbers and dates are answered without loading content."""
    message = facts("\\Seen")
    key = parse("OR (SEEN LARGER 5) (UID 1:* SINCE 1-Jan-2020) NOT DELETED MODSEQ 1 1:*")
    assert matches(key, message, CTX)
    assert not message.loaded


def test_cheap_keys_short_circuit_content_keys() -> None:
    """Ensure a failing flag spares reading the file, whatever the client's key order."""
    message = facts("\\Seen")
    assert not check("BODY numbers UNSEEN", message)
    assert not message.loaded
    assert check("OR BODY nothing-here SEEN", message)
    assert not message.loaded


def test_content_is_loaded_once() -> None:
    """Ensure several content keys share one load of the message."""
    message = facts()
    assert check("BODY numbers SUBJECT quarterly TEXT doubled SENTON 1-Mar-2026", message)
    assert isinstance(message.load, Loader)
    assert message.load.calls == 1


def test_needs_view() -> None:
    """Ensure needs_view tells content keys from cheap ones, through NOT/OR/AND."""
    assert needs_view(BodyKey("x"))
    assert needs_view(TextKey("x"))
    assert needs_view(HeaderKey("From", "x"))
    assert needs_view(DateKey(DateField.SENT, DateRelation.ON, date(2026, 1, 1)))
    assert not needs_view(DateKey(DateField.INTERNAL, DateRelation.ON, date(2026, 1, 1)))
    assert not needs_view(AndKey((FlagKey("\\Seen"), SizeKey(True, 1), ModSeqKey(1))))
    assert needs_view(NotKey(OrKey(FlagKey("\\Seen"), BodyKey("x"))))


def test_unknown_key_is_refused() -> None:
    """Ensure a value that is not a search key raises instead of matching."""
    with pytest.raises(TypeError):
        matches(("ALL",), facts(), CTX)  # type: ignore[arg-type]
