"""FETCH and SEARCH after a restart: the same answers, from stored summaries, on both backends."""

from __future__ import annotations

from pathlib import Path

import aioimaplib
from sqlalchemy import delete

from storage.db import Database
from storage.models import MailSummary
from tests.imap.conftest import ALICE, MESSAGE, MULTIPART, PASSWORD, IMAPWorld, running_imap
from tests.imap.test_mime import ALTERNATIVE, ENCODED, MIXED

ITEMS = (
    "(RFC822.SIZE FLAGS ENVELOPE)",
    "(UID BODY BODYSTRUCTURE)",
    "(BODY.PEEK[HEADER.FIELDS (From Subject Date)] RFC822.HEADER)",
)
SEARCHES = ('SUBJECT "report"', 'FROM "alice"', "HEADER Message-ID example")


def _listing(world: IMAPWorld) -> tuple[list, list]:
    """Every FETCH of ITEMS over the INBOX and every SEARCH, as imaplib parsed them."""
    client = world.imaplib()
    client.select("INBOX", readonly=True)  # \\Recent is spent by the first session
    fetched = [client.fetch("1:*", items)[1] for items in ITEMS]
    searched = [client.search(None, query)[1] for query in SEARCHES]
    client.logout()
    return fetched, searched


def _fill(world: IMAPWorld) -> None:
    """Deliveries (indexed at the first SELECT) and APPENDs, read once by a session."""
    for message in (MESSAGE, MIXED, ENCODED):
        world.deliver(message)
    client = world.imaplib()
    client.select("INBOX")
    for message in (MULTIPART, ALTERNATIVE.replace(b"\n", b"\r\n")):
        client.append("INBOX", r"(\Seen)", None, message)
    client.logout()


def _scramble(world: IMAPWorld) -> None:
    """Overwrite every message file: an answer that reads one would change."""
    for path in (world.mail_root / "acme.test" / "alice" / "cur").iterdir():
        path.write_bytes(b"Subject: changed behind our back\n\nnot the message\n")


async def test_listing_after_restart_is_the_same_without_reading_files(
    tmp_path: Path, db: Database
) -> None:
    """Ensure a restarted server lists and searches from stored summaries, octet for octet."""
    async with running_imap(tmp_path, db) as world:
        await world.run(_fill, world)
        before = await world.run(_listing, world)
    assert before[1] == [[b"4"], [b"2 5"], [b"1"]]  # read from the files
    async with running_imap(tmp_path, db, seeded=True) as world:
        _scramble(world)
        assert len(world.ctx.summaries) == 0
        assert await world.run(_listing, world) == before


async def test_summaries_missing_are_made_once_then_stored(tmp_path: Path, db: Database) -> None:
    """Ensure messages indexed before summaries were stored get them at the first listing."""
    async with running_imap(tmp_path, db) as world:
        await world.run(_fill, world)
        before = await world.run(_listing, world)
    with db.session() as s:  # as a mailbox indexed by an earlier version
        s.execute(delete(MailSummary))
    async with running_imap(tmp_path, db, seeded=True) as world:
        assert await world.run(_listing, world) == before  # made from the files
    async with running_imap(tmp_path, db, seeded=True) as world:
        _scramble(world)
        assert await world.run(_listing, world) == before  # and stored


async def test_aioimaplib_envelopes_survive_a_restart(tmp_path: Path, db: Database) -> None:
    """Ensure an asyncio client sees the same ENVELOPE lines before and after a restart."""

    async def envelopes(world: IMAPWorld) -> list[bytes | str]:
        client = aioimaplib.IMAP4(host="127.0.0.1", port=world.port, timeout=10)
        await client.wait_hello_from_server()
        await client.login(ALICE, PASSWORD)
        await client.select("INBOX")
        response = await client.fetch("1:*", "(RFC822.SIZE FLAGS ENVELOPE)")
        await client.logout()
        assert response.result == "OK"
        return response.lines

    async with running_imap(tmp_path, db) as world:
        await world.run(_fill, world)
        before = await envelopes(world)
    async with running_imap(tmp_path, db, seeded=True) as world:
        _scramble(world)
        assert await envelopes(world) == before
    assert any(b'"report"' in line for line in before if isinstance(line, bytes))
