"""Folder commands over real sockets: SELECT, EXAMINE, LIST, LSUB, CREATE, DELETE, RENAME..."""

from __future__ import annotations

import imaplib
import re

from tests.imap.conftest import MESSAGE, IMAPWorld


def _untagged(client: imaplib.IMAP4, name: str) -> list[bytes]:
    return [v for v in client.untagged_responses.get(name, []) if v is not None]


async def test_select_and_examine_responses(world: IMAPWorld, transcript) -> None:
    """Ensure SELECT and EXAMINE send every untagged response RFC 3501 and RFC 7162 ask for."""
    world.deliver(MESSAGE)
    world.deliver(MESSAGE)
    t = await transcript()
    await t.login()
    await t.send(b"s1 SELECT INBOX")
    lines = b"".join(await t.expect(b"s1 OK [READ-WRITE] SELECT completed"))
    assert b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n" in lines
    assert b"* 2 EXISTS\r\n" in lines
    assert b"* 2 RECENT\r\n" in lines
    assert b"* OK [UNSEEN 1]" in lines
    assert b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)]" in lines
    assert re.search(rb"\* OK \[UIDVALIDITY \d+\]", lines)
    assert b"* OK [UIDNEXT 3]" in lines
    assert re.search(rb"\* OK \[HIGHESTMODSEQ \d+\]", lines)

    await t.send(b"s2 EXAMINE INBOX")
    lines = b"".join(await t.expect(b"s2 OK [READ-ONLY]*"))
    assert b"* OK [CLOSED]" in lines  # RFC 7162 §3.2.11
    assert b"* OK [PERMANENTFLAGS ()]" in lines
    assert b"* 0 RECENT" in lines  # \Recent went to the first session view only
    await t.send(b"s3 STORE 1 +FLAGS (\\Seen)")
    await t.expect(b"s3 NO [READ-ONLY]*")
    await t.send(b"s4 SELECT Nowhere")
    await t.expect(b"s4 NO [NONEXISTENT]*")
    await t.send(b"s5 FETCH 1 FLAGS")  # a failed SELECT leaves no folder selected
    await t.expect(b"s5 BAD*")


async def test_list_patterns_special_use_and_children(world: IMAPWorld) -> None:
    """Ensure LIST with % and * reports SPECIAL-USE and CHILDREN attributes and \\Noselect gaps."""

    def conversation() -> dict[str, list[bytes]]:
        client = world.imaplib()
        client.create("Archive.2024")
        client.create("Projects.Alpha.Docs")  # superiors are created too
        out = {}
        for ref, pattern in (('""', "*"), ('""', "%"), ('""', "Archive.%"), ("Projects.", "%"),
                             ('""', "inbox"), ('""', '""'), ('""', "Projects.*")):  # fmt: skip
            _, data = client.list(ref, pattern)
            out[f"{ref} {pattern}"] = [d for d in data if d is not None]
        client.logout()
        return out

    out = await world.run(conversation)
    everything = out['"" *']
    assert everything[0] == b'(\\HasNoChildren) "." "INBOX"'
    assert b'(\\HasChildren \\Archive) "." "Archive"' in everything
    assert b'(\\HasNoChildren) "." "Archive.2024"' in everything
    assert b'(\\HasNoChildren \\Junk) "." "Junk"' in everything
    assert b'(\\HasChildren) "." "Projects.Alpha"' in everything
    assert b'(\\HasNoChildren) "." "Projects.Alpha.Docs"' in everything
    top = out['"" %']
    assert b'(\\HasChildren) "." "Projects"' in top
    assert not any(b"Alpha" in line or b"2024" in line for line in top)
    assert out['"" Archive.%'] == [b'(\\HasNoChildren) "." "Archive.2024"']
    assert out["Projects. %"] == [b'(\\HasChildren) "." "Projects.Alpha"']
    assert out['"" inbox'] == [b'(\\HasNoChildren) "." "INBOX"']
    assert out['"" ""'] == [b'(\\Noselect) "." ""']
    assert len(out['"" Projects.*']) == 2


async def test_list_shows_noselect_superior(world: IMAPWorld) -> None:
    """Ensure a level that exists only through its children is listed \\Noselect under %."""
    box = world.mailbox_id()
    world.store.ensure_defaults(box)
    world.store.create_folder(box, "Lonely.Child")  # made behind IMAP's back, no parent

    def conversation() -> list[bytes]:
        client = world.imaplib()
        _, data = client.list('""', "%")
        client.logout()
        return data

    data = await world.run(conversation)
    assert b'(\\Noselect \\HasChildren) "." "Lonely"' in data


