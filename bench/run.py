"""Side-by-side benchmark: Mailward vs the reference stack vs the bare aiosmtpd ceiling.

Every repetition runs each target once, in alternation, with the shared load
generators from ``../shared/bench``, so that machine noise hits all targets
alike; ratios are taken inside each repetition and the table reports their
medians (and min..max). For the Mailward process it also reports server CPU
seconds per message (utime+stime from /proc) and peak memory (VmHWM, and PSS
at the end of the run).

    .venv/bin/python bench/run.py --reps 3 --messages 2000 --concurrency 10 50

The reference (Postfix + Dovecot) must be running (``../shared/bench/reference/
start.sh``); without it its rows are skipped. Everything talks to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "bench"
PY = sys.executable
MW_SMTP, MW_IMAP, SINK_PORT = 4525, 4143, 4526
REF_SMTP, REF_IMAP = 3525, 1143
REF_ROOT = Path(os.environ.get("REF_ROOT", "/var/tmp/mailref"))


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]

    def cpu_seconds(self) -> float:
        """utime + stime of the process and of every process under it (SMTP workers)."""
        total = 0
        for pid in tree_pids([self.popen.pid]):
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def peak_rss_mib(self) -> float:
        return proc_kib(self.popen.pid, "status", "VmHWM:") / 1024

    def rss_mib(self) -> float:
        return proc_kib(self.popen.pid, "status", "VmRSS:") / 1024

    def pss_mib(self) -> float:
        return pss_kib(self.popen.pid) / 1024

    def stop(self, timeout: float = 30) -> None:
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


POSTFIX_PID = REF_ROOT / "postfix" / "spool" / "pid" / "master.pid"
DOVECOT_PID = REF_ROOT / "dovecot" / "run" / "master.pid"


def tree_pids(roots: list[int]) -> list[int]:
    """The processes under ``roots`` (the roots included), from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    found = []
    for pid in parents:
        ancestor = pid
        while ancestor not in roots and ancestor in parents and ancestor > 1:
            ancestor = parents[ancestor]
        if ancestor in roots:
            found.append(pid)
    return found


