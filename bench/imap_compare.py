"""IMAP side by side: ``imap_load.py`` against Mailward and Dovecot, alternating.

Each repetition runs the shared load generator once against each target,
back to back, so machine noise hits both alike; the ratio Mailward/Dovecot is
taken inside each repetition and the table reports medians (min..max) of the
ops/s, the ratios, and each command's p50/p99. Both servers must already be
running and seeded (``imap_load.py --seed 200`` once per target). With
``--pid`` (Mailward) and ``--reference-pid`` (the Dovecot master, whose
per-connection processes are counted when they are reaped) the server CPU
milliseconds per operation are reported too: on a shared machine they vary
less than the rates.

    .venv/bin/python bench/imap_compare.py --mailward 4243 --reference 1143 --reps 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOAD = HERE.parent.parent / "shared" / "bench" / "imap_load.py"


def cpu_seconds(pid: int, children: bool = False) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:  # reaped children (Dovecot's per-connection imap processes)
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> float:
    """CPU of a process, its live descendants and its reaped children."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    total = 0.0
    for pid in parents:
        ancestor = pid
        while ancestor not in (0, 1, root) and ancestor in parents:
            ancestor = parents[ancestor]
        if ancestor == root:
            with contextlib.suppress(OSError):
                total += cpu_seconds(pid, children=pid == root)
    return total


def run_load(port: int, args: argparse.Namespace, label: str) -> dict:
    """One run of the shared load generator; with ``args.clients`` > 1 the sessions are
    split over that many generator processes running at once (``merge_loads``)."""
    clients = max(1, min(getattr(args, "clients", 1), args.concurrency))
    shares = [args.concurrency // clients + (i < args.concurrency % clients)
              for i in range(clients)]  # fmt: skip
    procs = [subprocess.Popen(_load_command(port, args, share, label), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for share in shares]  # fmt: skip
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=900)
            lines = [ln for ln in out.splitlines() if ln.startswith("{")]
            if not lines:
                raise RuntimeError(f"imap_load gave no result: {out}\n{err}")
            results.append(json.loads(lines[-1]))
    finally:
        for proc in procs:  # a failed one must not leave the others loading the server
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results[0] if len(results) == 1 else merge_loads(results)


def _load_command(port: int, args: argparse.Namespace, concurrency: int, label: str) -> list[str]:
    cmd = [sys.executable, str(LOAD), "--port", str(port), "--users", str(args.users),
           "--concurrency", str(concurrency), "--iterations", str(args.iterations),
           "--seed", str(args.seed), "--label", label, "--duration", "600",
           "--reply-timeout", "120"]  # fmt: skip
    if args.relogin:
        cmd.append("--relogin")
    return cmd


def merge_loads(results: list[dict]) -> dict:
    """Concurrent generator runs as one: operations summed over the longest run's
    time, CPU summed, and per command the highest p50 and p99 of any run, an upper
    bound of the pooled percentile (each run has at most 1 % of its samples above
    its own p99). One generator is one Python process on one core: at a few
    thousand commands a second it is the bottleneck, and its own queue shows up
    in every latency it reports."""
    if any("error" in r for r in results):
        return next(r for r in results if "error" in r)
    elapsed = max(r["elapsed_s"] for r in results)
    ops = sum(r["ops"] for r in results)
    per: dict[str, dict[str, float]] = {}
    for r in results:
        for command, stats in r["per_command"].items():
            into = per.setdefault(command, {"n": 0, "p50_ms": 0.0, "p99_ms": 0.0})
            into["n"] += stats["n"]
            into["p50_ms"] = max(into["p50_ms"], stats["p50_ms"])
            into["p99_ms"] = max(into["p99_ms"], stats["p99_ms"])
    return {
        **results[0],
        "concurrency": sum(r["concurrency"] for r in results),
        "clients": len(results),
        "ops": ops,
        "errors": sum(r["errors"] for r in results),
        "first_errors": [e for r in results for e in r["first_errors"]][:3],
        "elapsed_s": elapsed,
        "ops_per_s": round(ops / elapsed, 1) if elapsed else None,
        "per_command": per,
        "client_cpu_s": round(sum(r["client_cpu_s"] for r in results), 3),
    }


