"""Message content for FETCH: ENVELOPE, BODYSTRUCTURE, BODY[section], partial."""

from __future__ import annotations

import email
from email.message import EmailMessage, Message
from email.policy import compat32

import pytest

from imap.mime import (
    MessageView,
    SectionSpec,
    address_list,
    body_structure,
    envelope,
    header_value,
    header_values,
    partial,
    render,
    section,
    text_for_search,
    to_crlf,
)
from imap.mime_entity import split_multipart

# Messages are written as stored in Maildir: LF line endings.
PLAIN = b"""\
From: Alice Example <alice@example.org>
To: Bob <bob@example.com>
Subject: Hello
Date: Mon, 7 Feb 1994 21:52:25 -0800
Message-ID: <1@example.org>
Content-Type: text/plain; charset="utf-8"

Hello Bob,
how are you?
"""

ALTERNATIVE = b"""\
From: Alice Example <alice@example.org>
Subject: Alternatives
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=us-ascii
Content-Transfer-Encoding: 7bit

Plain text.
Second line.
--alt
Content-Type: text/html; charset=us-ascii
Content-Transfer-Encoding: quoted-printable

<p>HTML =3D text.</p>
--alt--
"""

MIXED = b"""\
From: Alice Example <alice@example.org>
Subject: With attachment
Content-Type: multipart/mixed; boundary="mix"

This is a preamble.
--mix
Content-Type: text/plain

See attached.
--mix
Content-Type: application/octet-stream; name="data.bin"
Content-Transfer-Encoding: base64
Content-Disposition: attachment;
\tfilename="data.bin"
Content-ID: <att1@example.org>
Content-Description: Some data
Content-Language: en, de
Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==
Content-Location: http://example.org/data.bin

AAECAwQFBgcICQ==
--mix--
This is an epilogue.
"""

# The example of RFC 3501 §6.4.5, with a real body for every part.
RFC3501_EXAMPLE = b"""\
From: Fred Foobar <foobar@Blurdybloop.example>
To: mooch@owatagu.siam.edu.example
Subject: RFC 3501 section example
Date: Mon, 7 Feb 1994 21:52:25 -0800
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b0"

--b0
Content-Type: text/plain

Part 1.
--b0
Content-Type: application/octet-stream
Content-Transfer-Encoding: base64

UGFydCAy
--b0
Content-Type: message/rfc822

From: Inner <inner@example.org>
Subject: Part 3
Content-Type: multipart/mixed; boundary="b3"

--b3
Content-Type: text/plain

Part 3.1.
--b3
Content-Type: application/octet-stream

Part 3.2.
--b3--
--b0
Content-Type: multipart/mixed; boundary="b4"

--b4
Content-Type: image/gif
Content-Transfer-Encoding: base64

R0lGODlhAQABAAAAACw=
--b4
Content-Type: message/rfc822

From: Deep <deep@example.org>
Subject: Part 4.2
Content-Type: multipart/mixed; boundary="b42"

--b42
Content-Type: text/plain

Part 4.2.1.
--b42
Content-Type: multipart/alternative; boundary="b422"

--b422
Content-Type: text/plain

Part 4.2.2.1.
--b422
Content-Type: text/richtext

Part 4.2.2.2.
--b422--
--b42--
--b4--
--b0--
"""

# message/rfc822 parts inside multipart/mixed, by way of a digest (RFC 2046
# §5.1.5: a digest part without Content-Type is message/rfc822).
DIGEST = b"""\
From: list@example.org
Subject: Digest
Content-Type: multipart/mixed; boundary="m"

--m
Content-Type: text/plain

Digest follows.
--m
Content-Type: multipart/digest; boundary="d"

--d

From: one@example.org
Subject: First

First body.
--d

From: two@example.org
Subject: Second

Second body.
--d--
--m--
"""

ENCODED = """\
From: =?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>
To: A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;
Cc: Undisclosed recipients:;
Subject: =?UTF-8?B?w6l0w6kg?=
 =?UTF-8?Q?encod=C3=A9?=
X-Raw: caf\u00e9 cr\u00e8me
Date: Thu, 13 Feb 1969 23:32:54 -0330

No Content-Type here.
""".encode()


def spec(parts: tuple[int, ...] = (), text: str | None = None, *headers: str) -> SectionSpec:
    return SectionSpec(parts, text, headers)


