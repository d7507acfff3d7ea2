"""The composed stack (admin.runtime.running): SMTP in, IMAP out, one process."""

from __future__ import annotations

import asyncio
import imaplib
import smtplib
import time

from sqlalchemy import update

from storage.models import Mailbox
from storage.secrets import hash_password

PASSWORD = "correct horse battery"


async def test_smtp_delivery_reaches_idle_imap_client(world) -> None:
    """Ensure a message delivered over SMTP reaches a client in IDLE within a second."""
    with world.db.session() as s:
        s.execute(update(Mailbox).where(Mailbox.local_part == "alice")
                  .values(password_hash=hash_password(PASSWORD)))  # fmt: skip
    port = world.stack.port("imap")

    def idle_until_exists() -> tuple[float, bytes]:
        client = imaplib.IMAP4("127.0.0.1", port)
        try:
            client.login("alice@acme.test", PASSWORD)
            client.select("INBOX")
            tag = client._new_tag().decode()
            client.send(f"{tag} IDLE\r\n".encode())
            assert client.readline().startswith(b"+")
            with smtplib.SMTP("127.0.0.1", world.smtp_port) as smtp:
                smtp.sendmail("s@remote.example", ["alice@acme.test"],
                              b"Subject: ping\r\n\r\nhello\r\n")  # fmt: skip
            started = time.monotonic()  # the message is delivered: the clock runs from here
            line = client.readline()
            elapsed = time.monotonic() - started
            client.send(b"DONE\r\n")
            while not client.readline().startswith(tag.encode()):
                pass
            _, data = client.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            return elapsed, line + bytes(data[0][1])
        finally:
            client.logout()

    elapsed, seen = await asyncio.to_thread(idle_until_exists)
    assert b"* 1 EXISTS" in seen and b"Subject: ping" in seen
    assert elapsed < 1.0
