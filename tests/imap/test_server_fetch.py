"""APPEND and FETCH over real sockets: every data item, partials, and the \\Seen side effect."""

from __future__ import annotations

import imaplib
import re

from tests.imap.conftest import MESSAGE, MULTIPART, IMAPWorld


def _append(client: imaplib.IMAP4, data: bytes, flags: str = "", date: str | None = None,
            folder: str = "INBOX") -> tuple[str, list[bytes]]:  # fmt: skip
    return client.append(folder, flags or None, date, data)


async def test_append_with_flags_and_date(world: IMAPWorld) -> None:
    """Ensure APPEND stores flags and internal date and answers APPENDUID."""

    def conversation() -> tuple[list[bytes], list[bytes], list]:
        client = world.imaplib()
        typ, first = _append(client, MESSAGE, r"(\Seen $Important)",
                             '"14-Jul-2026 02:44:25 -0700"')  # fmt: skip
        assert typ == "OK"
        typ, second = _append(client, MULTIPART, folder="Sent")
        assert typ == "OK"
        client.select("INBOX")
        _, data = client.fetch("1", "(FLAGS INTERNALDATE RFC822.SIZE UID)")
        client.logout()
        return first, second, data

    first, second, data = await world.run(conversation)
    assert re.fullmatch(rb"\[APPENDUID \d+ 1\] APPEND completed", first[0])
    assert re.fullmatch(rb"\[APPENDUID \d+ 1\] APPEND completed", second[0])
    line = data[0]
    assert b"FLAGS (\\Seen $Important)" in line
    assert b'INTERNALDATE "14-Jul-2026 09:44:25 +0000"' in line
    assert b"RFC822.SIZE %d" % len(MESSAGE) in line
    assert b"UID 1" in line


async def test_append_literal_plus_and_trycreate(world: IMAPWorld, transcript) -> None:
    """Ensure a LITERAL+ APPEND needs no continuation, and a missing folder says TRYCREATE."""
    t = await transcript()
    await t.login()
    await t.send(b"a1 APPEND INBOX (\\Flagged) {%d+}" % len(MESSAGE))
    await t.send(MESSAGE, end=b"\r\n")
    await t.expect(b"a1 OK [APPENDUID * 1] APPEND completed")
    await t.send(b"a2 APPEND Nowhere {%d}" % len(MESSAGE))
    await t.expect(b"+ *")
    await t.send(MESSAGE, end=b"\r\n")
    await t.expect(b"a2 NO [TRYCREATE]*")
    await t.send(b"a3 APPEND INBOX {0}")
    await t.expect(b"+ *")
    await t.send(b"")
    await t.expect(b"a3 NO*")
    state = world.store.sync(world.mailbox_id(), "INBOX")
    assert [(m.uid, m.flags) for m in state.messages] == [(1, frozenset({"\\Flagged"}))]


async def test_fetch_every_item(world: IMAPWorld) -> None:
    """Ensure ENVELOPE, BODY, BODYSTRUCTURE, RFC822.*, BODY[section], partials and MODSEQ."""
    world.deliver(MESSAGE)
    world.deliver(MULTIPART)

    def conversation() -> dict[str, list]:
        client = world.imaplib()
        client.select("INBOX", readonly=True)
        out = {}
        for name, items in (
            ("all", "1 ALL"),
            ("full", "2 FULL"),
            ("structure", "2 BODYSTRUCTURE"),
            ("rfc822", "1 (RFC822.HEADER RFC822.TEXT RFC822)"),
            (
                "sections",
                "2 (BODY.PEEK[1] BODY.PEEK[2.MIME] BODY.PEEK[HEADER.FIELDS (Subject To)])",
            ),
            ("partial", "1 (BODY.PEEK[]<0.10> BODY.PEEK[TEXT]<6.5> BODY.PEEK[]<10000.5>)"),
            ("modseq", "1:2 (MODSEQ UID)"),
        ):
            typ, data = client.fetch(*items.split(" ", 1))
            assert typ == "OK", (name, data)
            out[name] = data
        client.logout()
        return out

    out = await world.run(conversation)
    envelope = out["all"][0]
    assert b'ENVELOPE ("Mon, 02 Nov 2026 10:00:00 +0000" "hello there" ' in envelope
    assert b'(("Sender" NIL "sender" "remote.example"))' in envelope
    assert b'(("Alice" NIL "alice" "acme.test"))' in envelope
    assert b'"<m1@remote.example>"' in envelope
    assert b"FLAGS (\\Recent)" in envelope
    full = out["full"][0]
    assert full.endswith(b'BODY (("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 19 1) '
                         b'("APPLICATION" "OCTET-STREAM" ("NAME" "data.bin") NIL NIL "BASE64" 8)'
                         b' "MIXED"))')  # fmt: skip
    structure = out["structure"][0]
    assert structure.startswith(b'2 (BODYSTRUCTURE (("TEXT" "PLAIN" ("CHARSET" "utf-8")')
    assert b'("ATTACHMENT" ("FILENAME" "data.bin"))' in structure
    assert structure.endswith(b'"MIXED" ("BOUNDARY" "XYZ") NIL NIL NIL))')

    header, text, whole = (part for part in out["rfc822"] if isinstance(part, tuple))
    assert header[1] == MESSAGE.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    assert text[1] == b"Hello Alice,\r\nthis is the body.\r\n"
    assert whole[1] == MESSAGE

    parts = [part for part in out["sections"] if isinstance(part, tuple)]
    assert parts[0][1] == b"See the attachment."
    assert parts[1][1].startswith(b"Content-Type: application/octet-stream")
    assert parts[2][0].endswith(b"BODY[HEADER.FIELDS (Subject To)] {40}")
    assert parts[2][1] == b"To: alice@acme.test\r\nSubject: report\r\n\r\n"

    partials = [part for part in out["partial"] if isinstance(part, tuple)]
    assert partials[0][0].endswith(b"BODY[]<0> {10}") and partials[0][1] == MESSAGE[:10]
    assert partials[1][0].endswith(b"BODY[TEXT]<6> {5}") and partials[1][1] == b"Alice"
    assert partials[2] == (b" BODY[]<10000> {0}", b"")  # past the end: empty
    modseqs = out["modseq"]
    assert re.fullmatch(rb"1 \(MODSEQ \(\d+\) UID 1\)", modseqs[0])


