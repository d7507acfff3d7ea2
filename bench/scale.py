"""Scale curve for sizing a node: Mailward vs the reference stack as concurrency grows.

Delivery (SMTP, end to end into Maildir) at each ``--smtp`` connection count
and IMAP at each ``--imap`` session count. Every repetition runs every level
once against Mailward and once against the reference (Postfix + Dovecot, see
``../shared/bench/README.md``), back to back and in alternating order, so
machine noise hits both alike; the Mailward/reference ratio is taken inside
each repetition. The table reports medians (min..max over repetitions).

    .venv/bin/python bench/scale.py --smtp 1 10 50 200 --imap 10 50 200 --reps 3 --messages 1000

SMTP runs start from fresh state, as ``bench/run.py`` does: a new seeded
Mailward data folder and ``start.sh --fresh`` for the reference. A level with
C connections sends ``min(--messages, --per-connection * C)`` messages, so the
low levels (C=1 delivers only some tens of messages per second) stay within
seconds. IMAP needs INBOXes of ``--imap-seed`` messages for ``--imap-users``
users on both targets; APPEND-seeding takes minutes, so it is done once per
invocation. Each Mailward IMAP run then starts a new process on that store
(so its peak RSS is that run's) and, untimed, logs every user in once, all at
once: Mailward verifies argon2 one login at a time and caches the result for
5 minutes, so the timed run meets a warm server, as clients of a running node
do; that warm-up's LOGIN p99 is reported as the reconnect storm after a
restart. Dovecot gets the same untimed pass (it forks fresh imap processes
per session anyway). Each level runs about ``--imap-ops`` IMAP commands
(iterations scaled by the session count).

Other benchmarks skew every figure, and restarting the shared reference
(``start.sh --fresh``) breaks a run that uses it: before each run the script
waits (up to ``--wait-quiet`` seconds) until no other bench script or load
generator runs, and gives up after that unless ``--allow-concurrent``.

Server CPU is utime+stime from /proc: the Mailward process, and for the
reference the process trees of the Postfix and Dovecot masters (reaped
children included). Output: a markdown table to paste into a README, then one
JSON line with every per-run value. Everything talks to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

try:
    from bench import imap_compare, run
except ModuleNotFoundError:  # run as a script: bench/ itself is on sys.path
    import imap_compare  # type: ignore[no-redef]
    import run  # type: ignore[no-redef]

START_REF = run.SHARED / "reference" / "start.sh"
POSTFIX_PID = run.REF_ROOT / "postfix" / "spool" / "pid" / "master.pid"
DOVECOT_PID = run.REF_ROOT / "dovecot" / "run" / "master.pid"
# Every port bench/run.py's start_mailward configures: Mailward refuses to start when one
# is taken, and a foreign server there would answer our load.
MW_PORTS = (run.MW_SMTP, run.MW_IMAP, 4587, 4465, 4993, 4025)
IMAP_OPS_PER_ITERATION = 8  # FETCH envelopes + 5 x BODY.PEEK[] + SEARCH + STORE (imap_load.py)
# Above these the shared load generator is partly client-bound (../shared/bench/README.md).
CLIENT_BOUND_MSG_S, CLIENT_BOUND_OPS_S = 2000, 2500

Values = dict[str, float | None]
Runner = Callable[[], Values]


@dataclass
class Level:
    """One concurrency level of one protocol: per-metric values, one per repetition."""

    protocol: str
    concurrency: int
    load: int  # messages (SMTP) or iterations per session (IMAP)
    values: dict[str, list[float]] = field(default_factory=dict)
    extra: dict[str, list[str]] = field(default_factory=dict)  # e.g. slowest command names

    def add(self, got: Values) -> None:
        for name, value in got.items():
            if value is not None:
                self.values.setdefault(name, []).append(value)

    def cell(self, name: str, digits: int = 1) -> str:
        values = self.values.get(name)
        if not values:
            return "n/a"
        med = f"{statistics.median(values):,.{digits}f}"
        if len(values) == 1:
            return med
        return f"{med} ({min(values):,.{digits}f}..{max(values):,.{digits}f})"

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "protocol": self.protocol,
            "concurrency": self.concurrency,
            "messages" if self.protocol == "smtp" else "iterations": self.load,
        }
        for name, values in self.values.items():
            out[name] = {
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
                "values": values,
            }
        out.update(self.extra)
        return out


def pid_from(path: Path) -> int:
    return int(path.read_text().split()[0])


def reference_cpu_seconds() -> float:
    """CPU of the Postfix and Dovecot process trees (LMTP delivery runs under Dovecot)."""
    return sum(imap_compare.tree_cpu_seconds(pid_from(p)) for p in (POSTFIX_PID, DOVECOT_PID))


def fresh_reference() -> None:
    subprocess.run([str(START_REF), "--fresh"], check=True, capture_output=True, timeout=300)


def other_bench_processes() -> list[str]:
    """Python bench scripts (``bench/*.py``, the shared load generators) not of this run."""
    parents: dict[int, int] = {}
    argvs: dict[int, list[str]] = {}
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argvs[int(proc.name)] = (
                (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            )
    me, ours = os.getpid(), set()
    pid = me
    while pid > 1:  # our ancestors (shells, timeout) name this script too
        ours.add(pid)
        pid = parents.get(pid, 0)
    found = []
    for pid, argv in argvs.items():
        ancestor = pid
        while ancestor > 1 and ancestor != me:
            ancestor = parents.get(ancestor, 0)
        if pid in ours or ancestor == me:
            continue
        if any(a.endswith(".py") and (a.startswith("bench/") or "/bench/" in a) for a in argv):
            found.append(f"{pid}: {' '.join(argv).strip()[:160]}")
    return found


class Busy(Exception):
    """Other benchmarks kept running for longer than ``--wait-quiet``."""


def busy_ports() -> list[int]:
    """Mailward's bench ports that something listens on (ours is stopped between runs)."""
    busy = []
    for port in MW_PORTS:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                busy.append(port)
    return busy


def wait_quiet(args: argparse.Namespace) -> None:
    """Wait, bounded, until Mailward's ports are free and (unless --allow-concurrent) no
    other benchmark runs (see the module docstring)."""
    deadline = time.monotonic() + args.wait_quiet
    told = False
    while True:
        blockers = [f"127.0.0.1:{port} is taken" for port in busy_ports()]
        if not args.allow_concurrent:
            blockers += other_bench_processes()
        if not blockers:
            return
        listing = "\n  " + "\n  ".join(blockers)
        if time.monotonic() > deadline:
            raise Busy(f"still busy after {args.wait_quiet:.0f} s:{listing}")
        if not told:
            print(f"waiting for other benchmarks to end:{listing}", file=sys.stderr)
            told = True
        time.sleep(5)


def died(mw: run.Proc, what: str, notes: list[str]) -> bool:
    """True (and a note) when the Mailward process ended before the load did: its
    figures are then someone else's or nobody's."""
    if mw.popen.poll() is None:
        return False
    notes.append(f"{what}: mailward exited ({mw.popen.returncode}) during the run; dropped")
    return True


def reset_peak_rss(proc: run.Proc) -> None:
    """Peak RSS (VmHWM) back to the current RSS (Linux, proc(5) clear_refs value 5)."""
    Path(f"/proc/{proc.popen.pid}/clear_refs").write_text("5")


def per_ms(seconds: float, count: int | None) -> float | None:
    return 1000 * seconds / count if count else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


# --- SMTP ------------------------------------------------------------------


def smtp_mailward(work: Path, users: int, messages: int, conc: int, notes: list[str]) -> Values:
    mw = run.start_mailward(work / "mailward-smtp", users)
    try:
        cpu0 = mw.cpu_seconds()
        res = run.smtp_load(
            run.MW_SMTP,
            messages,
            conc,
            work / "mailward-smtp" / "mail" / "client-a.test",
            "mailward",
        )
        cpu = mw.cpu_seconds() - cpu0
        rss = mw.peak_rss_mib()
        if died(mw, f"smtp c={conc}", notes):
            return {}
    finally:
        mw.stop()
    check_smtp(res, f"mailward c={conc}", notes)
    done = res.get("delivered") or res["accepted"]
    return {
        "mw_rate": res.get("delivered_rate"),
        "mw_accept_rate": res.get("accept_rate"),
        "mw_p99": res["lat_ms"]["p99"],
        "mw_cpu_ms": per_ms(cpu, done),
        "mw_rss": rss,
        "mw_client_cpu_s": res["client_cpu_s"],
    }


def smtp_reference(messages: int, conc: int, notes: list[str]) -> Values:
    fresh_reference()
    cpu0 = reference_cpu_seconds()
    res = run.smtp_load(
        run.REF_SMTP, messages, conc, run.REF_ROOT / "mail" / "client-a.test", "reference"
    )
    cpu = reference_cpu_seconds() - cpu0
    check_smtp(res, f"reference c={conc}", notes)
    done = res.get("delivered") or res["accepted"]
    return {
        "ref_rate": res.get("delivered_rate"),
        "ref_accept_rate": res.get("accept_rate"),
        "ref_p99": res["lat_ms"]["p99"],
        "ref_cpu_ms": per_ms(cpu, done),
        "ref_client_cpu_s": res["client_cpu_s"],
    }


def check_smtp(res: dict[str, Any], what: str, notes: list[str]) -> None:
    if res["errors"] or not res.get("delivery_complete"):
        notes.append(
            f"{what}: {res['accepted']}/{res['messages']} accepted, "
            f"{res.get('delivered')} delivered, {res['errors']} errors "
            f"{res['first_errors'][:1]}"
        )
    if (res.get("accept_rate") or 0) > CLIENT_BOUND_MSG_S:
        notes.append(f"{what}: {res['accept_rate']} msg/s accepted is partly client-bound")


# --- IMAP ------------------------------------------------------------------


def imap_args(
    users: int, conc: int, iterations: int, seed: int, clients: int = 1
) -> argparse.Namespace:
    """The options ``imap_compare.run_load`` reads."""
    return argparse.Namespace(
        users=users, concurrency=conc, iterations=iterations, seed=seed, relogin=False,
        clients=clients,
    )  # fmt: skip


def seed_imap(port: int, users: int, seed: int, label: str, notes: list[str]) -> None:
    """APPEND until every INBOX holds ``seed`` messages (imap_load skips full ones)."""
    t0 = time.monotonic()
    res = imap_compare.run_load(port, imap_args(users, 1, 0, seed), f"seed-{label}")
    if res.get("error") or res.get("errors"):
        raise RuntimeError(f"seeding {label} failed: {res}")
    notes.append(
        f"{label}: {users} INBOXes x {seed} seeded by APPEND in {time.monotonic() - t0:.0f} s"
    )
    print(notes[-1], file=sys.stderr)


def warm_imap(port: int, users: int, label: str) -> float | None:
    """One untimed session per user, all at once; the LOGIN p99 in ms.

    Against a just-started Mailward this is what clients meet when they all
    reconnect after a restart (argon2 for every user, one at a time)."""
    res = imap_compare.run_load(port, imap_args(users, users, 1, 0), f"warm-{label}")
    if res["errors"]:
        raise RuntimeError(f"warm-up of {label} failed: {res['first_errors']}")
    login = res["per_command"].get("LOGIN")
    return login["p99_ms"] if login else None


def imap_values(
    prefix: str, res: dict[str, Any], cpu: float, what: str, notes: list[str], level: Level
) -> Values:
    per = res["per_command"]
    if res["errors"]:
        notes.append(f"{what}: {res['errors']} session errors {res['first_errors'][:1]}")
    if (res.get("ops_per_s") or 0) > CLIENT_BOUND_OPS_S * res.get("clients", 1):
        notes.append(f"{what}: {res['ops_per_s']} ops/s is partly client-bound")
    slowest = max(per, key=lambda c: per[c]["p99_ms"]) if per else None
    if slowest is not None:
        level.extra.setdefault(f"{prefix}_slowest_cmd", []).append(slowest)

    def p99(command: str) -> float | None:
        return per[command]["p99_ms"] if command in per else None

    return {
        f"{prefix}_rate": res["ops_per_s"],
        f"{prefix}_fetch_env_p99": p99("FETCH_ENVELOPE"),
        f"{prefix}_select_p99": p99("SELECT"),
        f"{prefix}_login_p99": p99("LOGIN"),
        f"{prefix}_fetch_body_p99": p99("FETCH_BODY"),
        f"{prefix}_slowest_p99": p99(slowest) if slowest else None,
        f"{prefix}_cpu_ms": per_ms(cpu, res["ops"]),
        f"{prefix}_client_cpu_s": res["client_cpu_s"],
    }


def imap_mailward(data: Path, args: argparse.Namespace, level: Level, notes: list[str]) -> Values:
    """A new process on the seeded store, warmed, then timed (argon2 results are cached
    for 5 minutes from a restart-and-warm on: no run meets an expiry)."""
    mw = run.serve_mailward(data)
    try:
        run.wait_port(run.MW_IMAP)
        restart_login = warm_imap(run.MW_IMAP, args.imap_users, "mailward")
        restart_rss = mw.peak_rss_mib()
        reset_peak_rss(mw)  # the timed run's peak, not the warm-up's (argon2: 64 MiB each)
        cpu0 = mw.cpu_seconds()
        with run.PeakPss(lambda: [mw.popen.pid]) as pss:
            res = imap_compare.run_load(
                run.MW_IMAP,
                imap_args(args.imap_users, level.concurrency, level.load, 0, args.imap_clients),
                "mailward",
            )  # fmt: skip
        cpu = mw.cpu_seconds() - cpu0
        rss = mw.peak_rss_mib()
        if died(mw, f"imap c={level.concurrency}", notes):
            return {}
    finally:
        mw.stop()
    got = imap_values("mw", res, cpu, f"mailward imap c={level.concurrency}", notes, level)
    got.update(mw_rss=rss, mw_pss=pss.peak_mib, mw_restart_login_p99=restart_login,
               mw_restart_rss=restart_rss)  # fmt: skip
    if res["elapsed_s"] > 240:
        notes.append(
            f"mailward imap c={level.concurrency}: a {res['elapsed_s']:.0f} s run "
            "outlives the 5-minute login cache: lower --imap-ops"
        )
    return got


def imap_reference(args: argparse.Namespace, level: Level, notes: list[str]) -> Values:
    warm_imap(run.REF_IMAP, args.imap_users, "dovecot")
    dovecot = pid_from(DOVECOT_PID)
    cpu0 = imap_compare.tree_cpu_seconds(dovecot)
    # PSS of Dovecot's whole tree (master, auth, one imap process per session):
    # what Mailward's one process is compared with.
    with run.PeakPss(lambda: [dovecot]) as pss:
        res = imap_compare.run_load(
            run.REF_IMAP,
            imap_args(args.imap_users, level.concurrency, level.load, 0, args.imap_clients),
            "dovecot",
        )
    cpu = imap_compare.tree_cpu_seconds(dovecot) - cpu0
    got = imap_values("ref", res, cpu, f"dovecot imap c={level.concurrency}", notes, level)
    got["ref_pss"] = pss.peak_mib
    return got


# --- driver ----------------------------------------------------------------


def alternate(rep: int, mailward: Runner, reference: Runner | None) -> Values:
    """Both targets back to back, Mailward first in even repetitions."""
    runners = [mailward] if reference is None else [mailward, reference]
    if rep % 2:
        runners.reverse()
    got: Values = {}
    for runner in runners:
        got.update(runner())
    return got


def smtp_messages(conc: int, args: argparse.Namespace) -> int:
    if args.per_connection <= 0:
        return args.messages
    return min(args.messages, args.per_connection * conc)


def imap_iterations(conc: int, args: argparse.Namespace) -> int:
    return max(1, round(args.imap_ops / (conc * IMAP_OPS_PER_ITERATION)))


@dataclass
class Bench:
    """One invocation: the options, what was measured so far, and notes for the table."""

    args: argparse.Namespace
    with_ref: bool
    smtp: list[Level]
    imap: list[Level]
    notes: list[str] = field(default_factory=list)
    others: set[str] = field(default_factory=set)  # bench processes seen running alongside

    def measure(self, rep: int, level: Level, mailward: Runner, reference: Runner) -> None:
        wait_quiet(self.args)
        self.others.update(other_bench_processes())  # with --allow-concurrent
        got = alternate(rep, mailward, reference if self.with_ref else None)
        self.others.update(other_bench_processes())  # started meanwhile
        got["ratio"] = ratio(got.get("mw_rate"), got.get("ref_rate"))
        level.add(got)
        unit = "msg/s" if level.protocol == "smtp" else "ops/s"
        print(
            f"rep {rep + 1} {level.protocol} c={level.concurrency} load={level.load}: mailward "
            f"{got.get('mw_rate')} {unit}, reference {got.get('ref_rate')} {unit}",
            file=sys.stderr,
        )

    def smtp_part(self) -> None:
        args = self.args
        for level in self.smtp:
            if level.load < 5 * level.concurrency:
                self.notes.append(
                    f"smtp c={level.concurrency}: only {level.load} messages, "
                    f"{level.load / level.concurrency:.1f} per connection: connection setup "
                    "weighs in"
                )
        for rep in range(args.reps):
            for level in self.smtp:
                n, c = level.load, level.concurrency
                self.measure(
                    rep,
                    level,
                    partial(smtp_mailward, args.work, args.users, n, c, self.notes),
                    partial(smtp_reference, n, c, self.notes),
                )

    def imap_part(self) -> None:
        args = self.args
        wait_quiet(args)
        data = args.work / "mailward-imap"
        mw = run.start_mailward(data, args.users)
        try:
            run.wait_port(run.MW_IMAP)
            seed_imap(run.MW_IMAP, args.imap_users, args.imap_seed, "mailward", self.notes)
        finally:
            mw.stop()
        if self.with_ref:  # wipe what the SMTP runs delivered: both INBOXes hold only the seed
            fresh_reference()
            seed_imap(run.REF_IMAP, args.imap_users, args.imap_seed, "dovecot", self.notes)
        for rep in range(args.reps):
            for level in self.imap:
                self.measure(
                    rep,
                    level,
                    partial(imap_mailward, data, args, level, self.notes),
                    partial(imap_reference, args, level, self.notes),
                )

    def run(self) -> None:
        try:
            if self.smtp:
                self.smtp_part()
            if self.imap:
                self.imap_part()
        except Busy as exc:
            self.notes.append(f"stopped early: {exc}")
            print(self.notes[-1], file=sys.stderr)
        restart = [v for lv in self.imap for v in lv.values.get("mw_restart_login_p99", [])]
        restart_rss = [v for lv in self.imap for v in lv.values.get("mw_restart_rss", [])]
        if restart:
            self.notes.append(
                f"mailward just restarted, {self.args.imap_users} users logging in at once (the "
                f"untimed warm-up before each IMAP run): LOGIN p99 median "
                f"{statistics.median(restart):,.0f} ms ({min(restart):,.0f}.."
                f"{max(restart):,.0f}), peak RSS up to {max(restart_rss):,.0f} MiB"
            )
        self.notes.extend(
            f"other benchmark process running alongside: {p}" for p in sorted(self.others)
        )


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def slowest(level: Level, prefix: str) -> str:
    names = level.extra.get(f"{prefix}_slowest_cmd", [])
    if not names:
        return "n/a"
    common = max(set(names), key=names.count)
    return f"{level.cell(f'{prefix}_slowest_p99')} {common}"


def report(bench: Bench) -> list[str]:
    """The markdown for a README: a title line, a table per protocol, the notes."""
    args, with_ref = bench.args, bench.with_ref
    ref = "Postfix+Dovecot" if with_ref else "reference (not running)"
    spread = "medians (min..max)" if args.reps > 1 else "single run"
    out = [
        f"### Mailward scale curve, {time.strftime('%Y-%m-%d')}, {os.uname().nodename}, "
        f"{os.cpu_count()} cores, {args.reps} alternating repetition(s), {spread}",
        "",
    ]
    smtp, imap = bench.smtp, bench.imap
    if smtp:
        out.append(
            f"Delivery, end to end into Maildir, 4 KiB messages to {args.users} users "
            f"(at most {args.messages} per run, {args.per_connection} per connection); "
            f"reference: {ref}."
        )
        out.append("")
        out += table(
            [
                "conns",
                "msgs",
                "Mailward msg/s",
                "ref msg/s",
                "ratio MW/ref",
                "MW accept p99 ms",
                "ref accept p99 ms",
                "MW CPU ms/msg",
                "ref CPU ms/msg",
                "MW peak RSS MiB",
            ],
            [
                [
                    str(lv.concurrency),
                    str(lv.load),
                    lv.cell("mw_rate"),
                    lv.cell("ref_rate"),
                    lv.cell("ratio", 2),
                    lv.cell("mw_p99"),
                    lv.cell("ref_p99"),
                    lv.cell("mw_cpu_ms", 2),
                    lv.cell("ref_cpu_ms", 2),
                    lv.cell("mw_rss", 0),
                ]
                for lv in smtp
            ],
        )
        out.append("")
    if imap:
        dovecot = "Dovecot" if with_ref else "Dovecot (not running)"
        out.append(
            f"IMAP, imap_load.py: {args.imap_users} users, INBOX of {args.imap_seed} "
            f"messages, about {args.imap_ops} commands per run from {args.imap_clients} "
            f"load generator process(es); reference: {dovecot}. "
            'p99 in ms; "slowest": the highest p99 of any command family in each run, '
            "named by the family that was slowest most often."
        )
        out.append("")
        out += table(
            [
                "sessions",
                "iters",
                "Mailward ops/s",
                "Dovecot ops/s",
                "ratio MW/ref",
                "MW FETCH env p99",
                "ref FETCH env p99",
                "MW SELECT p99",
                "ref SELECT p99",
                "MW slowest p99",
                "ref slowest p99",
                "MW CPU ms/op",
                "ref CPU ms/op",
                "MW peak RSS MiB",
                "MW peak PSS MiB",
                "ref peak PSS MiB",
            ],
            [
                [
                    str(lv.concurrency),
                    str(lv.load),
                    lv.cell("mw_rate"),
                    lv.cell("ref_rate"),
                    lv.cell("ratio", 2),
                    lv.cell("mw_fetch_env_p99"),
                    lv.cell("ref_fetch_env_p99"),
                    lv.cell("mw_select_p99"),
                    lv.cell("ref_select_p99"),
                    slowest(lv, "mw"),
                    slowest(lv, "ref"),
                    lv.cell("mw_cpu_ms", 2),
                    lv.cell("ref_cpu_ms", 2),
                    lv.cell("mw_rss", 0),
                    lv.cell("mw_pss", 0),
                    lv.cell("ref_pss", 0),
                ]
                for lv in imap
            ],
        )
        out.append("")
    out += [f"- {note}" for note in bench.notes]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--smtp",
        type=int,
        nargs="*",
        default=[1, 10, 50, 200],
        help="SMTP connection counts (none: skip delivery)",
    )
    ap.add_argument(
        "--imap",
        type=int,
        nargs="*",
        default=[10, 50, 200],
        help="IMAP session counts (none: skip IMAP)",
    )
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--messages", type=int, default=1000, help="messages per SMTP run, at most")
    ap.add_argument(
        "--per-connection",
        type=int,
        default=300,
        help="at most this many messages per connection (0: no cap), so that "
        "C=1 runs take seconds, not minutes",
    )
    ap.add_argument("--users", type=int, default=50, help="recipients / seeded users per domain")
    ap.add_argument("--imap-users", type=int, default=50)
    ap.add_argument("--imap-seed", type=int, default=200, help="messages per seeded INBOX")
    ap.add_argument(
        "--imap-ops",
        type=int,
        default=10000,
        help="IMAP commands per run, about (iterations = ops / (8 x sessions))",
    )
    ap.add_argument(
        "--imap-clients",
        type=int,
        default=1,
        help="load generator processes the IMAP sessions are split over (one is one core: "
        "above ~2,500 ops/s its own queue is in the latencies it reports); with more than "
        "one, each command's p50/p99 is the highest of any process, an upper bound",
    )
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=600,
        help="seconds to wait for other benchmarks to end before each run",
    )
    ap.add_argument(
        "--allow-concurrent",
        action="store_true",
        help="run even while other benchmarks run (noted under the table); beware: SMTP runs "
        "restart the shared reference under them",
    )
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "mailward-scale")
    args = ap.parse_args()
    if args.reps < 1 or args.messages < 1 or any(c < 1 for c in args.smtp + args.imap):
        ap.error("reps, messages and concurrency levels must be >= 1")
    if args.imap and args.imap_users > args.users:
        ap.error("--imap-users must not exceed --users (the seeded Mailward users)")

    with_ref = run.ref_running()
    if not with_ref:
        print("reference stack not running: its columns are n/a", file=sys.stderr)
    bench = Bench(
        args,
        with_ref,
        smtp=[Level("smtp", c, smtp_messages(c, args)) for c in args.smtp],
        imap=[Level("imap", c, imap_iterations(c, args)) for c in args.imap],
    )
    bench.run()
    print("\n".join(report(bench)))
    print(
        json.dumps(
            {
                "tool": "mailward_scale",
                "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "host": os.uname().nodename,
                "cores": os.cpu_count(),
                "reps": args.reps,
                "messages": args.messages,
                "per_connection": args.per_connection,
                "users": args.users,
                "imap_users": args.imap_users,
                "imap_seed": args.imap_seed,
                "imap_clients": args.imap_clients,
                "imap_ops": args.imap_ops,
                "reference": with_ref,
                "levels": [lv.summary() for lv in bench.smtp + bench.imap],
                "notes": bench.notes,
            }
        )
    )


if __name__ == "__main__":
    main()