def fetch(message: bytes, parts: tuple[int, ...] = (), text: str | None = None, *h: str) -> bytes:
    return section(MessageView(message), spec(parts, text, *h))


# -- the CRLF view -------------------------------------------------------------


def test_view_presents_crlf_and_counts_it() -> None:
    """Ensure LF input is presented with CRLF and sized in that form."""
    view = MessageView(PLAIN)
    assert b"\n" not in view.raw.replace(b"\r\n", b"")
    assert view.raw == PLAIN.replace(b"\n", b"\r\n")
    assert view.size == len(PLAIN) + PLAIN.count(b"\n")


def test_view_leaves_crlf_input_alone() -> None:
    """Ensure CRLF and mixed input give the same octets as LF input."""
    crlf = PLAIN.replace(b"\n", b"\r\n")
    assert MessageView(crlf).raw == crlf
    mixed = PLAIN.replace(b"\n", b"\r\n", 2)
    assert mixed not in (PLAIN, crlf)
    assert MessageView(mixed).raw == MessageView(PLAIN).raw
    assert to_crlf(b"no newline") == b"no newline"


def test_view_parses_lazily_once() -> None:
    """Ensure the MIME tree is parsed on first use and then reused."""
    view = MessageView(ALTERNATIVE)
    assert view._root is None
    root = view.root
    assert view.root is root
    assert body_structure(view, True) is body_structure(view, True)


# -- BODYSTRUCTURE ---------------------------------------------------------------


def test_bodystructure_plain() -> None:
    """Ensure a text/plain message gives the RFC 3501 §7.4.2 single-part form."""
    view = MessageView(PLAIN)
    # Body: "Hello Bob,\r\nhow are you?\r\n" = 12 + 14 octets, 2 lines.
    assert render(body_structure(view, True)) == (
        b'("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 26 2 NIL NIL NIL NIL)'
    )
    assert render(body_structure(view, False)) == (
        b'("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 26 2)'
    )


def test_bodystructure_alternative() -> None:
    """Ensure multipart/alternative lists its parts, subtype and extension data."""
    view = MessageView(ALTERNATIVE)
    # Part 1: "Plain text.\r\nSecond line." = 25 octets, 2 lines (the CRLF
    # before "--alt" belongs to the boundary). Part 2: 21 octets, 1 line.
    assert render(body_structure(view, True)) == (
        b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 25 2 NIL NIL NIL NIL)'
        b' ("TEXT" "HTML" ("CHARSET" "us-ascii") NIL NIL "QUOTED-PRINTABLE" 21 1 NIL NIL NIL NIL)'
        b' "ALTERNATIVE" ("BOUNDARY" "alt") NIL NIL NIL)'
    )
    assert render(body_structure(view, False)) == (
        b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 25 2)'
        b' ("TEXT" "HTML" ("CHARSET" "us-ascii") NIL NIL "QUOTED-PRINTABLE" 21 1)'
        b' "ALTERNATIVE")'
    )


def test_bodystructure_attachment_extension_data() -> None:
    """Ensure id, description, encoding, md5, disposition, language and location."""
    structure = body_structure(MessageView(MIXED), True)
    text, attachment, subtype, params, disposition, language, location = structure
    assert text == ("TEXT", "PLAIN", None, None, None, "7BIT", 13, 1, None, None, None, None)
    assert attachment == (
        "APPLICATION",
        "OCTET-STREAM",
        ("NAME", "data.bin"),
        "<att1@example.org>",
        "Some data",
        "BASE64",
        16,
        "Q2hlY2sgSW50ZWdyaXR5IQ==",
        ("ATTACHMENT", ("FILENAME", "data.bin")),
        ("en", "de"),
        "http://example.org/data.bin",
    )
    assert (subtype, params, disposition, language, location) == (
        "MIXED",
        ("BOUNDARY", "mix"),
        None,
        None,
        None,
    )
    # BODY drops the extension data at every level.
    assert body_structure(MessageView(MIXED), False) == (
        text[:8],
        attachment[:7],
        "MIXED",
    )


def test_bodystructure_without_content_type() -> None:
    """Ensure a message without Content-Type is text/plain; charset=us-ascii, 7BIT."""
    view = MessageView(ENCODED)
    assert render(body_structure(view, False)) == (
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 23 1)'
    )


