"""A mailbox whose only credential is a helpdesk reset credential (issue 3 §5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from storage.models_identity import ResetRequest
from storage.secrets import token_digest
from tests.imap.conftest import ALICE, IMAPWorld, set_password

TEMPORARY = "tmp-7fQk2xVb9LmN3pRs"


def _executed_reset(world: IMAPWorld, expires_in: timedelta) -> None:
    now = datetime.now(UTC)
    set_password(world.db, ALICE, None)  # executing a reset withdraws the lasting password
    mailbox_id = world.mailbox_id()
    with world.db.session() as s:
        s.add(ResetRequest(mailbox_id=mailbox_id, state="executed", reason="lost phone",
                           requested_by="operator:helpdesk", requested_at=now,
                           approved_by="operator:approver", approved_at=now,
                           executed_by="operator:approver", executed_at=now,
                           temp_credential_sha256=token_digest(TEMPORARY),
                           expires_at=now + expires_in))  # fmt: skip


async def test_temporary_credential_gets_alert(world: IMAPWorld, transcript) -> None:
    """Ensure the temporary credential is refused with NO [ALERT] saying to set a password."""
    _executed_reset(world, timedelta(hours=1))
    t = await transcript()
    await t.expect(b"* OK*")
    await t.send(f"a1 LOGIN {ALICE} {TEMPORARY}".encode())
    [line] = await t.expect(b"a1 NO [ALERT]*")
    assert b"set a new password" in line
    await t.send(b"a2 LOGIN alice@acme.test wrong-password")
    await t.expect(b"a2 NO [AUTHENTICATIONFAILED]*")


async def test_expired_temporary_credential_is_just_wrong(world: IMAPWorld, transcript) -> None:
    """Ensure an expired temporary credential fails like any wrong password."""
    _executed_reset(world, timedelta(seconds=-1))
    t = await transcript()
    await t.expect(b"* OK*")
    await t.send(f"a1 LOGIN {ALICE} {TEMPORARY}".encode())
    await t.expect(b"a1 NO [AUTHENTICATIONFAILED]*")
