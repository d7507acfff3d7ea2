"""FETCH and SEARCH answered from the summary cache, the page cache or a worker thread alike."""

from __future__ import annotations

import pytest

from imap.ops import search as search_module
from imap.ops import selected as selected_module
from storage.db import StorageUnavailable
from tests.imap.conftest import MESSAGE, MULTIPART, IMAPWorld
from tests.imap.test_mime import ENCODED, MIXED

ITEMS = [
    b"(FLAGS RFC822.SIZE ENVELOPE)",
    b"(BODY BODYSTRUCTURE)",
    b"(BODY.PEEK[HEADER] RFC822.HEADER)",
    b"(BODY.PEEK[HEADER.FIELDS (Subject From)] BODY.PEEK[HEADER.FIELDS.NOT (Subject)])",
    b"(BODY.PEEK[HEADER]<10.20> BODY.PEEK[HEADER.FIELDS (To)]<2.5>)",
    b"(BODY.PEEK[] BODY.PEEK[TEXT] BODY.PEEK[1] ENVELOPE)",
    b"(UID INTERNALDATE MODSEQ BODY.PEEK[1.MIME])",
]


async def _fetch_all(world: IMAPWorld, transcript, tag: bytes) -> list[list[bytes]]:
    t = await transcript()
    await t.login()
    await t.send(b"s SELECT INBOX")
    await t.expect(b"s OK*")
    answers = []
    for n, items in enumerate(ITEMS):
        await t.send(tag + b"%d FETCH 1:* " % n + items)
        answers.append(await t.expect(tag + b"%d OK*" % n))
    await t.send(b"z LOGOUT")
    return [[line for line in lines if not line.startswith(tag)] for lines in answers]


@pytest.mark.parametrize("page_cache", [True, False])
async def test_fetch_is_the_same_cold_and_warm(
    world: IMAPWorld, transcript, monkeypatch: pytest.MonkeyPatch, page_cache: bool
) -> None:
    """Ensure answers from files, from the summary cache and from a worker thread agree."""
    if not page_cache:  # as on a file system without RWF_NOWAIT: every read in a thread
        monkeypatch.setattr(selected_module, "_nowait_works", False)
    for message in (MESSAGE, MULTIPART, MIXED, ENCODED):
        world.deliver(message)
    t = await transcript()
    await t.login()
    await t.send(b"s SELECT INBOX")  # indexed (and \\Recent spent), not read
    await t.expect(b"s OK*")
    assert len(world.ctx.summaries) == 0
    cold = await _fetch_all(world, transcript, b"c")
    assert len(world.ctx.summaries) == 4
    warm = await _fetch_all(world, transcript, b"w")
    assert warm == cold
    assert await _fetch_all(world, transcript, b"v") == cold  # rendered lines remembered
    world.ctx.summaries = type(world.ctx.summaries)()  # forget everything: files again
    assert await _fetch_all(world, transcript, b"f") == cold


async def test_append_fills_the_cache(world: IMAPWorld, transcript) -> None:
    """Ensure an appended message is listed without reading its file."""
    t = await transcript()
    await t.login()
    await t.send(b"a APPEND INBOX {%d+}" % len(MULTIPART))
    await t.send(MULTIPART)
    await t.expect(b"a OK*")
    assert len(world.ctx.summaries) == 1
    for path in (world.mail_root / "acme.test" / "alice" / "cur").iterdir():
        path.write_bytes(b"Subject: changed behind our back\r\n\r\n")  # files are immutable
    await t.send(b"s SELECT INBOX")
    await t.expect(b"s OK*")
    await t.send(b"f FETCH 1 (ENVELOPE)")
    lines = await t.expect(b"f OK*")
    assert b'"report"' in lines[0]


async def test_search_headers_cold_and_warm(world: IMAPWorld, transcript) -> None:
    """Ensure header criteria give the same matches from files and from cached headers."""
    for message in (MESSAGE, MULTIPART, ENCODED, MESSAGE.replace(b"hello there", b"other")):
        world.deliver(message)
    t = await transcript()
    await t.login()
    await t.send(b"s SELECT INBOX")
    await t.expect(b"s OK*")
    queries = [b'SUBJECT "HELLO"', b'FROM "andr\xc3\xa9"', b"HEADER Message-ID m1",
               b'OR SUBJECT report NOT FROM bob', b"SENTBEFORE 1-Jan-2000",
               b'SUBJECT "encod\xc3\xa9" UNSEEN', b'BODY "attachment"',
               b'TEXT "hello"']  # fmt: skip
    rounds = []
    for label in (b"c", b"w"):
        answers = []
        for n, query in enumerate(queries):
            await t.send(label + b"%d SEARCH CHARSET UTF-8 " % n + query)
            answers.append((await t.expect(label + b"%d OK*" % n))[0])
        rounds.append(answers)
    assert rounds[0] == rounds[1]
    assert rounds[0][0] == b"* SEARCH 1\r\n"
    assert rounds[0][1] == b"* SEARCH 3\r\n"
    assert rounds[0][4] == b"* SEARCH 3\r\n"