def test_bodystructure_message_rfc822() -> None:
    """Ensure message/rfc822 carries the envelope, body and line count of its message."""
    view = MessageView(RFC3501_EXAMPLE)
    part3 = body_structure(view, False)[2]
    inner = section(view, spec((3,)))
    assert part3[:7] == ("MESSAGE", "RFC822", None, None, None, "7BIT", len(inner))
    envelope3, body3, lines3 = part3[7:]
    assert envelope3[1] == "Part 3"
    assert envelope3[2] == (("Inner", None, "inner", "example.org"),)
    assert body3 == (
        ("TEXT", "PLAIN", None, None, None, "7BIT", 9, 1),
        ("APPLICATION", "OCTET-STREAM", None, None, None, "7BIT", 9),
        "MIXED",
    )
    assert lines3 == inner.count(b"\r\n") + 1 == 13


def test_bodystructure_digest_defaults_to_message() -> None:
    """Ensure parts of multipart/digest without Content-Type are message/rfc822."""
    structure = body_structure(MessageView(DIGEST), False)
    digest = structure[1]
    assert digest[-1] == "DIGEST"
    first = digest[0]
    assert first[:2] == ("MESSAGE", "RFC822")
    assert first[7][1] == "First"
    assert first[8] == ("TEXT", "PLAIN", ("CHARSET", "US-ASCII"), None, None, "7BIT", 11, 1)


def _email_types(message: Message) -> list[tuple[str, str]]:
    return [(part.get_content_maintype(), part.get_content_subtype()) for part in message.walk()]


def _structure_types(structure: tuple) -> list[tuple[str, str]]:
    if isinstance(structure[0], tuple):  # multipart: bodies, then the subtype
        count = next(k for k, item in enumerate(structure) if isinstance(item, str))
        types = [("multipart", structure[count].lower())]
        for part in structure[:count]:
            types += _structure_types(part)
        return types
    types = [(structure[0].lower(), structure[1].lower())]
    if types[0] == ("message", "rfc822"):
        types += _structure_types(structure[8])
    return types


@pytest.mark.parametrize("message", [PLAIN, ALTERNATIVE, MIXED, RFC3501_EXAMPLE, DIGEST, ENCODED])
@pytest.mark.parametrize("extended", [False, True])
def test_bodystructure_types_agree_with_email_package(message: bytes, extended: bool) -> None:
    """Ensure every part's type/subtype matches what Python's email parser sees."""
    parsed = email.message_from_bytes(message, policy=compat32)
    assert _structure_types(body_structure(MessageView(message), extended)) == _email_types(parsed)


def _email_leaves(part: Message, path: tuple[int, ...]) -> list[tuple[tuple[int, ...], bytes]]:
    if part.get_content_type() == "message/rfc822":
        return _email_message_parts(part.get_payload(0), path)
    if part.is_multipart():
        leaves = []
        for number, child in enumerate(part.get_payload(), 1):
            leaves += _email_leaves(child, (*path, number))
        return leaves
    return [(path, part.get_payload().encode("ascii", "surrogateescape"))]


def _email_message_parts(
    message: Message, path: tuple[int, ...]
) -> list[tuple[tuple[int, ...], bytes]]:
    if message.get_content_maintype() == "multipart":
        return _email_leaves(message, path)
    return _email_leaves(message, (*path, 1))


def _generated_message() -> bytes:
    attached = EmailMessage()
    attached["From"] = "Inner <inner@example.org>"
    attached["Subject"] = "Attached \u00e9t\u00e9"
    attached.set_content("Inner text, caf\u00e9.\n", cte="quoted-printable")
    attached.add_alternative("<p>Inner html</p>\n", subtype="html")
    outer = EmailMessage()
    outer["From"] = "Outer <outer@example.org>"
    outer["To"] = "Group: a@example.org, b@example.org;"
    outer["Subject"] = "Generated"
    outer.set_content("Plain body\n\nwith lines.\n")
    outer.add_alternative("<p>Html body</p>\n", subtype="html")
    outer.add_attachment(bytes(range(256)) * 4, "application", "octet-stream", filename="b.bin")
    outer.add_attachment(attached)
    return outer.as_bytes()