async def test_create_delete_rename(world: IMAPWorld, transcript) -> None:
    """Ensure CREATE, DELETE and RENAME with their NO codes, renaming children along."""
    t = await transcript()
    await t.login()
    for tag, command, reply in (
        (b"c1", b"CREATE Work", b"c1 OK*"),
        (b"c2", b"CREATE Work", b"c2 NO [ALREADYEXISTS]*"),
        (b"c3", b"CREATE Work.Old.", b"c3 OK*"),  # trailing delimiter is allowed
        (b"c4", b"CREATE inbox", b"c4 NO [ALREADYEXISTS]*"),
        (b"c5", b"DELETE Work", b"c5 NO [INUSE]*"),
        (b"c6", b"RENAME Work Job", b"c6 OK*"),
        (b"c7", b"RENAME Work Other", b"c7 NO [NONEXISTENT]*"),
        (b"c8", b"RENAME Job Sent", b"c8 NO [ALREADYEXISTS]*"),
        (b"c9", b"RENAME Job Job.Inner", b"c9 NO [CANNOT]*"),
        (b"d1", b"DELETE Job.Old", b"d1 OK*"),
        (b"d2", b"DELETE Job", b"d2 OK*"),
        (b"d3", b"DELETE Job", b"d3 NO [NONEXISTENT]*"),
        (b"d4", b"DELETE INBOX", b"d4 NO [CANNOT]*"),
    ):
        await t.send(tag + b" " + command)
        await t.expect(reply)
    names = {f.name for f in world.store.list_folders(world.mailbox_id())}
    assert not any(n.startswith(("Work", "Job")) for n in names)


async def test_rename_inbox_moves_messages(world: IMAPWorld) -> None:
    """Ensure RENAME INBOX moves its messages to the new folder and leaves INBOX empty."""
    world.deliver(MESSAGE)
    world.deliver(MESSAGE)

    def conversation() -> tuple[bytes, bytes]:
        client = world.imaplib()
        typ, _ = client.rename("INBOX", "Old-Inbox")
        assert typ == "OK"
        _, old = client.status("Old-Inbox", "(MESSAGES)")
        _, inbox = client.status("INBOX", "(MESSAGES)")
        client.logout()
        return old[0], inbox[0]

    old, inbox = await world.run(conversation)
    assert old == b'"Old-Inbox" (MESSAGES 2)'
    assert inbox == b'"INBOX" (MESSAGES 0)'


async def test_bad_folder_names_refused(world: IMAPWorld, transcript) -> None:
    """Ensure names that could escape the Maildir or break the hierarchy are refused."""
    t = await transcript()
    await t.login()
    for n, name in enumerate((b'"../x"', b'"a/b"', b'"a..b"', b'".hidden"', b'"x\\\\y"')):
        await t.send(b"n%d CREATE %s" % (n, name))
        await t.expect(b"n%d NO [CANNOT]*" % n)
    await t.send(b'r1 RENAME Sent "../Sent"')
    await t.expect(b"r1 NO [CANNOT]*")
    await t.send(b"r2 CREATE &Jjo-")  # modified UTF-7 is fine: a smiley
    await t.expect(b"r2 OK*")
    assert not (world.mail_root.parent / "x").exists()
    names = {f.name for f in world.store.list_folders(world.mailbox_id())}
    assert "\u263a" in names


async def test_status_and_subscriptions(world: IMAPWorld, transcript) -> None:
    """Ensure STATUS counts and LSUB follows SUBSCRIBE/UNSUBSCRIBE."""
    world.deliver(MESSAGE)
    world.deliver(MESSAGE)
    t = await transcript()
    await t.login()
    await t.send(b"s1 STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ)")
    line = (await t.expect(b"* STATUS*"))[-1]
    assert re.fullmatch(
        rb'\* STATUS "INBOX" \(MESSAGES 2 RECENT 2 UIDNEXT 3 UIDVALIDITY \d+ UNSEEN 2 '
        rb"HIGHESTMODSEQ \d+\)\r\n",
        line,
    )
    await t.expect(b"s1 OK*")
    await t.send(b"s2 STATUS Nowhere (MESSAGES)")
    await t.expect(b"s2 NO [NONEXISTENT]*")
    await t.send(b"u1 UNSUBSCRIBE Junk")
    await t.expect(b"u1 OK*")
    await t.send(b"u2 CREATE Team.News")
    await t.expect(b"u2 OK*")
    await t.send(b"u3 UNSUBSCRIBE Team")
    await t.expect(b"u3 OK*")
    await t.send(b'l1 LSUB "" %')
    lines = b"".join(await t.expect(b"l1 OK*"))
    assert b'* LSUB () "." "Sent"' in lines
    assert b"Junk" not in lines
    assert b'* LSUB (\\Noselect) "." "Team"' in lines  # only the child is subscribed
    await t.send(b'l2 LSUB "" *')
    lines = b"".join(await t.expect(b"l2 OK*"))
    assert b'* LSUB () "." "Team.News"' in lines
    await t.send(b"n1 NAMESPACE")
    await t.expect(b'* NAMESPACE (("" ".")) NIL NIL')
    await t.expect(b"n1 OK*")
    await t.send(b"u4 SUBSCRIBE Nowhere")
    await t.expect(b"u4 NO [NONEXISTENT]*")