async def test_fetch_after_own_stores_finds_the_renamed_file(world: IMAPWorld, transcript) -> None:
    """Ensure the octets are found after STOREs renamed the file (no EXPUNGEISSUED)."""
    world.deliver(MESSAGE)
    t = await transcript()
    await t.login()
    await t.send(b"s SELECT INBOX")
    await t.expect(b"s OK*")
    for n, flag in enumerate((b"\\Seen", b"\\Flagged", b"\\Answered")):
        await t.send(b"t%d STORE 1 +FLAGS.SILENT (%s)" % (n, flag))
        await t.expect(b"t%d OK*" % n)
        await t.send(b"f%d FETCH 1 (BODY.PEEK[])" % n)
        lines = await t.expect(b"f%d *" % n)
        assert lines[-1].startswith(b"f%d OK" % n), lines
    other = await transcript()  # another session renames it, this one has not synced since
    await other.login()
    await other.send(b"s SELECT INBOX")
    await other.expect(b"s OK*")
    await other.send(b"x STORE 1 -FLAGS.SILENT (\\Answered)")
    await other.expect(b"x OK*")
    await t.send(b"g FETCH 1 (BODY.PEEK[])")
    assert (await t.expect(b"g *"))[-1].startswith(b"g OK")


async def test_remembered_lines_follow_flag_changes(world: IMAPWorld, transcript) -> None:
    """Ensure a listing shows current flags after this or another session changed them."""
    world.deliver(MESSAGE)
    other, t = await transcript(), await transcript()
    for client in (other, t):  # the first to select takes \\Recent
        await client.login()
        await client.send(b"s SELECT INBOX")
        await client.expect(b"s OK*")
    for n in range(2):
        await t.send(b"a%d FETCH 1 (FLAGS ENVELOPE)" % n)
        assert b"FLAGS () ENVELOPE" in (await t.expect(b"a%d OK*" % n))[0]
    await t.send(b"b STORE 1 +FLAGS.SILENT (\\Seen)")
    await t.expect(b"b OK*")
    await t.send(b"c FETCH 1 (FLAGS ENVELOPE)")
    assert b"FLAGS (\\Seen) ENVELOPE" in (await t.expect(b"c OK*"))[0]
    await other.send(b"d STORE 1 +FLAGS.SILENT (\\Flagged)")
    await other.expect(b"d OK*")
    await t.send(b"e NOOP")
    await t.expect(b"e OK*")
    await t.send(b"f FETCH 1 (FLAGS ENVELOPE)")
    assert b"FLAGS (\\Flagged \\Seen) ENVELOPE" in (await t.expect(b"f OK*"))[0]


async def test_header_search_in_chunks_matches(
    world: IMAPWorld, transcript, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ensure a header SEARCH loading summaries a few messages at a time finds the same."""
    for message in (MESSAGE, MULTIPART, ENCODED, MESSAGE, MIXED):
        world.deliver(message)
    t = await transcript()
    await t.login()
    await t.send(b"s SELECT INBOX")
    await t.expect(b"s OK*")
    answers = []
    for n in range(2):
        await t.send(b"q%d SEARCH OR SUBJECT hello FROM bob" % n)
        answers.append((await t.expect(b"q%d OK*" % n))[0])
        monkeypatch.setattr(search_module, "SEARCH_CHUNK", 2)  # then: in a worker, in chunks
        monkeypatch.setattr(search_module, "MAX_LOOP_HEADER_SEARCH", 0)
    assert answers == [b"* SEARCH 1 2 4\r\n"] * 2


async def test_summaries_not_stored_still_answer(
    world: IMAPWorld, transcript, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ensure a database that cannot store a summary made from a file does not fail FETCH."""

    def unavailable(*_: object) -> None:
        raise StorageUnavailable("database is locked")

    monkeypatch.setattr(world.store, "save_summaries", unavailable)
    monkeypatch.setattr(world.store, "summarize", None)  # indexed without one: made at FETCH
    world.deliver(MESSAGE)
    t = await transcript()
    await t.login()
    await t.send(b"s SELECT INBOX")
    await t.expect(b"s OK*")
    await t.send(b"f FETCH 1 (ENVELOPE)")
    lines = await t.expect(b"f *")
    assert b'"hello there"' in lines[0] and lines[-1].startswith(b"f OK")