def proc_kib(pid: int, file: str, key: str) -> int:
    """A KiB figure from /proc/<pid>/<file>, 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass  # the process ended between listing and reading
    return 0


def pss_kib(pid: int) -> int:
    return proc_kib(pid, "smaps_rollup", "Pss:")


class PeakPss:
    """Samples the summed PSS of process trees while a load runs; keeps the peak.

    PSS (proportional set size) charges shared pages to each sharer, so a
    multi-process server (Postfix, Dovecot) and a single process compare fairly.
    """

    def __init__(self, roots: Callable[[], list[int]], interval: float = 0.25) -> None:
        self.roots, self.interval = roots, interval
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakPss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while True:
            with contextlib.suppress(OSError, ValueError):
                total = sum(pss_kib(pid) for pid in tree_pids(self.roots()))
                self.peak_mib = max(self.peak_mib, total / 1024)
            if self._stop.wait(self.interval):
                return


def reference_roots() -> list[int]:
    return [int(path.read_text().split()[0]) for path in (POSTFIX_PID, DOVECOT_PID)
            if path.exists()]  # fmt: skip


def wait_port(port: int, seconds: float = 30) -> None:
    import socket

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port}")


def start_mailward(data: Path, users: int, workers: int = 1) -> Proc:
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)
    (data / "mailward.toml").write_text(
        f"[listen]\nsmtp_port = {MW_SMTP}\nimap_port = {MW_IMAP}\nsubmission_port = 4587\n"
        "submissions_port = 4465\nimaps_port = 4993\nadmin_port = 4025\n"
        f"[smtp]\nmax_recipients = 100\nworkers = {workers}\n"
        # Load stays on loopback: no DNS queries to the system resolver. The
        # reference does not check SPF/DMARC inbound either, and takes AUTH in
        # clear on loopback, as the shared load generator speaks it.
        "verify_senders = false\nsubmission_plaintext_on_loopback = true\n"
        "[dns]\nnameservers = [\"127.0.0.1\"]\nport = 9\n"
    )
    subprocess.run([PY, str(HERE / "seed.py"), "--data", str(data), "--users", str(users)],
                   check=True)  # fmt: skip
    return serve_mailward(data)


def serve_mailward(data: Path) -> Proc:
    """Start ``mailward serve`` on a data folder that ``start_mailward`` set up."""
    popen = subprocess.Popen([PY, "-m", "admin.cli", "serve", "--data", str(data)], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(0.5)
    if popen.poll() is not None:
        raise RuntimeError(f"mailward serve exited ({popen.returncode}): is port {MW_SMTP} taken?")
    wait_port(MW_SMTP)
    return Proc(popen)


def start_sink(root: Path) -> Proc:
    if root.exists():
        shutil.rmtree(root)
    popen = subprocess.Popen([PY, str(SHARED / "aiosmtpd_sink.py"), "--port", str(SINK_PORT),
                              "--mode", "maildir", "--root", str(root), "--max-seconds", "1800"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wait_port(SINK_PORT)
    return Proc(popen)


def smtp_load(port: int, messages: int, concurrency: int, maildir_root: Path | None,
              label: str, *, rcpt_domain: str = "client-a.test",
              extra: list[str] | None = None) -> dict:  # fmt: skip
    """One run of the shared SMTP load generator; its JSON result line."""
    cmd = [PY, str(SHARED / "smtp_load.py"), "--port", str(port), "--messages", str(messages),
           "--concurrency", str(concurrency), "--size", "4096", "--rcpt-domain", rcpt_domain,
           "--users", "50", "--label", label, *(extra or [])]  # fmt: skip
    if maildir_root is not None:
        cmd += ["--maildir-root", str(maildir_root)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"smtp_load gave no result: {out.stdout}\n{out.stderr}")
    return json.loads(lines[-1])


def ref_running() -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", REF_SMTP)) == 0


@dataclass
class Row:
    name: str
    values: list[float] = field(default_factory=list)

    def summary(self) -> str:
        if not self.values:
            return f"{self.name:<48} {'n/a':>10}"
        med = statistics.median(self.values)
        return (f"{self.name:<48} {med:>10.2f}   ({min(self.values):.2f}..{max(self.values):.2f},"
                f" n={len(self.values)})")  # fmt: skip


def count_files(root: Path) -> int:
    return sum(1 for _ in root.glob("*/*/new/*")) + sum(1 for _ in root.glob("*/*/cur/*"))


def measure_mailward(args: argparse.Namespace, conc: int, workers: int, name: str,
                     add: Callable[[str, float | None], None]) -> tuple[dict, float]:
    """One load against a fresh Mailward; its rows go to ``add`` under ``name``."""
    mw = start_mailward(args.work / "mailward", 50, workers)
    cpu0 = mw.cpu_seconds()
    with PeakPss(lambda: [mw.popen.pid]) as mw_pss:
        mw_res = smtp_load(MW_SMTP, args.messages, conc,
                           args.work / "mailward" / "mail" / "client-a.test", name)
    cpu = mw.cpu_seconds() - cpu0
    add(f"{name} peak PSS MiB c={conc}", mw_pss.peak_mib)
    add(f"{name} delivered msg/s c={conc}", mw_res.get("delivered_rate"))
    add(f"{name} accept p99 ms c={conc}", mw_res["lat_ms"]["p99"])
    add(f"{name} server CPU ms/msg c={conc}", 1000 * cpu / args.messages)
    add(f"{name} peak RSS MiB c={conc}", mw.peak_rss_mib())
    add(f"{name} PSS MiB after c={conc}", mw.pss_mib())
    mw.stop()
    return mw_res, mw_pss.peak_mib


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[10, 50])
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "mailward-bench")
    ap.add_argument("--workers", type=int, nargs="+", default=[1],
                    help="[smtp] workers settings to run, each in every repetition")
    args = ap.parse_args()
    rows: dict[str, Row] = {}

    def add(name: str, value: float | None) -> None:
        if value is not None:
            rows.setdefault(name, Row(name)).values.append(value)

    with_ref = ref_running()
    if not with_ref:
        print("reference stack not running: its rows are skipped", file=sys.stderr)
    for rep in range(args.reps):
        for conc in args.concurrency:
            runs: dict[str, tuple[dict, float]] = {}  # label → (load result, peak PSS)
            for workers in args.workers:
                name = "mailward" if len(args.workers) == 1 else f"mailward w={workers}"
                runs[name] = measure_mailward(args, conc, workers, name, add)

            sink = start_sink(args.work / "sink")
            sink_res = smtp_load(SINK_PORT, args.messages, conc, args.work / "sink", "sink")
            sink.stop()
            add(f"aiosmtpd+fsync ceiling msg/s c={conc}", sink_res.get("delivered_rate"))
            for name, (mw_res, _) in runs.items():
                if sink_res.get("delivered_rate"):
                    add(f"ratio {name} / ceiling c={conc}",
                        (mw_res.get("delivered_rate") or 0) / sink_res["delivered_rate"])

            if with_ref:
                subprocess.run([str(SHARED / "reference" / "start.sh"), "--fresh"], check=True,
                               capture_output=True)  # fmt: skip
                with PeakPss(reference_roots) as ref_pss:
                    ref_res = smtp_load(REF_SMTP, args.messages, conc, REF_ROOT / "mail" /
                                        "client-a.test", "reference")  # fmt: skip
                add(f"postfix+dovecot delivered msg/s c={conc}", ref_res.get("delivered_rate"))
                add(f"postfix+dovecot peak PSS MiB c={conc}", ref_pss.peak_mib)
                for name, (mw_res, mw_peak) in runs.items():
                    if ref_pss.peak_mib:
                        add(f"ratio peak PSS {name} / reference c={conc}",
                            mw_peak / ref_pss.peak_mib)  # fmt: skip
                    if ref_res.get("delivered_rate"):
                        add(f"ratio {name} / reference c={conc}",
                            (mw_res.get("delivered_rate") or 0) / ref_res["delivered_rate"])
        print(f"repetition {rep + 1}/{args.reps} done", file=sys.stderr)

    print(f"# Mailward bench {time.strftime('%Y-%m-%d')} on {os.uname().nodename}, "
          f"{os.cpu_count()} cores, {args.messages} x 4 KiB messages, medians of {args.reps}, "
          f"[smtp] workers = {' and '.join(map(str, args.workers))}")
    for row in rows.values():
        print(row.summary())


if __name__ == "__main__":
    main()