async def test_body_fetch_sets_seen_unless_peek_or_examine(world: IMAPWorld) -> None:
    """Ensure BODY[] sets \\Seen and reports FLAGS; BODY.PEEK and EXAMINE do not."""
    world.deliver(MESSAGE)
    world.deliver(MESSAGE)

    def conversation() -> tuple[list, list, list, list]:
        client = world.imaplib()
        client.select("INBOX", readonly=True)
        _, examined = client.fetch("1", "(BODY[TEXT])")
        client.select("INBOX")
        _, peeked = client.fetch("1", "(BODY.PEEK[TEXT])")
        _, read = client.fetch("1", "(BODY[TEXT])")
        _, flags = client.fetch("1:2", "(FLAGS)")
        client.logout()
        return examined, peeked, read, flags

    examined, peeked, read, flags = await world.run(conversation)
    assert b"FLAGS" not in examined[0][0]
    assert b"FLAGS" not in peeked[0][0]
    assert read[-1] == b" FLAGS (\\Seen))"
    assert flags[0] == b"1 (FLAGS (\\Seen))"
    assert flags[1] == b"2 (FLAGS ())"


async def test_uid_fetch_and_bad_sequence_numbers(world: IMAPWorld, transcript) -> None:
    """Ensure UID FETCH includes UID, skips unknown UIDs, and seq numbers beyond EXISTS are BAD."""
    for _ in range(3):
        world.deliver(MESSAGE)
    t = await transcript()
    await t.login()
    await t.send(b"s SELECT INBOX")
    await t.expect(b"s OK*")
    await t.send(b"f1 UID FETCH 2:* FLAGS")
    lines = await t.expect(b"f1 OK*")
    assert lines[:2] == [b"* 2 FETCH (UID 2 FLAGS (\\Recent))\r\n",
                         b"* 3 FETCH (UID 3 FLAGS (\\Recent))\r\n"]  # fmt: skip
    await t.send(b"f2 UID FETCH 99 FLAGS")
    assert await t.expect(b"f2 OK*") == [b"f2 OK FETCH completed\r\n"]
    await t.send(b"f3 FETCH 4 FLAGS")
    await t.expect(b"f3 BAD*")
    await t.send(b"f4 FETCH 1 (BODY[4.1] BODY[1.MIME])")
    await t.expect(b"* 1 FETCH (BODY[4.1] {0}")
    await t.expect(b"f4 OK*")


async def test_large_message_round_trip(world: IMAPWorld) -> None:
    """Ensure a message far larger than the line limit is appended and fetched back intact."""
    body = b"".join(b"line %06d of a long message\r\n" % n for n in range(20_000))
    message = b"Subject: large\r\n\r\n" + body

    def conversation() -> tuple[bytes, bytes]:
        client = world.imaplib()
        client.append("INBOX", None, None, message)
        client.select("INBOX")
        _, data = client.fetch("1", "(RFC822.SIZE BODY.PEEK[])")
        client.logout()
        return data[0][0], data[0][1]

    header, fetched = await world.run(conversation)
    assert header == b"1 (RFC822.SIZE %d BODY[] {%d}" % (len(message), len(message))
    assert fetched == message
