"""Queue row operations on each backend: claim, lease, per-recipient results, finish."""

from __future__ import annotations

import json
from datetime import timedelta

from storage import outbound
from storage.models import OutboundMessage
from storage.outbound import Outcome, QueueState, RecipientState


def _row(session, now, queue_id: str = "Q1") -> OutboundMessage:
    row = OutboundMessage(queue_id=queue_id, mail_from="a@acme.test", spool_path="/x",
                          recipients=json.dumps(["b@r.example", "c@r.example"]), size=10,
                          state="queued", attempts=0, created_at=now, next_attempt_at=now)
    session.add(row)
    session.flush()
    return row


def test_claim_leases_and_creates_recipients(db, now) -> None:
    """Ensure claiming leases due rows once and creates one pending row per recipient."""
    with db.session() as s:
        _row(s, now)
        _row(s, now + timedelta(hours=1), "LATER")
    with db.session() as s:
        [claimed] = outbound.claim_due(s, now=now, lease_until=now + timedelta(minutes=5), limit=10)
        assert claimed.pending == ("b@r.example", "c@r.example")
    with db.session() as s:
        assert outbound.claim_due(s, now=now, lease_until=now, limit=10) == []
        assert outbound.find(s, "q1").state == QueueState.SENDING
    with db.session() as s:  # the lease ran out: due again
        later = now + timedelta(minutes=6)
        assert len(outbound.claim_due(s, now=later, lease_until=later, limit=10)) == 1


def test_outcomes_retry_only_temporary(db, now) -> None:
    """Ensure final recipients stay final and only the temporary one remains pending."""
    with db.session() as s:
        row = _row(s, now)
        outbound.claim_due(s, now=now, lease_until=now, limit=10)
        outbound.record_outcomes(s, row.id, [
            Outcome("b@r.example", RecipientState.DELIVERED, "250 ok"),
            Outcome("c@r.example", RecipientState.PENDING, "451 later"),
        ], now)  # fmt: skip
        outbound.reschedule(row, now + timedelta(minutes=5))
        assert [r.address for r in outbound.pending(s, row.id)] == ["c@r.example"]
        assert (row.state, row.attempts, row.last_error) == ("queued", 1, "451 later")
        outbound.record_outcomes(s, row.id, [
            Outcome("c@r.example", RecipientState.FAILED, "550 no")], now)  # fmt: skip
        assert outbound.pending(s, row.id) == []
        assert outbound.finish(s, row) is QueueState.BOUNCED
        outbound.remove(s, row)
    with db.session() as s:
        assert outbound.find(s, "Q1") is None


def test_queue_ids_are_unique_and_differ_in_a_forked_child() -> None:
    """Ensure queue ids never repeat in a process, nor between a parent and its fork."""
    import subprocess
    import sys

    from storage.spool import new_queue_id

    ids = {new_queue_id() for _ in range(100_000)}
    assert len(ids) == 100_000
    assert all(len(i) == 16 and i == i.upper() for i in list(ids)[:100])
    # Forked in a fresh interpreter of its own: this test process has threads.
    code = """
import os
from storage.spool import new_queue_id
new_queue_id()
read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(write_end, " ".join(new_queue_id() for _ in range(50)).encode())
    os._exit(0)
os.close(write_end)
child = set(os.read(read_end, 65536).decode().split())
os.waitpid(pid, 0)
mine = {new_queue_id() for _ in range(50)}
print(len(child), len(child & mine))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)  # fmt: skip
    assert done.stdout.split() == ["50", "0"]