def test_leaf_octets_agree_with_email_package() -> None:
    """Ensure every leaf part's BODY[path] equals the email package's raw payload."""
    message = _generated_message()
    view = MessageView(message)
    parsed = email.message_from_bytes(view.raw, policy=compat32)
    leaves = _email_message_parts(parsed, ())
    assert [path for path, _ in leaves] == [(1, 1), (1, 2), (2,), (3, 1), (3, 2)]
    for path, payload in leaves:
        assert section(view, spec(path)) == payload, path
    assert _structure_types(body_structure(view, True)) == _email_types(parsed)


# -- ENVELOPE ----------------------------------------------------------------------


def test_envelope_plain() -> None:
    """Ensure ENVELOPE fields come in RFC 3501 order, sender and reply-to from From."""
    assert render(envelope(MessageView(PLAIN))) == (
        b'("Mon, 7 Feb 1994 21:52:25 -0800" "Hello"'
        b' (("Alice Example" NIL "alice" "example.org"))'
        b' (("Alice Example" NIL "alice" "example.org"))'
        b' (("Alice Example" NIL "alice" "example.org"))'
        b' (("Bob" NIL "bob" "example.com")) NIL NIL NIL "<1@example.org>")'
    )


def test_envelope_keeps_encoded_words_and_groups() -> None:
    """Ensure encoded words stay raw, groups get markers, folding is undone."""
    value = envelope(MessageView(ENCODED))
    assert render(value) == (
        b'("Thu, 13 Feb 1969 23:32:54 -0330" "=?UTF-8?B?w6l0w6kg?= =?UTF-8?Q?encod=C3=A9?="'
        b' (("=?ISO-8859-1?Q?Andr=E9?= Pirard" NIL "PIRARD" "vm1.ulg.ac.be"))'
        b' (("=?ISO-8859-1?Q?Andr=E9?= Pirard" NIL "PIRARD" "vm1.ulg.ac.be"))'
        b' (("=?ISO-8859-1?Q?Andr=E9?= Pirard" NIL "PIRARD" "vm1.ulg.ac.be"))'
        b' ((NIL NIL "A Group" NIL) ("Ed Jones" NIL "c" "a.test") (NIL NIL "joe" "where.test")'
        b' ("John" NIL "jdoe" "one.test") (NIL NIL NIL NIL))'
        b' ((NIL NIL "Undisclosed recipients" NIL) (NIL NIL NIL NIL))'
        b" NIL NIL NIL)"
    )


def test_envelope_explicit_sender_and_reply_to() -> None:
    """Ensure Sender and Reply-To are used when present and non-empty."""
    message = b"From: a@example.org\nSender: s@example.org\nReply-To:\nIn-Reply-To: <0@x>\n\nbody\n"
    value = envelope(MessageView(message))
    assert value[3] == ((None, None, "s", "example.org"),)
    assert value[4] == value[2] == ((None, None, "a", "example.org"),)
    assert value[8] == "<0@x>"
    assert value[0] is None and value[1] is None and value[9] is None


def test_address_list_forms() -> None:
    """Ensure quoted names, comments, routes and missing domains parse."""
    assert address_list('"Giant; \\"Big\\" Box" <sysservices@example.net>') == (
        ('Giant; "Big" Box', None, "sysservices", "example.net"),
    )
    assert address_list("Joe Q. Public <john@example.com>") == (
        ("Joe Q. Public", None, "john", "example.com"),
    )
    assert address_list("x@y.test (Comment Name)") == (("Comment Name", None, "x", "y.test"),)
    assert address_list("<@r1.test,@r2.test:u@h.test>") == (
        (None, "@r1.test,@r2.test", "u", "h.test"),
    )
    assert address_list("postmaster") == ((None, None, "postmaster", ""),)
    assert address_list("") is None
    assert address_list(None) is None
    assert render(address_list('"a\\\\b" <q@x>')) == b'(("a\\\\b" NIL "q" "x"))'


def test_envelope_raw_utf8_becomes_literal() -> None:
    """Ensure an unencoded 8-bit subject is sent as a literal, not a quoted string."""
    value = envelope(MessageView("Subject: caf\u00e9\n\nx\n".encode()))
    assert value[1] == "caf\u00e9"
    assert render(value[1]) == b"{5}\r\ncaf\xc3\xa9"


# -- BODY[section] -----------------------------------------------------------------


