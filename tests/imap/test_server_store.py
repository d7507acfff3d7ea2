"""STORE, COPY, MOVE, EXPUNGE, SEARCH and CONDSTORE over real sockets."""

from __future__ import annotations

import re

from tests.imap.conftest import MESSAGE, MULTIPART, IMAPWorld


async def _selected(world: IMAPWorld, transcript, count: int = 3):
    for n in range(count):
        world.deliver(MESSAGE.replace(b"hello there", b"hello %d" % (n + 1)))
    t = await transcript()
    await t.login()
    await t.send(b"s SELECT INBOX")
    await t.expect(b"s OK*")
    return t


async def test_store_variants_and_silent(world: IMAPWorld, transcript) -> None:
    """Ensure FLAGS, +FLAGS, -FLAGS, keywords and .SILENT behave as RFC 3501 §6.4.6 says."""
    t = await _selected(world, transcript)
    await t.send(b"a STORE 1 +FLAGS (\\Seen \\Flagged)")
    lines = await t.expect(b"a OK*")
    assert lines[0] == b"* 1 FETCH (UID 1 FLAGS (\\Flagged \\Seen \\Recent))\r\n"
    await t.send(b"b STORE 1 -FLAGS \\Flagged")
    await t.expect(b"* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent))")
    await t.expect(b"b OK*")
    await t.send(b"c STORE 2:3 FLAGS.SILENT (\\Answered)")
    assert await t.expect(b"c OK*") == [b"c OK STORE completed\r\n"]
    await t.send(b"d STORE 3 +FLAGS ($Label1)")
    lines = b"".join(await t.expect(b"d OK*"))
    # A new keyword is announced with FLAGS and PERMANENTFLAGS (RFC 3501 §7.2.6).
    assert b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1)\r\n" in lines
    assert b"* 3 FETCH (UID 3 FLAGS (\\Answered \\Recent $Label1))" in lines
    await t.send(b"e UID STORE 2 FLAGS ()")
    await t.expect(b"* 2 FETCH (UID 2 FLAGS (\\Recent))")
    await t.expect(b"e OK*")
    await t.send(b"f STORE 1 +FLAGS (\\Recent)")
    await t.expect(b"f BAD*")
    state = world.store.sync(world.mailbox_id(), "INBOX")
    assert [sorted(m.flags) for m in state.messages] == [
        ["\\Seen"], [], ["$Label1", "\\Answered"]]  # fmt: skip
    suffixes = [m.path.name.rpartition(":")[2] for m in state.messages]
    assert suffixes == ["2,S", "2,", "2,R"]  # flags are in the Maildir file names too


async def test_copy_and_move_with_copyuid(world: IMAPWorld, transcript) -> None:
    """Ensure COPY answers COPYUID, MOVE sends COPYUID then EXPUNGEs, missing targets TRYCREATE."""
    t = await _selected(world, transcript, count=4)
    await t.send(b"c1 COPY 2:3 Archive")
    line = (await t.expect(b"c1 OK*"))[-1]
    assert re.fullmatch(rb"c1 OK \[COPYUID \d+ 2:3 1:2\] COPY completed\r\n", line)
    await t.send(b"c2 COPY 1 Nowhere")
    await t.expect(b"c2 NO [TRYCREATE]*")
    await t.send(b"m1 MOVE 2,4 Trash")
    lines = await t.expect(b"m1 OK*")
    assert re.fullmatch(rb"\* OK \[COPYUID \d+ 2,4 1:2\] Moved\r\n", lines[0])
    assert lines[1:3] == [b"* 4 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n"]
    await t.send(b"m2 UID MOVE 3 Junk")
    lines = await t.expect(b"m2 OK*")
    assert re.fullmatch(rb"\* OK \[COPYUID \d+ 3 1\] Moved\r\n", lines[0])
    assert lines[1] == b"* 2 EXPUNGE\r\n"
    await t.send(b"u1 UID COPY 1:* Drafts")
    line = (await t.expect(b"u1 OK*"))[-1]
    assert re.fullmatch(rb"u1 OK \[COPYUID \d+ 1 1\] COPY completed\r\n", line)
    counts = {name: len(world.store.sync(world.mailbox_id(), name).messages)
              for name in ("INBOX", "Archive", "Trash", "Junk", "Drafts")}  # fmt: skip
    assert counts == {"INBOX": 1, "Archive": 2, "Trash": 2, "Junk": 1, "Drafts": 1}


async def test_expunge_and_uid_expunge(world: IMAPWorld, transcript) -> None:
    """Ensure EXPUNGE removes \\Deleted messages, UID EXPUNGE only those named, CLOSE silently."""
    t = await _selected(world, transcript, count=5)
    await t.send(b"a STORE 1,3,4,5 +FLAGS.SILENT (\\Deleted)")
    await t.expect(b"a OK*")
    await t.send(b"b UID EXPUNGE 4:5")
    lines = await t.expect(b"b OK*")
    assert lines[:2] == [b"* 5 EXPUNGE\r\n", b"* 4 EXPUNGE\r\n"]
    await t.send(b"c EXPUNGE")
    lines = await t.expect(b"c OK*")
    assert lines[:2] == [b"* 3 EXPUNGE\r\n", b"* 1 EXPUNGE\r\n"]
    await t.send(b"d FETCH 1 UID")
    await t.expect(b"* 1 FETCH (UID 2)")
    await t.send(b"e STORE 1 +FLAGS.SILENT (\\Deleted)")
    await t.expect(b"e OK*")
    await t.send(b"f CLOSE")
    assert await t.expect(b"f OK*") == [b"f OK CLOSE completed\r\n"]
    assert world.store.sync(world.mailbox_id(), "INBOX").messages == ()
    await t.send(b"g EXPUNGE")
    await t.expect(b"g BAD*")


