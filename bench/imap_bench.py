"""IMAP server benchmark (issue 3): logins/s, FETCH of headers of 1,000 messages,
SEARCH over 10,000 messages, and memory per idle connection.

It starts its own Mailward on a fresh data folder (``bench/seed.py``: users
``user1..user50@client-a.test``, password ``secret``) and fills mailboxes the
way a delivery agent does, by writing Maildir files into ``new/``:

- ``user1``: 1,000 messages, for FETCH of headers;
- ``user2``: 10,000 messages, for SEARCH;
- ``user3..user50``: 100 messages each, selected by the idle connections.

Then, with a stdlib asyncio client over loopback:

1. **logins/s**: ``--login-clients`` connections each repeat connect, LOGIN,
   LOGOUT; the first LOGIN (argon2id verification) is timed on its own, the
   rest use the verification cache (imap/auth.py).
2. **FETCH headers of 1,000 messages**: the first SELECT (which indexes the
   delivered files), then ``FETCH 1:* (BODY.PEEK[HEADER])`` cold (files read)
   and warm (summary cache), and ``FETCH 1:* (FLAGS ENVELOPE)`` warm.
3. **SEARCH over 10,000 messages**: first SELECT, then UNSEEN (flags only),
   SUBJECT (headers) cold and warm, FROM, and BODY (every file read).
4. **memory per idle connection**: the server's VmRSS and Pss (from
   ``/proc/<pid>/status`` and ``smaps_rollup``) before and after opening
   ``--idle`` connections, first only greeted, then logged in with INBOX
   selected and in IDLE; the difference divided by the number of connections.

Prints a table and, with ``--json``, one JSON line. Everything runs on
127.0.0.1; the server is stopped at the end.

    .venv/bin/python bench/imap_bench.py --idle 1000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
DOMAIN = "client-a.test"
PASSWORD = os.environ.get("BENCH_PASSWORD", "secret")  # the reference stack's test password
WORDS = (
    "budget", "report", "meeting", "invoice", "travel", "project", "launch", "review",
    "quarterly", "lunch", "contract", "design", "release", "roadmap", "hiring", "offsite",
    "feedback", "summary", "agenda",
)  # fmt: skip


# -- the server ------------------------------------------------------------------------


def raise_nofile(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, needed)) if hard != resource.RLIM_INFINITY else max(soft, needed)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def start_server(data: Path, ports: dict[str, int], idle: int) -> subprocess.Popen[bytes]:
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)
    (data / "mailward.toml").write_text(
        "[listen]\n" + "".join(f"{name} = {port}\n" for name, port in ports.items())
    )
    subprocess.run([PY, str(HERE / "seed.py"), "--data", str(data), "--users", "50"],
                   check=True, cwd=ROOT)  # fmt: skip
    popen = subprocess.Popen(
        [PY, "-m", "admin.cli", "serve", "--data", str(data)], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=lambda: raise_nofile(idle + 1000),
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), open_socket(ports["imap_port"]):
            return popen
        time.sleep(0.1)
    popen.kill()
    raise RuntimeError("Mailward did not start")


def open_socket(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=1)


def proc_memory(pid: int) -> dict[str, float]:
    """VmRSS and Pss of a process, KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            out[line.split(":")[0]] = float(line.split()[1])
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            out["Pss"] = float(line.split()[1])
    return out


# -- mail on disk ------------------------------------------------------------------------


def make_message(i: int, rnd: random.Random) -> bytes:
    subject = " ".join(rnd.choice(WORDS) for _ in range(4))
    sender = f"{rnd.choice(WORDS)}{i % 97}@example.org"
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(1_700_000_000 + i * 600))
    header = (f"From: {sender.split('@')[0].title()} <{sender}>\nTo: <bench@{DOMAIN}>\n"
              f"Subject: {subject} #{i}\nDate: {date}\nMessage-ID: <m{i}@example.org>\n"
              "MIME-Version: 1.0\n")  # fmt: skip
    words = " ".join(rnd.choice(WORDS) for _ in range(300))
    if i % 10 == 0:
        body = (
            f'Content-Type: multipart/alternative; boundary="b{i}"\n\n--b{i}\n'
            f"Content-Type: text/plain; charset=utf-8\n\n{words}\n--b{i}\n"
            f"Content-Type: text/html; charset=utf-8\n\n<p>{words}</p>\n--b{i}--\n"
        )
    else:
        body = f"Content-Type: text/plain; charset=utf-8\n\n{words}\n"
    return (header + body).encode()


def deliver(data: Path, user: str, count: int, seed: int) -> None:
    """Write ``count`` messages into a mailbox's new/, named as Mailward's delivery names them."""
    new = data / "mail" / DOMAIN / user / "new"
    new.mkdir(parents=True, exist_ok=True)
    for sub in ("cur", "tmp"):
        (new.parent / sub).mkdir(exist_ok=True)
    rnd = random.Random(seed)
    for i in range(count):
        body = make_message(i, rnd)
        wire = len(body) + body.count(b"\n")
        name = f"{1_700_000_000 + i}.M{i}P{os.getpid()}Q{i}.bench,S={len(body)},W={wire}"
        (new / name).write_bytes(body)


