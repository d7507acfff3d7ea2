"""Submission side by side: AUTH, DKIM signing and delivery, Mailward vs Postfix + OpenDKIM.

Both targets get the same load from ``../shared/bench/smtp_load.py``:
authenticated sessions (AUTH PLAIN in clear on loopback, as the reference is
configured) submitting messages from ``user1@client-a.test`` to the
``client-b.test`` mailboxes, so each message is signed (Mailward: RSA-2048 and
Ed25519; the reference: OpenDKIM RSA) and delivered to a Maildir. Targets
alternate within each repetition and ratios are taken inside it.

    .venv/bin/python bench/submission.py --reps 3 --messages 1000 --concurrency 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402  (bench scripts run from the checkout, not as a package)
from seed import REFERENCE_PASSWORD  # noqa: E402

MW_SUBMISSION, REF_SUBMISSION = 4587, 5870
SENDER = "user1@client-a.test"


def submit(port: int, messages: int, concurrency: int, maildir_root: Path, label: str,
           per_connection: int = 0) -> dict:  # fmt: skip
    """One load; ``per_connection`` > 0 reconnects (and authenticates) after that many."""
    auth = ["--auth", f"{SENDER}:{REFERENCE_PASSWORD}", "--mail-from", SENDER]
    if per_connection:
        auth += ["--msgs-per-conn", str(per_connection)]
    return run.smtp_load(port, messages, concurrency, maildir_root, label,
                         rcpt_domain="client-b.test", extra=auth)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[10])
    ap.add_argument("--work", type=Path, default=Path("/tmp/mailward-bench-submission"))
    ap.add_argument("--workers", type=int, nargs="+", default=[1],
                    help="[smtp] workers settings to run, each in every repetition")
    ap.add_argument("--msgs-per-conn", type=int, default=0,
                    help="reconnect and AUTH again after this many messages (0: never), "
                         "as phones that open a connection per message do")
    args = ap.parse_args()
    rows: dict[str, list[float]] = {}

    def add(name: str, value: float | None) -> None:
        if value is not None:
            rows.setdefault(name, []).append(value)

    with_ref = run.ref_running()
    for _rep in range(args.reps):
        for conc in args.concurrency:
            results: dict[int, dict] = {}
            for workers in args.workers:
                label = f"mailward w={workers}"
                mw = run.start_mailward(args.work / "mailward", 50, workers)
                run.wait_port(MW_SUBMISSION)
                cpu0 = mw.cpu_seconds()
                res = submit(MW_SUBMISSION, args.messages, conc,
                             args.work / "mailward" / "mail" / "client-b.test", "mailward",
                             args.msgs_per_conn)
                results[workers] = res
                add(f"{label} submitted+delivered msg/s c={conc}", res.get("delivered_rate"))
                add(f"{label} submit p99 ms c={conc}", res["lat_ms"]["p99"])
                add(f"{label} server CPU ms/msg c={conc}",
                    1000 * (mw.cpu_seconds() - cpu0) / args.messages)  # fmt: skip
                add(f"{label} rejected c={conc}", res.get("rejected"))
                mw.stop()
            if with_ref:
                subprocess.run([str(run.SHARED / "reference" / "start.sh"), "--fresh"],
                               check=True, capture_output=True)  # fmt: skip
                ref = submit(REF_SUBMISSION, args.messages, conc,
                             run.REF_ROOT / "mail" / "client-b.test", "reference",
                             args.msgs_per_conn)
                add(f"reference submitted+delivered msg/s c={conc}", ref.get("delivered_rate"))
                add(f"reference submit p99 ms c={conc}", ref["lat_ms"]["p99"])
                for workers, res in results.items():
                    if ref.get("delivered_rate") and res.get("delivered_rate"):
                        add(f"ratio mailward w={workers} / reference c={conc}",
                            res["delivered_rate"] / ref["delivered_rate"])  # fmt: skip
    print(f"# Mailward submission bench {time.strftime('%Y-%m-%d')} on {os.uname().nodename}, "
          f"{os.cpu_count()} cores, {args.messages} x 4 KiB, medians of {args.reps}"
          + (f", a connection per {args.msgs_per_conn} message(s)" if args.msgs_per_conn else ""))
    for name, values in rows.items():
        print(f"{name:<48} {statistics.median(values):>10.2f}   "
              f"({min(values):.2f}..{max(values):.2f}, n={len(values)})")


if __name__ == "__main__":
    main()
