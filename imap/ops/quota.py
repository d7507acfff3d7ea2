"""GETQUOTA, GETQUOTAROOT and SETQUOTA (RFC 9208).

Storage is pooled (organization, client, domain, mailbox caps): the quota a
user runs into is the capped level with the least room, and that is what we
report, as the single root ``""`` with the STORAGE resource in units of 1024
octets (RFC 9208 §5.1). When no level is capped there is no quota root.
Quotas are provisioned by operators, so SETQUOTA is refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from imap.ops import Completion, Handlers
from imap.proto import IMAPError
from imap.proto.commands import GetQuotaCommand, GetQuotaRootCommand, SetQuotaCommand
from imap.proto.responses import ResponseCode, quota_response, quotaroot_response
from imap.workers import run_blocking
from policy.quota import QuotaLevel
from storage import quota as quota_store
from storage.mailindex import FolderMissing

if TYPE_CHECKING:
    from imap.session import Session

ROOT = ""
KIB = 1024  # RFC 9208 §5.1: STORAGE is counted in units of 1024 octets


def _limiting(session: Session) -> QuotaLevel | None:
    with session.ctx.db.session() as db_session:
        return quota_store.snapshot(db_session, session.mailbox_id).limiting()


def _quota(level: QuotaLevel) -> bytes:
    assert level.limit is not None
    used = -(-level.used // KIB)  # round up: a byte used is a unit used
    return quota_response(ROOT, [("STORAGE", used, level.limit // KIB)])


async def get_quota_root(session: Session, cmd: GetQuotaRootCommand) -> Completion:
    folder = await run_blocking(session.ctx.store.get_folder, session.mailbox_id, cmd.mailbox)
    if folder is None:
        raise FolderMissing(cmd.mailbox)
    level = await run_blocking(_limiting, session)
    session.send(quotaroot_response(cmd.mailbox, [ROOT] if level is not None else []))
    if level is not None:
        session.send(_quota(level))
    return Completion("GETQUOTAROOT completed")


async def get_quota(session: Session, cmd: GetQuotaCommand) -> Completion:
    level = await run_blocking(_limiting, session) if cmd.root == ROOT else None
    if level is None:
        raise IMAPError.no("No such quota root", ResponseCode.NONEXISTENT)
    session.send(_quota(level))
    return Completion("GETQUOTA completed")


async def set_quota(session: Session, cmd: SetQuotaCommand) -> Completion:
    raise IMAPError.no("Quotas are set by the operators", ResponseCode.NOPERM)


HANDLERS: Handlers = {
    GetQuotaRootCommand: get_quota_root,
    GetQuotaCommand: get_quota,
    SetQuotaCommand: set_quota,
}