# -- a small IMAP client ------------------------------------------------------------------


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.n = reader, writer, 0

    @classmethod
    async def connect(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
        client = cls(reader, writer)
        greeting = await reader.readline()
        if not greeting.startswith(b"* OK"):
            raise RuntimeError(f"greeting {greeting!r}")
        return client

    async def _line(self) -> bytes:
        line = await self.reader.readline()
        if not line:
            raise ConnectionError("closed by server")
        while line.endswith(b"}\r\n") and b"{" in line:
            size = int(line[line.rindex(b"{") + 1 : -3].rstrip(b"+"))
            line += await self.reader.readexactly(size) + await self.reader.readline()
        return line

    async def command(self, text: str) -> list[bytes]:
        """Untagged responses of one command; raises unless it ends OK."""
        self.n += 1
        tag = b"b%d" % self.n
        self.writer.write(tag + b" " + text.encode() + b"\r\n")
        await self.writer.drain()
        untagged = []
        while True:
            line = await self._line()
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(f"{text[:40]}: {line[:200]!r}")
                return untagged
            untagged.append(line)

    async def login(self, user: str) -> None:
        await self.command(f'LOGIN "{user}@{DOMAIN}" "{PASSWORD}"')

    async def idle(self) -> None:
        self.n += 1
        self.writer.write(b"b%d IDLE\r\n" % self.n)
        await self.writer.drain()
        line = await self._line()
        if not line.startswith(b"+"):
            raise RuntimeError(f"IDLE: {line!r}")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


async def timed(action: Callable[[], Awaitable[object]]) -> tuple[float, object]:
    start = time.perf_counter()
    result = await action()
    return time.perf_counter() - start, result


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


# -- the measurements ----------------------------------------------------------------------


async def bench_logins(port: int, clients: int, per_client: int) -> dict[str, float]:
    first = await Client.connect(port)
    cold, _ = await timed(lambda: first.login("user1"))  # argon2id, then cached
    await first.command("LOGOUT")
    await first.close()
    latencies: list[float] = []

    async def worker(i: int) -> None:
        for j in range(per_client):
            client = await Client.connect(port)
            took, _ = await timed(lambda c=client, u=f"user{1 + (i * per_client + j) % 50}":
                                  c.login(u))  # fmt: skip
            latencies.append(took)
            await client.command("LOGOUT")
            await client.close()

    # Every user once, so that all of them are verified (argon2) before timing.
    for user in range(1, 51):
        client = await Client.connect(port)
        await client.login(f"user{user}")
        await client.close()
    elapsed, _ = await timed(lambda: asyncio.gather(*(worker(i) for i in range(clients))))
    return {"logins_per_s": len(latencies) / elapsed, "login_p50_ms": 1000 * pct(latencies, 50),
            "login_p99_ms": 1000 * pct(latencies, 99), "first_login_ms": 1000 * cold,
            "cycles": len(latencies), "clients": clients}  # fmt: skip


async def median_of(client: Client, command: str, times: int) -> tuple[float, int]:
    """Median seconds of a command repeated, and the octets of its answer."""
    took, size = [], 0
    for _ in range(times):
        t, lines = await timed(lambda: client.command(command))
        took.append(t)
        size = sum(len(line) for line in lines)  # type: ignore[union-attr]
    return statistics.median(took), size


async def bench_fetch(port: int, reps: int) -> dict[str, float]:
    client = await Client.connect(port)
    await client.login("user1")
    select, lines = await timed(lambda: client.command("SELECT INBOX"))
    exists = next(int(x.split()[1]) for x in lines if x.endswith(b"EXISTS\r\n"))  # type: ignore[union-attr]
    cold, _ = await median_of(client, "FETCH 1:* (BODY.PEEK[HEADER])", 1)
    warm, size = await median_of(client, "FETCH 1:* (BODY.PEEK[HEADER])", reps)
    fields, _ = await median_of(
        client, "FETCH 1:* (BODY.PEEK[HEADER.FIELDS (From To Subject Date Message-ID)])", reps)
    envelope, _ = await median_of(client, "FETCH 1:* (FLAGS ENVELOPE)", reps)
    await client.command("LOGOUT")
    await client.close()
    return {"messages": exists, "first_select_ms": 1000 * select,
            "fetch_header_cold_ms": 1000 * cold, "fetch_header_warm_ms": 1000 * warm,
            "fetch_header_fields_warm_ms": 1000 * fields,
            "fetch_flags_envelope_warm_ms": 1000 * envelope,
            "fetch_header_bytes": size}  # fmt: skip


async def bench_search(port: int, reps: int) -> dict[str, float]:
    client = await Client.connect(port)
    await client.login("user2")
    select, lines = await timed(lambda: client.command("SELECT INBOX"))
    exists = next(int(x.split()[1]) for x in lines if x.endswith(b"EXISTS\r\n"))  # type: ignore[union-attr]
    await client.command("STORE 1:3000 +FLAGS.SILENT (\\Seen)")
    out = {"messages": exists, "first_select_ms": 1000 * select}
    searches = {
        "unseen": ("SEARCH UNSEEN", reps),
        "subject_cold": ('SEARCH SUBJECT "roadmap review"', 1),
        "subject_warm": ('SEARCH SUBJECT "roadmap review"', reps),
        "from_warm": ('SEARCH FROM "design4"', reps),
        "unseen_and_subject": ('SEARCH UNSEEN SUBJECT "launch"', reps),
        "body": ('SEARCH BODY "offsite hiring"', 1),
    }
    for name, (command, times) in searches.items():
        seconds, _ = await median_of(client, command, times)
        out[f"{name}_ms"] = 1000 * seconds
    await client.command("LOGOUT")
    await client.close()
    return out


async def bench_idle(port: int, pid: int, count: int) -> dict[str, float]:
    raise_nofile(count + 200)
    # Warm up what every session shares (snapshots, caches), then take the baseline.
    for user in range(3, 51):
        client = await Client.connect(port)
        await client.login(f"user{user}")
        await client.command("SELECT INBOX")
        await client.command("LOGOUT")
        await client.close()
    await asyncio.sleep(1)
    base = proc_memory(pid)
    clients: list[Client] = []
    sem = asyncio.Semaphore(50)

    async def open_one() -> Client:
        async with sem:
            return await Client.connect(port)

    clients = list(await asyncio.gather(*(open_one() for _ in range(count))))
    await asyncio.sleep(1)
    greeted = proc_memory(pid)

    async def settle(i: int, client: Client) -> None:
        async with sem:
            await client.login(f"user{3 + i % 48}")
            await client.command("SELECT INBOX")
            await client.idle()

    await asyncio.gather(*(settle(i, c) for i, c in enumerate(clients)))
    await asyncio.sleep(2)
    idling = proc_memory(pid)
    for client in clients:
        client.writer.write(b"DONE\r\nz LOGOUT\r\n")
    await asyncio.sleep(0.5)
    await asyncio.gather(*(c.close() for c in clients))

    def per(after: dict[str, float], key: str) -> float:
        return (after[key] - base[key]) / count

    return {"connections": count, "base_rss_mib": base["VmRSS"] / 1024,
            "greeted_rss_kib_per_conn": per(greeted, "VmRSS"),
            "greeted_pss_kib_per_conn": per(greeted, "Pss"),
            "idle_rss_kib_per_conn": per(idling, "VmRSS"),
            "idle_pss_kib_per_conn": per(idling, "Pss"),
            "rss_with_idle_mib": idling["VmRSS"] / 1024}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path,
                    default=Path(tempfile.gettempdir()) / "mailward-imap-bench")  # fmt: skip
    ap.add_argument("--imap-port", type=int, default=4243)
    ap.add_argument("--idle", type=int, default=1000, help="idle connections to open")
    ap.add_argument("--login-clients", type=int, default=10)
    ap.add_argument("--logins", type=int, default=2000, help="LOGINs in the rate test")
    ap.add_argument("--reps", type=int, default=5, help="repetitions of each warm command")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    ports = {"smtp_port": args.imap_port + 382, "imap_port": args.imap_port,
             "submission_port": args.imap_port + 444, "submissions_port": args.imap_port + 322,
             "imaps_port": args.imap_port + 650, "admin_port": args.imap_port - 118}  # fmt: skip
    raise_nofile(args.idle + 200)
    data = args.work / "data"
    started = time.perf_counter()
    server = start_server(data, ports, args.idle)
    try:
        deliver(data, "user1", 1_000, 1)
        deliver(data, "user2", 10_000, 2)
        for user in range(3, 51):
            deliver(data, f"user{user}", 100, user)
        port = ports["imap_port"]
        per_client = max(1, args.logins // args.login_clients)
        results = {
            "logins": asyncio.run(bench_logins(port, args.login_clients, per_client)),
            "fetch_1000": asyncio.run(bench_fetch(port, args.reps)),
            "search_10000": asyncio.run(bench_search(port, args.reps)),
            "idle": asyncio.run(bench_idle(port, server.pid, args.idle)),
        }
        results["server_peak_rss_mib"] = proc_memory(server.pid)["VmHWM"] / 1024
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    print(f"# Mailward IMAP bench {time.strftime('%Y-%m-%d')} on {os.uname().nodename}, "
          f"{os.cpu_count()} cores, {time.perf_counter() - started:.0f} s")
    for section, values in results.items():
        if isinstance(values, dict):
            for name, value in values.items():
                print(f"{section + '.' + name:<48} {value:>12.2f}")
        else:
            print(f"{section:<48} {values:>12.2f}")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
