"""RCPT decision latency at scale: 10,000 domains, 1,000,000 mailboxes, 100,000 forwards.

The target: the RCPT decision p99 stays under 2 ms with that directory in the
database, on SQLite and on PostgreSQL. This script

1. seeds a fresh Mailward database: the real migrations, the organization,
   clients, people and a role through ``admin.services.directory`` (audited as
   usual), then domains, mailboxes, forwarding rules and internal aliases
   bulk-inserted with SQLAlchemy Core in chunks, every column filled the way
   the service layer fills it (owner, purpose, created-by, an expiry inside the
   domain's cap, targets that are other hosted mailboxes), and one audit entry
   that records the bulk seed, so the hash chain stays valid;
2. starts the real server (``python -m admin.cli serve``) on ports 46xx, with
   sender verification off and DNS pointed at a dead loopback port, and
   measures over SMTP on 127.0.0.1 the round trip of each ``RCPT TO``: one
   connection, EHLO, MAIL FROM, then RCPTs (RSET and a new MAIL FROM every 50);
3. prints a markdown table per backend and one JSON line: latency percentiles
   per phase, RCPT/s, the server's CPU time per RCPT (from /proc, so it holds
   up when other processes share the machine and latency does not), and the
   cold phases again by kind of recipient.

Recipients are drawn at random across the whole population: mostly plain
mailboxes, some with a forwarding rule, some aliases (a few of them
distribution lists of three mailboxes), some unknown (550).
The server caches recipient facts in memory (``storage.directory.FactsCache``),
so each "cold" phase uses recipients never asked for before in that server
process (a cache miss: the directory queries run), and each "warm" phase asks
again for the recipients of the cold phase before it (a cache hit). Phases:
warm-up (500 fresh recipients, not reported), cold c=1, warm c=1, cold c=10,
warm c=10 (10 concurrent connections).

    .venv/bin/python bench/rcpt_scale.py --backend sqlite
    .venv/bin/python bench/rcpt_scale.py --backend pg \\
        --pg postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/rcpt_scale.py --backend sqlite pg --seed-only   # seed, measure later
    .venv/bin/python bench/rcpt_scale.py --backend sqlite --reuse      # keep the seed
    .venv/bin/python bench/rcpt_scale.py --backend sqlite --reuse --list-share 0  # no lists
    .venv/bin/python bench/rcpt_scale.py --backend sqlite --domains 100 --mailboxes 10000 \\
        --rules 1000 --aliases 500 --rcpts 1000 --work /tmp/rcpt-small  # quick check

SQLite lives in ``<work>/sqlite`` (a data folder with the default engine).
PostgreSQL uses a database of its own (``--pg-db``, default ``mailward_bench``)
on the server that ``--pg`` names, dropped and created again for each seed, so
the database in the URL (the test suite's ``test``) is never touched; its data
folder (TLS, mail, spool) is ``<work>/pg``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Table, create_engine, func, insert, select, text
from sqlalchemy.engine import Connection, make_url

from admin.config import load_settings
from admin.services import directory as d
from storage import audit
from storage.db import Database
from storage.models import Alias, AuditEntry, Domain, ForwardingRule, Mailbox

try:
    from bench import run
    from bench.scale import other_bench_processes
except ModuleNotFoundError:  # run as a script: bench/ itself is on sys.path
    import run  # type: ignore[no-redef]
    from scale import other_bench_processes  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
HOST = "127.0.0.1"
PORTS = {"smtp_port": 4625, "submission_port": 4687, "submissions_port": 4665,
         "imap_port": 4643, "imaps_port": 4693, "admin_port": 4680}  # fmt: skip
SMTP_PORT = PORTS["smtp_port"]
MARKER = "# written by bench/rcpt_scale.py"
ACTOR = "system:bench"
SEED_ACTION = "bench.bulk-seed"
SUFFIX = "rcpt-scale.test"
SENDER = "bench@sender.example"
CLIENTS, PEOPLE = 10, 50
ROLE_EVERY = 50  # every 50th mailbox is owned by a role, the others by a person
RULE_DAYS = 60  # forwards expire 60 days after the seed; the domain cap is 90
CHUNK = 20_000
RCPTS_PER_TRANSACTION = 50  # then RSET: the server takes at most 100 recipients
WARMUP = 500
TARGET_P99_MS = 2.0
# Share of each kind of recipient in a draw (renormalized when a kind is empty).
MIX = {"mailbox": 0.73, "forward": 0.10, "alias": 0.10, "list": 0.02, "unknown": 0.05}
EXPECTED = {"mailbox": 250, "forward": 250, "alias": 250, "list": 250, "unknown": 550}
LIST_EVERY, LIST_SIZE = 10, 3  # every 10th alias is a distribution list of 3 mailboxes


# -- the directory's layout --------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Where every seeded row is, computed from its index, so nothing is read back.

    Mailbox ``k`` (0-based) is the ``u``-th of domain ``i``, domain-major, so
    ids and the ``(domain_id, local_part)`` index grow together while inserting.
    Forwarding rule ``r`` sits on mailbox ``r * step`` and targets the next
    mailbox (even ``r``) or one half the population away, on another domain
    (odd ``r``). Alias ``a`` is ``alias<n>@`` domain ``a % domains``, targeting
    a mailbox spread over the population; every 10th alias is a distribution
    list (one row per target, three targets).
    """

    domains: int
    mailboxes: int
    rules: int
    aliases: int

    def check(self) -> None:
        if self.domains < 1 or self.mailboxes < max(self.domains, 10):
            raise SystemExit("need at least one domain and at least one mailbox per domain")
        if self.rules < 0 or self.aliases < 0 or self.rules > self.mailboxes // 2:
            raise SystemExit("rules must be between 0 and half the number of mailboxes")

    def as_dict(self) -> dict[str, int]:
        return {"domains": self.domains, "mailboxes": self.mailboxes,
                "forwarding_rules": self.rules, "aliases": self.aliases,
                "alias_rows": self.alias_rows}  # fmt: skip

    @staticmethod
    def domain_name(i: int) -> str:
        return f"d{i:05d}.{SUFFIX}"

    def place(self, k: int) -> tuple[int, int]:
        """(domain index, user number) of mailbox ``k``."""
        per, extra = divmod(self.mailboxes, self.domains)
        big = extra * (per + 1)  # the first ``extra`` domains hold one more
        if k < big:
            return divmod(k, per + 1)
        i, u = divmod(k - big, per)
        return extra + i, u

    def mailbox_address(self, k: int) -> str:
        i, u = self.place(k)
        return f"user{u:06d}@{self.domain_name(i)}"

    @property
    def rule_step(self) -> int:
        return self.mailboxes // self.rules if self.rules else 0

    def rule_source(self, r: int) -> int:
        return r * self.rule_step

    def rule_target(self, r: int) -> int:
        k = self.rule_source(r)
        offset = 1 if r % 2 == 0 else self.mailboxes // 2 + 1
        return (k + offset) % self.mailboxes

    def has_rule(self, k: int) -> bool:
        return bool(self.rules) and k % self.rule_step == 0 and k // self.rule_step < self.rules

    def alias_address(self, a: int) -> str:
        return f"alias{a // self.domains:05d}@{self.domain_name(a % self.domains)}"

    @staticmethod
    def is_list(a: int) -> bool:
        return a % LIST_EVERY == 0

    @property
    def lists(self) -> int:
        return -(-self.aliases // LIST_EVERY)

    @property
    def alias_rows(self) -> int:
        return self.aliases + (LIST_SIZE - 1) * self.lists

    def alias_targets(self, a: int) -> list[int]:
        first = (a * 7919 + 17) % self.mailboxes
        if not self.is_list(a):
            return [first]
        return [first, (first + 1) % self.mailboxes, (first + self.mailboxes // 3) % self.mailboxes]

    def unknown_address(self, n: int) -> str:
        return f"nobody{n:07d}@{self.domain_name(n % self.domains)}"


# -- seeding -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Principals:
    organization: str
    clients: list[int]
    people: list[int]
    role: int


def _create_principals(db: Database, now: datetime) -> Principals:
    """What an agency would set up by hand, through the audited service layer."""
    with db.session() as s:
        org = d.create_organization(s, actor=ACTOR, now=now, name="RCPT Scale Agency")
        clients = [d.create_client(s, actor=ACTOR, now=now, organization=org,
                                   name=f"rcpt-client-{c:02d}")
                   for c in range(CLIENTS)]  # fmt: skip
        people = [d.create_person(s, actor=ACTOR, now=now, organization=org, name=f"Owner {p}",
                                  contact_email=f"owner{p}@owners.example")
                  for p in range(PEOPLE)]  # fmt: skip
        role = d.create_role(s, actor=ACTOR, now=now, organization=org, name="rcpt-postmasters",
                             members=people[:3])  # fmt: skip
        return Principals(org.name, [c.id for c in clients], [p.id for p in people], role.id)


def _owner(who: Principals, k: int) -> dict[str, int | None]:
    if k % ROLE_EVERY == 0:
        return {"owner_person_id": None, "owner_role_id": who.role}
    return {"owner_person_id": who.people[k % len(who.people)], "owner_role_id": None}


def _next_id(conn: Connection, table: Table) -> int:
    return int(conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()) + 1


def _insert_chunks(conn: Connection, table: Table, rows: Iterable[dict[str, Any]],
                   label: str) -> int:  # fmt: skip
    """Insert rows that name every column: COPY on PostgreSQL, executemany in chunks elsewhere."""
    started, count = time.perf_counter(), 0

    def progress() -> None:
        if count % (10 * CHUNK) == 0:
            print(f"  {label}: {count:,} rows, {time.perf_counter() - started:.1f} s",
                  file=sys.stderr, flush=True)  # fmt: skip

    if conn.dialect.name == "postgresql":
        # The columns' own bind processors (UTCDateTime: aware -> naive UTC), as an INSERT would.
        columns = [(c.name, c.type.bind_processor(conn.dialect)) for c in table.columns]
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        names = ", ".join(name for name, _ in columns)
        with cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[n] if p is None or row[n] is None else p(row[n])
                                for n, p in columns])  # fmt: skip
                count += 1
                progress()
        return count

    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == CHUNK:
            conn.execute(insert(table), batch)
            count += len(batch)
            batch.clear()
            progress()
    if batch:
        conn.execute(insert(table), batch)
        count += len(batch)
    return count


def seed(db: Database, layout: Layout) -> dict[str, float]:
    """Seed an empty, migrated database; returns seconds per step."""
    timings: dict[str, float] = {}
    now = datetime.now(UTC)
    expires = now + timedelta(days=RULE_DAYS)
    mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        timings[name] = round(time.perf_counter() - mark, 2)
        mark = time.perf_counter()
        print(f"  {name}: {timings[name]:.1f} s", file=sys.stderr, flush=True)

    who = _create_principals(db, now)
    lap("organization, clients, people, role (services)")
    tables = {m: m.__table__ for m in (Domain, Mailbox, ForwardingRule, Alias)}

    with db.engine.begin() as conn:
        if db.is_sqlite:
            conn.exec_driver_sql("PRAGMA cache_size=-1000000")  # 1 GB for the index builds
        first = _next_id(conn, tables[Domain])
        domain_ids = [first + i for i in range(layout.domains)]
        _insert_chunks(conn, tables[Domain], (
            {"id": domain_ids[i], "client_id": who.clients[i % len(who.clients)],
             "name": layout.domain_name(i), "state": "active", "external_forwarding": False,
             "max_rule_days": 90, "quota_bytes": None, "used_bytes": 0, "created_at": now}
            for i in range(layout.domains)
        ), "domains")  # fmt: skip
    lap("domains")

    with db.engine.begin() as conn:
        if db.is_sqlite:
            conn.exec_driver_sql("PRAGMA cache_size=-1000000")
        mailbox_base = _next_id(conn, tables[Mailbox])

        def mailboxes() -> Iterator[dict[str, Any]]:
            for k in range(layout.mailboxes):
                i, u = layout.place(k)
                yield {"id": mailbox_base + k, "domain_id": domain_ids[i],
                       "local_part": f"user{u:06d}", "state": "active", **_owner(who, k),
                       "password_hash": None, "quota_bytes": None, "used_bytes": 0,
                       "created_at": now}  # fmt: skip

        _insert_chunks(conn, tables[Mailbox], mailboxes(), "mailboxes")
    lap("mailboxes")

    with db.engine.begin() as conn:
        rule_base = _next_id(conn, tables[ForwardingRule])
        _insert_chunks(conn, tables[ForwardingRule], (
            {"id": rule_base + r, "mailbox_id": mailbox_base + layout.rule_source(r),
             "target": layout.mailbox_address(layout.rule_target(r)), "external": False,
             "keep_copy": r % 5 != 4, **_owner(who, layout.rule_source(r)),
             "purpose": "covering for a colleague on leave (bench seed)", "created_by": ACTOR,
             "created_at": now, "expires_at": expires, "enabled": True}
            for r in range(layout.rules)
        ), "forwarding rules")  # fmt: skip
    lap("forwarding rules")

    def aliases(alias_base: int) -> Iterator[dict[str, Any]]:
        row = 0
        for a in range(layout.aliases):
            local = layout.alias_address(a).split("@")[0]
            purpose = "team distribution list" if layout.is_list(a) else "shared inbox alias"
            for target in layout.alias_targets(a):
                # Internal aliases need no expiry (admin.services.rules.add_alias); half carry one.
                yield {"id": alias_base + row, "domain_id": domain_ids[a % layout.domains],
                       "local_part": local, "target": layout.mailbox_address(target),
                       "external": False, **_owner(who, a), "purpose": f"{purpose} (bench seed)",
                       "created_by": ACTOR, "created_at": now,
                       "expires_at": expires if a % 2 else None, "enabled": True}  # fmt: skip
                row += 1

    with db.engine.begin() as conn:
        _insert_chunks(conn, tables[Alias], aliases(_next_id(conn, tables[Alias])), "aliases")
    lap("aliases")

    with db.engine.begin() as conn:
        if not db.is_sqlite:
            # Explicit ids left the sequences behind; later service inserts need them moved.
            for table in tables.values():
                conn.execute(text(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                    f"(SELECT COALESCE(MAX(id), 1) FROM {table.name}))"
                ))  # fmt: skip
    with db.session() as s:
        org = d.get_organization(s, who.organization)
        after = {**layout.as_dict(), "suffix": SUFFIX, "seeded_at": now.isoformat(),
                 "rules_expire_at": expires.isoformat()}  # fmt: skip
        audit.record(s, actor=ACTOR, action=SEED_ACTION, target=f"organization:{org.name}",
                     now=now, after=after, reason="bulk seed of bench/rcpt_scale.py")  # fmt: skip
    if db.is_sqlite:
        # Outside any transaction (the engine's "begin" hook would open one).
        raw = db.engine.raw_connection()
        try:
            raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()
    else:
        # Autovacuum would analyze the fresh tables within a minute; do it now.
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    lap("audit entry, sequences, checkpoint/analyze")
    return timings


def seeded_layout(db: Database) -> Layout | None:
    """The layout of the last bulk seed, if the tables still hold exactly it."""
    with db.reader() as s:
        raw = s.scalars(
            select(AuditEntry.after).where(AuditEntry.action == SEED_ACTION)
            .order_by(AuditEntry.id.desc()).limit(1)
        ).first()  # fmt: skip
        if raw is None:
            return None
        meta = json.loads(raw)
        layout = Layout(meta["domains"], meta["mailboxes"], meta["forwarding_rules"],
                        meta["aliases"])  # fmt: skip
        counts = [s.scalar(select(func.count()).select_from(m)) for m in
                  (Domain, Mailbox, ForwardingRule, Alias)]  # fmt: skip
    if counts != [layout.domains, layout.mailboxes, layout.rules, layout.alias_rows]:
        return None
    if datetime.fromisoformat(meta["rules_expire_at"]) < datetime.now(UTC) + timedelta(days=1):
        print("the seeded forwarding rules are about to expire: seeding again", file=sys.stderr)
        return None
    return layout


# -- backends --------------------------------------------------------------------------


def write_config(data: Path, database_url: str | None) -> None:
    lines = [MARKER]
    if database_url:
        lines.append(f"database_url = {json.dumps(database_url)}")
    lines += ["[listen]", f'host = "{HOST}"', *(f"{k} = {v}" for k, v in PORTS.items()),
              "[smtp]", "verify_senders = false",
              # Nothing leaves loopback: DNS goes to a closed local port.
              "[dns]", 'nameservers = ["127.0.0.1"]', "port = 9"]  # fmt: skip
    (data / "mailward.toml").write_text("\n".join(lines) + "\n")


def fresh_folder(data: Path) -> None:
    """Empty a data folder this script made (never anything else)."""
    if data.exists():
        config = data / "mailward.toml"
        if any(data.iterdir()) and not (config.exists() and config.read_text().startswith(MARKER)):
            raise SystemExit(f"{data} exists and was not made by this script; not removing it")
        shutil.rmtree(data)
    data.mkdir(parents=True)


def pg_url(url: str, dbname: str) -> str:
    return make_url(url).set(database=dbname).render_as_string(hide_password=False)


def pg_admin(url: str, sql: str, **params: str) -> list[Any]:
    engine = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            result = conn.execute(text(sql), params)
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def prepare(backend: str, args: argparse.Namespace, layout: Layout) -> tuple[Path, dict[str, Any]]:
    """A data folder holding ``layout``: reused when asked and possible, else seeded."""
    data: Path = args.work / backend
    database_url: str | None = None
    if backend == "pg":
        reserved = {"postgres", "template0", "template1", make_url(args.pg).database}
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", args.pg_db) or args.pg_db in reserved:
            raise SystemExit(f"--pg-db {args.pg_db!r}: name a database of its own for the bench")
        database_url = pg_url(args.pg, args.pg_db)

    if args.reuse and (data / "mailward.toml").exists():
        exists = backend == "sqlite" and (data / "mailward.db").exists()
        if backend == "pg" and load_settings(data).database_url == database_url:
            exists = bool(pg_admin(args.pg, "SELECT 1 FROM pg_database WHERE datname = :n",
                                   n=args.pg_db))  # fmt: skip
        if exists:
            db = Database(load_settings(data).db_url)
            try:
                found = seeded_layout(db)
            finally:
                db.dispose()
            if found == layout:
                print(f"{backend}: reusing the seed in {data}", file=sys.stderr)
                return data, {"reused": True}
            print(f"{backend}: {data} holds another seed ({found}); seeding", file=sys.stderr)

    fresh_folder(data)
    write_config(data, database_url)
    if backend == "pg":
        pg_admin(args.pg, f'DROP DATABASE IF EXISTS "{args.pg_db}" WITH (FORCE)')
        pg_admin(args.pg, f'CREATE DATABASE "{args.pg_db}"')
    print(f"{backend}: seeding {layout.as_dict()} into {data}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    db = Database(load_settings(data).db_url)
    try:
        db.migrate()
        steps = seed(db, layout)
    finally:
        db.dispose()
    seconds = round(time.perf_counter() - started, 1)
    print(f"{backend}: seeded in {seconds:.1f} s", file=sys.stderr, flush=True)
    return data, {"reused": False, "seconds": seconds, "steps": steps}


# -- the server ------------------------------------------------------------------------


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((HOST, port)) == 0


class Server:
    """``mailward serve`` on a data folder, its output appended to a log file."""

    def __init__(self, data: Path, log: Path) -> None:
        for port in PORTS.values():
            if port_open(port):
                raise SystemExit(f"port {port} is taken: is another bench running?")
        self.log = log
        self.log_offset = log.stat().st_size if log.exists() else 0
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                [PY, "-m", "admin.cli", "serve", "--data", str(data)], cwd=ROOT,
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 120
        while not port_open(SMTP_PORT):
            if self.popen.poll() is not None:
                raise SystemExit(f"mailward serve exited ({self.popen.returncode}); see {log}")
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"mailward serve did not listen on {SMTP_PORT}; see {log}")
            time.sleep(0.1)

    def cpu_seconds(self) -> float:
        """utime + stime of the server: robust to other load, unlike latency."""
        return run.Proc(self.popen).cpu_seconds()

    def rss_mib(self) -> float:
        return run.Proc(self.popen).rss_mib()

    def stop(self) -> None:
        run.Proc(self.popen).stop(timeout=60)

    def problems(self) -> dict[str, int]:
        """This run's exceptions in the server output (the last line of each traceback)."""
        with self.log.open("rb") as f:
            f.seek(self.log_offset)
            lines = f.read().decode(errors="replace").splitlines()
        exception = re.compile(r"[\w.]+(Error|Exception|Unavailable)\b")
        found = Counter(ln.strip()[:200] for ln in lines if exception.match(ln))
        return dict(found.most_common(10))


# -- the SMTP client -----------------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    address: str
    kind: str  # a key of MIX


@dataclass(frozen=True)
class Sample:
    kind: str
    code: int
    ms: float
    reply: str


class SMTPClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls) -> SMTPClient:
        reader, writer = await asyncio.open_connection(HOST, SMTP_PORT)
        client = cls(reader, writer)
        code, reply = await client.reply()
        if code != 220:
            raise RuntimeError(f"greeting: {reply}")
        return client

    async def reply(self) -> tuple[int, str]:
        lines: list[str] = []
        while True:
            raw = await self.reader.readline()
            if not raw:
                raise ConnectionError("the server closed the connection")
            lines.append(raw.decode(errors="replace").rstrip("\r\n"))
            if raw[3:4] != b"-":
                return int(lines[-1][:3]), "\n".join(lines)

    async def command(self, line: str) -> tuple[int, str]:
        self.writer.write(line.encode() + b"\r\n")
        await self.writer.drain()
        return await self.reply()

    async def expect(self, line: str, code: int) -> None:
        got, reply = await self.command(line)
        if got != code:
            raise RuntimeError(f"{line!r} answered {reply!r}")

    async def close(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self.command("QUIT")
        self.writer.close()
        await self.writer.wait_closed()


async def session(recipients: list[Recipient]) -> list[Sample]:
    """One connection: EHLO, MAIL FROM, the RCPTs (RSET every 50), each round trip timed."""
    client = await SMTPClient.connect()
    samples: list[Sample] = []
    try:
        await client.expect("EHLO bench.rcpt-scale.example", 250)
        for start in range(0, len(recipients), RCPTS_PER_TRANSACTION):
            if start:
                await client.expect("RSET", 250)
            await client.expect(f"MAIL FROM:<{SENDER}>", 250)
            for rcpt in recipients[start : start + RCPTS_PER_TRANSACTION]:
                began = time.perf_counter()
                code, reply = await client.command(f"RCPT TO:<{rcpt.address}>")
                samples.append(Sample(rcpt.kind, code, (time.perf_counter() - began) * 1000, reply))
    finally:
        await client.close()
    return samples


class Drawer:
    """Random recipients across the whole population, never the same one twice."""

    def __init__(self, layout: Layout, rng: random.Random, mix: dict[str, float]) -> None:
        self.layout = layout
        self.rng = rng
        self.used: dict[str, set[int]] = {kind: set() for kind in MIX}
        sizes = {"mailbox": layout.mailboxes - layout.rules, "forward": layout.rules,
                 "alias": layout.aliases - layout.lists, "list": layout.lists,
                 "unknown": 10_000_000}  # fmt: skip
        self.kinds = [k for k in MIX if sizes[k] > 0 and mix[k] > 0]
        self.weights = [mix[k] for k in self.kinds]

    def _fresh(self, kind: str, size: int) -> int:
        used = self.used[kind]
        while True:
            n = self.rng.randrange(size)
            taken = (kind == "mailbox" and self.layout.has_rule(n)) or (
                kind == "alias" and self.layout.is_list(n)
            )
            if n not in used and not taken:
                used.add(n)
                return n

    def draw(self, count: int) -> list[Recipient]:
        lay = self.layout
        out: list[Recipient] = []
        for kind in self.rng.choices(self.kinds, self.weights, k=count):
            if kind == "mailbox":
                address = lay.mailbox_address(self._fresh(kind, lay.mailboxes))
            elif kind == "forward":
                address = lay.mailbox_address(lay.rule_source(self._fresh(kind, lay.rules)))
            elif kind == "alias":
                address = lay.alias_address(self._fresh(kind, lay.aliases))
            elif kind == "list":
                address = lay.alias_address(LIST_EVERY * self._fresh(kind, lay.lists))
            else:
                address = lay.unknown_address(self._fresh(kind, 10_000_000))
            out.append(Recipient(address, kind))
        return out


# -- phases and statistics ---------------------------------------------------------------


def percentile(sorted_ms: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    return sorted_ms[max(0, math.ceil(p / 100 * len(sorted_ms)) - 1)]


def summarize(samples: list[Sample]) -> dict[str, Any]:
    ms = sorted(s.ms for s in samples)
    return {"n": len(ms), "p50": percentile(ms, 50), "p90": percentile(ms, 90),
            "p99": percentile(ms, 99), "max": ms[-1]}  # fmt: skip


@dataclass
class Phase:
    name: str
    connections: int
    recipients: list[Recipient]
    samples: list[Sample] = field(default_factory=list)
    seconds: float = 0.0
    server_cpu: float = 0.0  # seconds, the whole phase (connections and commands included)

    async def run(self, cpu: Callable[[], float]) -> Phase:
        n = self.connections
        parts = [self.recipients[i::n] for i in range(n)]
        began, cpu_before = time.perf_counter(), cpu()
        results = await asyncio.gather(*(session(part) for part in parts))
        self.seconds = time.perf_counter() - began
        self.server_cpu = cpu() - cpu_before
        self.samples = [s for part in results for s in part]
        return self

    def unexpected(self) -> list[Sample]:
        return [s for s in self.samples if s.code != EXPECTED[s.kind]]

    def report(self) -> dict[str, Any]:
        codes = Counter(s.code for s in self.samples)
        return {"phase": self.name, "connections": self.connections, **summarize(self.samples),
                "rcpt_per_s": len(self.samples) / self.seconds,
                "server_cpu_ms_per_rcpt": 1000 * self.server_cpu / len(self.samples),
                "codes": {str(c): n for c, n in sorted(codes.items())},
                "unexpected": len(self.unexpected()), "by_kind": by_kind(self.samples)}  # fmt: skip


async def measure(
    drawer: Drawer, rcpts: int, rng: random.Random, cpu: Callable[[], float]
) -> list[Phase]:
    await Phase("warm-up", 1, drawer.draw(WARMUP)).run(cpu)
    phases: list[Phase] = []
    for conns in (1, 10):
        cold = await Phase("cold", conns, drawer.draw(rcpts)).run(cpu)
        again = cold.recipients[:]
        rng.shuffle(again)
        warm = await Phase("warm", conns, again).run(cpu)
        phases += [cold, warm]
    return phases


def by_kind(samples: list[Sample]) -> dict[str, dict[str, Any]]:
    return {kind: summarize([s for s in samples if s.kind == kind])
            for kind in MIX if any(s.kind == kind for s in samples)}  # fmt: skip


DECISIONS_PER_TRANSACTION = 50  # the group committer's batches at 10 connections hold a few


def decision_phase(database_url: str, recipients: list[Recipient]) -> list[Sample]:
    """The decision alone, in this process, as the server makes it on a cache miss:
    the facts read, the routing policy and the quota check, inside a transaction
    shared by several decisions as the group committer's batch is (its BEGIN and
    COMMIT belong to the routing-log write, which the SMTP phases time)."""
    from policy.addresses import Address
    from policy.routing import route
    from storage import quota
    from storage.directory import recipient_facts_tx
    from storage.ledger import Tx

    db = Database(database_url)
    samples: list[Sample] = []
    try:
        with db.read_engine.connect() as conn:
            for start in range(0, len(recipients), DECISIONS_PER_TRANSACTION):
                with conn.begin():
                    tx = Tx(conn)
                    for r in recipients[start : start + DECISIONS_PER_TRANSACTION]:
                        address = Address.parse(r.address)
                        began = time.perf_counter()
                        decision = route(recipient_facts_tx(tx, address), datetime.now(UTC))
                        for mailbox in decision.mailboxes:
                            quota.snapshot_tx(tx, mailbox.id).fits(1)
                        ms = 1000 * (time.perf_counter() - began)
                        samples.append(Sample(r.kind, decision.reply.code, ms,
                                              str(decision.reply)))  # fmt: skip
                    tx.close()
    finally:
        db.dispose()
    return samples


def run_backend(backend: str, args: argparse.Namespace, layout: Layout) -> dict[str, Any]:
    # --list-share moves draws between plain mailboxes and distribution lists.
    mix = {**MIX, "mailbox": MIX["mailbox"] + MIX["list"] - args.list_share,
           "list": args.list_share}  # fmt: skip
    data, seeding = prepare(backend, args, layout)
    server = Server(data, args.work / f"serve-{backend}.log")
    load_before = os.getloadavg()[0]
    # Reported, not waited for: a bench that waits for the others makes them wait for it.
    others = other_bench_processes()
    if others or load_before > 1.0:
        print(f"load average {load_before:.1f}, other benchmarks running: {len(others)}; "
              "expect noise", file=sys.stderr)  # fmt: skip
    try:
        rss_before = server.rss_mib()
        rng = random.Random(args.seed)
        drawer = Drawer(layout, rng, mix)
        phases = asyncio.run(measure(drawer, args.rcpts, rng, server.cpu_seconds))
        rss_after = server.rss_mib()
    finally:
        server.stop()
    decisions = decision_phase(load_settings(data).db_url, drawer.draw(args.rcpts))
    load_after = os.getloadavg()[0]
    for phase in phases:
        for s in phase.unexpected()[:5]:
            print(f"unexpected reply in {phase.name} c={phase.connections} ({s.kind}): "
                  f"{s.reply}", file=sys.stderr)  # fmt: skip
    return {"bench": "rcpt_scale", "backend": backend, "date": time.strftime("%Y-%m-%d %H:%M"),
            "host": os.uname().nodename, "cpus": os.cpu_count(), "seed": layout.as_dict(),
            "seeding": seeding, "rcpts": args.rcpts, "mix": mix,
            "server_rss_mib": [round(rss_before, 1), round(rss_after, 1)],
            "load_average": [round(load_before, 2), round(load_after, 2)],
            "other_benchmarks": others,
            "server_errors": server.problems(),
            "phases": [p.report() for p in phases],
            "decision_in_process": {**summarize(decisions),
                                    "by_kind": by_kind(decisions)}}  # fmt: skip


def print_table(result: dict[str, Any]) -> None:
    seed, seeding = result["seed"], result["seeding"]
    how = "reused" if seeding["reused"] else f"seeded in {seeding['seconds']:.1f} s"
    print(f"\n## RCPT decision latency, {result['backend']}: {result['date']} on "
          f"{result['host']} ({result['cpus']} CPUs, load average "
          f"{result['load_average'][0]:.1f} -> {result['load_average'][1]:.1f}, "
          f"{len(result['other_benchmarks'])} other benchmarks running)\n")  # fmt: skip
    print(f"{seed['domains']:,} domains, {seed['mailboxes']:,} mailboxes, "
          f"{seed['forwarding_rules']:,} forwarding rules, {seed['aliases']:,} aliases "
          f"({seed['alias_rows']:,} rows: every {LIST_EVERY}th a list of {LIST_SIZE}) ({how}); "
          f"mix {', '.join(f'{k} {v:.0%}' for k, v in result['mix'].items())}; "
          f"server RSS {result['server_rss_mib'][0]:.0f} -> {result['server_rss_mib'][1]:.0f} MiB"
          "\n")  # fmt: skip
    print(
        "| phase | conns | RCPTs | p50 ms | p90 ms | p99 ms | max ms | RCPT/s "
        "| server CPU ms/RCPT | replies |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for p in result["phases"]:
        codes = " ".join(f"{c}x{n}" for c, n in p["codes"].items())
        print(f"| {p['phase']} | {p['connections']} | {p['n']} | {p['p50']:.2f} | {p['p90']:.2f} "
              f"| {p['p99']:.2f} | {p['max']:.2f} | {p['rcpt_per_s']:.0f} "
              f"| {p['server_cpu_ms_per_rcpt']:.2f} | {codes} |")  # fmt: skip
    print("\nCold phases by kind of recipient (p50 / p99 / max ms):\n")
    print("| conns | " + " | ".join(MIX) + " |")
    print("|---:|" + "---|" * len(MIX))
    for p in result["phases"]:
        if p["phase"] == "cold":
            cells = [f"{k['p50']:.2f} / {k['p99']:.2f} / {k['max']:.2f} (n={k['n']})"
                     if (k := p["by_kind"].get(kind)) else "-" for kind in MIX]  # fmt: skip
            print(f"| {p['connections']} | " + " | ".join(cells) + " |")
    cold1 = next(p for p in result["phases"] if p["phase"] == "cold" and p["connections"] == 1)
    verdict = "met" if cold1["p99"] < TARGET_P99_MS else "NOT met"
    print(
        f"\nTarget (cold p99 < {TARGET_P99_MS} ms at c=1): {verdict} ({cold1['p99']:.2f} ms). "
        f"Unexpected replies: {sum(p['unexpected'] for p in result['phases'])}."
    )
    alone = result["decision_in_process"]
    verdict = "met" if alone["p99"] < TARGET_P99_MS else "NOT met"
    kinds = ", ".join(f"{kind} {k['p50']:.2f}/{k['p99']:.2f}"
                      for kind, k in alone["by_kind"].items())  # fmt: skip
    print(f"The decision alone (facts read on a cache miss, policy, quota check, in a shared "
          f"transaction; no log write), in process, {alone['n']} recipients: p50 "
          f"{alone['p50']:.2f} ms, p90 {alone['p90']:.2f}, p99 {alone['p99']:.2f}, "
          f"max {alone['max']:.2f} ({kinds}); "
          f"p99 < {TARGET_P99_MS} ms: {verdict}.")  # fmt: skip
    if result["server_errors"]:
        print("Exceptions in the server log (the server code may be mid-change: re-run):")
        for line, count in result["server_errors"].items():
            print(f"    {count} x {line}")
    print("\n" + json.dumps(result, separators=(",", ":")), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--backend", nargs="+", choices=("sqlite", "pg"), default=["sqlite"])
    ap.add_argument(
        "--pg",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="a PostgreSQL URL naming the server (its database is not used)",
    )
    ap.add_argument("--pg-db", default="mailward_bench", help="the database to (re)create")
    ap.add_argument("--work", type=Path, default=Path("/tmp/rcpt-scale"))
    ap.add_argument("--domains", type=int, default=10_000)
    ap.add_argument("--mailboxes", type=int, default=1_000_000)
    ap.add_argument("--rules", type=int, default=100_000)
    ap.add_argument("--aliases", type=int, default=50_000)
    ap.add_argument("--rcpts", type=int, default=5_000, help="RCPTs per measured phase")
    ap.add_argument("--seed", type=int, default=1, help="random seed of the recipient draw")
    ap.add_argument("--reuse", action="store_true", help="keep a matching seed from a past run")
    ap.add_argument("--seed-only", action="store_true", help="seed (or --reuse) and stop")
    ap.add_argument(
        "--list-share",
        type=float,
        default=MIX["list"],
        help="share of RCPTs to distribution lists (0 leaves them out)",
    )
    args = ap.parse_args()
    if not 0 <= args.list_share <= MIX["mailbox"] + MIX["list"]:
        ap.error(f"--list-share must be between 0 and {MIX['mailbox'] + MIX['list']}")
    layout = Layout(args.domains, args.mailboxes, args.rules, args.aliases)
    layout.check()
    args.work.mkdir(parents=True, exist_ok=True)
    failed = False
    for backend in args.backend:
        if args.seed_only:
            prepare(backend, args, layout)
            continue
        result = run_backend(backend, args, layout)
        print_table(result)
        failed |= any(p["unexpected"] for p in result["phases"])
    if failed:
        raise SystemExit("unexpected SMTP replies: the figures above are not valid; re-run")


if __name__ == "__main__":
    main()