async def test_unselect_keeps_deleted(world: IMAPWorld, transcript) -> None:
    """Ensure UNSELECT leaves \\Deleted messages in place."""
    t = await _selected(world, transcript, count=1)
    await t.send(b"a STORE 1 +FLAGS.SILENT (\\Deleted)")
    await t.expect(b"a OK*")
    await t.send(b"b UNSELECT")
    await t.expect(b"b OK*")
    assert len(world.store.sync(world.mailbox_id(), "INBOX").messages) == 1


async def test_search_criteria(world: IMAPWorld, transcript) -> None:
    """Ensure SEARCH with flags, headers, body text, nested OR/NOT, sizes and UID sets."""
    for _ in range(2):
        world.deliver(MESSAGE)
    world.deliver(MULTIPART)
    world.deliver(MESSAGE.replace(b"hello there", b"invoice 42"))
    t = await transcript()
    await t.login()
    await t.send(b"s SELECT INBOX")
    await t.expect(b"s OK*")
    await t.send(b"a STORE 2 +FLAGS.SILENT (\\Seen \\Flagged)")
    await t.expect(b"a OK*")
    for query, expected in (
        (b"SEARCH ALL", b"* SEARCH 1 2 3 4"),
        (b"SEARCH SEEN", b"* SEARCH 2"),
        (b"SEARCH UNSEEN FROM sender", b"* SEARCH 1 4"),
        (b"SEARCH SUBJECT invoice", b"* SEARCH 4"),
        (b'SEARCH BODY "see the attachment"', b"* SEARCH 3"),
        (b"SEARCH OR FLAGGED (SUBJECT report)", b"* SEARCH 2 3"),
        (b"SEARCH NOT OR FLAGGED OR SUBJECT report SUBJECT invoice", b"* SEARCH 1"),
        (b"SEARCH (OR (NOT SEEN) FLAGGED) (NOT (SUBJECT hello))", b"* SEARCH 3 4"),
        (b"SEARCH LARGER 300", b"* SEARCH 3"),
        (b"SEARCH UID 2:3 NOT DELETED", b"* SEARCH 2 3"),
        (b"SEARCH 2:* HEADER Message-ID m1", b"* SEARCH 2 4"),
        (b"UID SEARCH UID 3:*", b"* SEARCH 3 4"),
        (b"SEARCH SENTON 3-Nov-2026", b"* SEARCH 3"),
        (b"SEARCH KEYWORD $Nothing", b"* SEARCH"),
        (b"SEARCH CHARSET UTF-8 TEXT alice", b"* SEARCH 1 2 3 4"),
        (b"SEARCH NEW", b"* SEARCH 1 3 4"),
    ):
        await t.send(b"q " + query)
        assert (await t.expect(b"q *"))[0] == expected + b"\r\n", query
    await t.send(b"x SEARCH CHARSET KOI8-R TEXT x")
    await t.expect(b"x NO [BADCHARSET*")
    await t.send(b"y SEARCH FOO")
    await t.expect(b"y BAD*")


async def test_condstore(world: IMAPWorld, transcript) -> None:
    """Ensure MODSEQ in FETCH, CHANGEDSINCE, UNCHANGEDSINCE with [MODIFIED] and SEARCH MODSEQ."""
    t = await _selected(world, transcript, count=3)
    await t.send(b"e ENABLE CONDSTORE")
    await t.expect(b"e BAD*")  # RFC 5161 §3.1: ENABLE only before a folder is selected
    await t.send(b"u UNSELECT")
    await t.expect(b"u OK*")
    await t.send(b"e ENABLE CONDSTORE X-UNKNOWN")
    await t.expect(b"* ENABLED CONDSTORE")
    await t.expect(b"e OK*")
    await t.send(b"s SELECT INBOX")
    await t.expect(b"s OK*")
    await t.send(b"f FETCH 1:* (MODSEQ)")
    lines = await t.expect(b"f OK*")
    modseqs = [int(re.search(rb"MODSEQ \((\d+)\)", line)[1]) for line in lines[:3]]
    base = max(modseqs)
    await t.send(b"g STORE 2 +FLAGS (\\Seen)")
    line = (await t.expect(b"* 2 FETCH*"))[-1]
    changed = int(re.search(rb"MODSEQ \((\d+)\)", line)[1])  # CONDSTORE on: MODSEQ included
    assert changed > base
    await t.expect(b"g OK*")
    await t.send(b"h FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % base)
    lines = await t.expect(b"h OK*")
    assert lines[:-1] == [b"* 2 FETCH (FLAGS (\\Seen) MODSEQ (%d))\r\n" % changed]
    await t.send(b"i STORE 1:3 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Flagged)" % base)
    lines = await t.expect(b"i OK*")
    assert lines[-1] == b"i OK [MODIFIED 2] Conditional STORE failed for some messages\r\n"
    assert len(lines) == 3  # silent, but MODSEQ is still reported for 1 and 3
    await t.send(b"j SEARCH MODSEQ %d" % (changed + 1))
    line = (await t.expect(b"* SEARCH*"))[0]
    assert re.fullmatch(rb"\* SEARCH 1 3 \(MODSEQ \d+\)\r\n", line)
    await t.expect(b"j OK*")
    await t.send(b"k STATUS INBOX (HIGHESTMODSEQ)")
    await t.expect(b'* STATUS "INBOX" (HIGHESTMODSEQ *)')
    await t.expect(b"k OK*")