def test_section_whole_header_and_text() -> None:
    """Ensure BODY[], BODY[HEADER] and BODY[TEXT] split the message at the blank line."""
    view = MessageView(PLAIN)
    header = section(view, spec((), "HEADER"))
    text = section(view, spec((), "TEXT"))
    assert section(view, spec()) == view.raw
    assert header.endswith(b"\r\n\r\n")
    assert header + text == view.raw
    assert text == b"Hello Bob,\r\nhow are you?\r\n"


def test_section_non_multipart_part_one_is_body() -> None:
    """Ensure part 1 of a single-part message is its body; part 2 does not exist."""
    view = MessageView(PLAIN)
    assert section(view, spec((1,))) == section(view, spec((), "TEXT"))
    assert section(view, spec((1,), "MIME")) == section(view, spec((), "HEADER"))
    assert section(view, spec((2,))) == b""
    assert section(view, spec((1, 1))) == b""
    assert section(view, spec((1,), "HEADER")) == b""


def test_section_rfc3501_example_parts() -> None:
    """Ensure every section name of the RFC 3501 §6.4.5 example gives its exact octets."""
    view = MessageView(RFC3501_EXAMPLE)
    raw = view.raw

    def at(data: bytes) -> int:
        assert raw.count(data) == 1
        return raw.index(data)

    part1 = section(view, spec((1,)))
    assert part1 == b"Part 1."
    assert raw[at(b"Part 1.") : at(b"Part 1.") + len(part1)] == part1
    assert section(view, spec((2,))) == b"UGFydCAy"
    inner = section(view, spec((3,)))
    assert inner.startswith(b"From: Inner <inner@example.org>\r\n")
    assert inner.endswith(b"--b3--")
    assert section(view, spec((3,), "HEADER")) == (
        b"From: Inner <inner@example.org>\r\nSubject: Part 3\r\n"
        b'Content-Type: multipart/mixed; boundary="b3"\r\n\r\n'
    )
    assert section(view, spec((3,), "TEXT")).startswith(b"--b3\r\nContent-Type: text/plain")
    assert section(view, spec((3,), "HEADER")) + section(view, spec((3,), "TEXT")) == inner
    assert section(view, spec((3,), "MIME")) == b"Content-Type: message/rfc822\r\n\r\n"
    assert section(view, spec((3, 1))) == b"Part 3.1."
    assert section(view, spec((3, 2))) == b"Part 3.2."
    part4 = section(view, spec((4,)))
    assert part4.startswith(b"--b4\r\n") and part4.endswith(b"--b4--")
    assert section(view, spec((4, 1))) == b"R0lGODlhAQABAAAAACw="
    assert section(view, spec((4, 1), "MIME")) == (
        b"Content-Type: image/gif\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    assert section(view, spec((4, 2), "HEADER")).startswith(b"From: Deep <deep@example.org>")
    assert section(view, spec((4, 2), "TEXT")).startswith(b"--b42\r\n")
    assert section(view, spec((4, 2, 1))) == b"Part 4.2.1."
    assert section(view, spec((4, 2, 2))).startswith(b"--b422\r\n")
    assert section(view, spec((4, 2, 2, 1))) == b"Part 4.2.2.1."
    assert section(view, spec((4, 2, 2, 2))) == b"Part 4.2.2.2."
    assert section(view, spec((4, 2, 2, 2), "MIME")) == b"Content-Type: text/richtext\r\n\r\n"


def test_section_missing_parts_are_empty() -> None:
    """Ensure parts that do not exist, and HEADER/TEXT of non-message parts, are empty."""
    view = MessageView(RFC3501_EXAMPLE)
    for parts, text in [
        ((5,), None),
        ((4, 3), None),
        ((1, 1), None),
        ((4, 2, 3), None),
        ((1,), "HEADER"),
        ((4,), "TEXT"),
        ((4, 1), "HEADER.FIELDS"),
        ((), "MIME"),
    ]:
        assert section(view, spec(parts, text, "From")) == b"", (parts, text)


def test_section_text_of_message_inside_multipart() -> None:
    """Ensure BODY[2.1.TEXT] and BODY[2.1.HEADER] address a digest's first message."""
    view = MessageView(DIGEST)
    assert section(view, spec((2, 1), "TEXT")) == b"First body."
    assert section(view, spec((2, 1), "HEADER")) == (
        b"From: one@example.org\r\nSubject: First\r\n\r\n"
    )
    assert section(view, spec((2, 1), "MIME")) == b"\r\n"  # a part without header
    assert section(view, spec((2, 2, 1))) == b"Second body."
    assert section(view, spec((2, 2), "HEADER.FIELDS", "subject")) == (b"Subject: Second\r\n\r\n")


def test_section_header_fields() -> None:
    """Ensure HEADER.FIELDS matches names case-insensitively and ends with a blank line."""
    view = MessageView(ENCODED)
    result = section(view, spec((), "HEADER.FIELDS", "from", "SUBJECT"))
    assert result == (
        b"From: =?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>\r\n"
        b"Subject: =?UTF-8?B?w6l0w6kg?=\r\n =?UTF-8?Q?encod=C3=A9?=\r\n"
        b"\r\n"
    )
    assert section(view, spec((), "HEADER.FIELDS", "X-Absent")) == b"\r\n"


def test_section_header_fields_not() -> None:
    """Ensure HEADER.FIELDS.NOT keeps every other field, in order, with the blank line."""
    view = MessageView(PLAIN)
    result = section(view, spec((), "HEADER.FIELDS.NOT", "to", "Date", "Message-ID"))
    assert result == (
        b"From: Alice Example <alice@example.org>\r\nSubject: Hello\r\n"
        b'Content-Type: text/plain; charset="utf-8"\r\n\r\n'
    )


def test_section_accepts_parser_section() -> None:
    """Ensure the parser's Section value can be passed as the section spec."""
    read_section = pytest.importorskip("imap.proto.fetch").read_section
    view = MessageView(DIGEST)
    parsed, _ = read_section(b"[2.1.TEXT]", 0)
    assert section(view, parsed) == b"First body."
    parsed, _ = read_section(b"[HEADER.FIELDS (Subject)]", 0)
    assert section(view, parsed) == b"Subject: Digest\r\n\r\n"


def test_section_spec_validates() -> None:
    """Ensure unknown section texts and part number 0 are refused."""
    with pytest.raises(ValueError):
        SectionSpec((), "BODY")
    with pytest.raises(ValueError):
        SectionSpec((0,))


# -- partial -----------------------------------------------------------------------


def test_partial() -> None:
    """Ensure <origin.length> slices the section and is empty past its end."""
    assert partial(b"0123456789", 2, 3) == b"234"
    assert partial(b"0123456789", 8, 5) == b"89"
    assert partial(b"0123456789", 10, 5) == b""
    assert partial(b"0123456789", 4, None) == b"456789"
    with pytest.raises(ValueError):
        partial(b"x", -1, 1)


def test_partial_of_section_uses_crlf_offsets() -> None:
    """Ensure BODY[TEXT]<10.4> counts the CRLF of the stored LF line ending."""
    text = section(MessageView(PLAIN), spec((), "TEXT"))
    assert partial(text, 10, 4) == b"\r\nho"


# -- structure edge cases ----------------------------------------------------------


def test_boundary_prefix_line_is_not_a_delimiter() -> None:
    """Ensure a line that merely starts with the boundary does not split the part."""
    message = b"Content-Type: multipart/mixed; boundary=ab\n\n--ab\n\nx\n--abc\ny\n--ab--\n"
    view = MessageView(message)
    assert section(view, spec((1,))) == b"x\r\n--abc\r\ny"
    assert section(view, spec((2,))) == b""


def test_missing_close_delimiter_runs_to_end() -> None:
    """Ensure the last part extends to the end when the close delimiter is missing."""
    message = b"Content-Type: multipart/mixed; boundary=z\n\n--z\n\none\n--z  \n\ntwo\n"
    view = MessageView(message)
    assert section(view, spec((1,))) == b"one"
    assert section(view, spec((2,))) == b"two\r\n"


def test_multipart_without_boundary_is_one_text_part() -> None:
    """Ensure a multipart lacking a usable boundary is shown as a single text part."""
    view = MessageView(b"Content-Type: multipart/mixed\n\n--x\n\nbody\n")
    assert body_structure(view, False)[:2] == ("TEXT", "PLAIN")
    assert section(view, spec((1,))) == b"--x\r\n\r\nbody\r\n"


def test_header_only_and_body_only_messages() -> None:
    """Ensure a message without blank line is all header, one starting with it all body."""
    view = MessageView(b"Subject: no body\n")
    assert section(view, spec((), "TEXT")) == b""
    assert section(view, spec((), "HEADER")) == b"Subject: no body\r\n"
    view = MessageView(b"\nJust a body.\n")
    assert section(view, spec((), "HEADER")) == b"\r\n"
    assert section(view, spec((), "TEXT")) == b"Just a body.\r\n"
    assert envelope(view) == (None,) * 10


def test_split_multipart_boundary_at_body_start() -> None:
    """Ensure the first delimiter may open the body without a preceding CRLF."""
    raw = b"--q\r\n\r\na\r\n--q\r\n\r\nb\r\n--q--\r\n"
    assert [raw[s:e] for s, e in split_multipart(raw, 0, len(raw), b"q")] == [
        b"\r\na",
        b"\r\nb",
    ]


def test_deep_nesting_is_bounded() -> None:
    """Ensure a hostile nesting depth does not recurse without limit."""
    depth = 300
    head = b"".join(
        b"--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n" % (i, i + 1) for i in range(depth)
    )
    message = b"Content-Type: multipart/mixed; boundary=b0\n\n" + head + b"--b%d\n\nleaf\n" % depth
    structure = body_structure(MessageView(message), True)
    assert render(structure).count(b"(") > 100


# -- decoded text for SEARCH -------------------------------------------------------


def test_header_value_decodes_encoded_words() -> None:
    """Ensure RFC 2047 words are decoded and joined across folded lines."""
    view = MessageView(ENCODED)
    assert header_value(view, "subject") == "\u00e9t\u00e9 encod\u00e9"
    assert header_value(view, "From") == "Andr\u00e9 Pirard <PIRARD@vm1.ulg.ac.be>"
    assert header_value(view, "X-Raw") == "caf\u00e9 cr\u00e8me"
    assert header_value(view, "X-Absent") is None
    assert header_values(view, "cc") == ["Undisclosed recipients:;"]


def test_header_value_tolerates_bad_encodings() -> None:
    """Ensure unknown charsets and broken base64 do not raise."""
    view = MessageView(b"Subject: =?x-unknown?Q?a=FFb?= =?utf-8?B?!!!?= ok\n\n")
    assert header_value(view, "Subject") == "a\ufffdb ok"


def test_text_for_search_decodes_transfer_encodings_and_charsets() -> None:
    """Ensure base64, quoted-printable, charsets and HTML are turned into plain text."""
    message = b"""\
Content-Type: multipart/mixed; boundary=s

--s
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: base64

w6l0w6kgc3VuIQ==
--s
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

Cr=E8me br=FBl=E9e, soft=
 wrapped
--s
Content-Type: text/html; charset=utf-8

<style>p {color: red}</style><p>Fish &amp; chips</p>
--s
Content-Type: application/octet-stream

secret-attachment
--s
Content-Type: text/plain; charset=bogus-charset

bad \xff octet
--s--
"""
    text = text_for_search(MessageView(message))
    assert "\u00e9t\u00e9 sun!" in text
    assert "Cr\u00e8me br\u00fbl\u00e9e, soft wrapped" in text
    assert "Fish & chips" in text
    assert "color" not in text and "<p>" not in text
    assert "secret-attachment" not in text
    assert "bad \ufffd octet" in text


def test_text_for_search_includes_encapsulated_headers() -> None:
    """Ensure the headers and text of an attached message are searchable body text."""
    text = text_for_search(MessageView(RFC3501_EXAMPLE))
    assert "Subject: Part 4.2" in text
    assert "Part 4.2.2.2." in text
    assert "RFC 3501 section example" not in text  # the top-level header is not body


# -- render ------------------------------------------------------------------------


def test_render_convention() -> None:
    """Ensure NIL, numbers, quoted strings, literals and lists render per RFC 3501 §4."""
    assert render(None) == b"NIL"
    assert render(42) == b"42"
    assert render('say "hi" \\ bye') == b'"say \\"hi\\" \\\\ bye"'
    assert render("") == b'""'
    assert render("two\r\nlines") == b"{10}\r\ntwo\r\nlines"
    assert render("\u00e9") == b"{2}\r\n\xc3\xa9"
    assert render(b"abc") == b"{3}\r\nabc"
    assert render(("A", None, [1, ()])) == b'("A" NIL (1 ()))'
    with pytest.raises(TypeError):
        render(True)
    with pytest.raises(ValueError):
        render(-1)