def _med(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"{statistics.median(values):.1f} ({min(values):.1f}..{max(values):.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mailward", type=int, default=4143, help="Mailward IMAP port")
    ap.add_argument("--reference", type=int, default=1143, help="Dovecot IMAP port")
    ap.add_argument("--pid", type=int, help="Mailward server pid, for CPU per op")
    ap.add_argument("--reference-pid", type=int,
                    help="Dovecot master pid: CPU per op of its whole process tree")  # fmt: skip
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--seed", type=int, default=200)
    ap.add_argument("--relogin", action="store_true")
    ap.add_argument("--json", action="store_true", help="also print every raw result")
    args = ap.parse_args()

    results: dict[str, list[dict]] = {"mailward": [], "dovecot": []}
    ratios: list[float] = []
    cpu_per_op: dict[str, list[float]] = {"mailward": [], "dovecot": []}
    measure = {"mailward": (lambda: cpu_seconds(args.pid)) if args.pid else None,
               "dovecot": (lambda: tree_cpu_seconds(args.reference_pid))
               if args.reference_pid else None}  # fmt: skip
    for rep in range(args.reps):
        order = [("mailward", args.mailward), ("dovecot", args.reference)]
        if rep % 2:
            order.reverse()
        got = {}
        for label, port in order:
            cpu = measure[label]
            cpu0 = cpu() if cpu is not None else None
            got[label] = res = run_load(port, args, label)
            if cpu is not None and cpu0 is not None and res["ops"]:
                cpu_per_op[label].append(1000 * (cpu() - cpu0) / res["ops"])
            results[label].append(res)
            if args.json:
                print(json.dumps(res))
            if res["errors"]:
                print(f"{label}: {res['errors']} errors: {res['first_errors']}", file=sys.stderr)
        ratios.append(got["mailward"]["ops_per_s"] / got["dovecot"]["ops_per_s"])
        print(f"rep {rep + 1}: mailward {got['mailward']['ops_per_s']} ops/s, dovecot "
              f"{got['dovecot']['ops_per_s']} ops/s, ratio {ratios[-1]:.2f}",
              file=sys.stderr)  # fmt: skip

    print(f"# imap_load c={args.concurrency} users={args.users} iterations={args.iterations} "
          f"seed={args.seed}{' relogin' if args.relogin else ''}, {args.reps} alternating reps, "
          "medians (min..max)")  # fmt: skip
    print(f"{'ops/s mailward':<28} {_med([r['ops_per_s'] for r in results['mailward']])}")
    print(f"{'ops/s dovecot':<28} {_med([r['ops_per_s'] for r in results['dovecot']])}")
    print(f"{'ratio mailward/dovecot':<28} "
          f"{statistics.median(ratios):.2f} ({min(ratios):.2f}..{max(ratios):.2f})")  # fmt: skip
    for label, values in cpu_per_op.items():
        if values:
            print(f"{label + ' CPU ms/op':<28} {_med(values)}")
    commands = sorted({c for rs in results.values() for r in rs for c in r["per_command"]})
    print(f"{'command':<16} {'mw p50':>9} {'dc p50':>9} {'mw p99':>9} {'dc p99':>9}  (ms)")
    for command in commands:
        cells = []
        for stat in ("p50_ms", "p99_ms"):
            for label in ("mailward", "dovecot"):
                values = [r["per_command"][command][stat] for r in results[label]
                          if command in r["per_command"]]  # fmt: skip
                cells.append(f"{statistics.median(values):9.1f}" if values else f"{'n/a':>9}")
        print(f"{command:<16} {cells[0]} {cells[1]} {cells[2]} {cells[3]}")


if __name__ == "__main__":
    main()
