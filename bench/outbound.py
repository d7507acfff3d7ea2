"""Throughput of the outbound path: submission → queue, then queue → a sink MX.

Runs in one process on 127.0.0.1 with production settings (argon2id, DKIM
signing with RSA-2048 and Ed25519, fsync): phase 1 submits ``--messages``
messages over implicit TLS on ``--connections`` authenticated connections
while the queue runner is stopped, so it measures accept-and-store alone;
phase 2 starts the runner with a transport map to an aiosmtpd sink (in a
thread with its own event loop) and measures until the sink has them all.

    .venv/bin/python -m bench.outbound --messages 2000 --connections 20
"""

from __future__ import annotations

import argparse
import asyncio
import smtplib
import ssl
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP

from admin.certs import ensure_self_signed, server_context
from admin.config import load_settings
from bench.seed import REFERENCE_PASSWORD, seed
from mta.delivery import DeliveryAgent
from mta.dkim_keys import KeyStore
from mta.inbound import listening_port
from mta.queue import OutboundQueue, QueueSettings
from mta.smtp_auth import SMTPAuthenticator
from mta.submission import SubmissionHandler, SubmissionSettings, start_submission
from storage.db import Database
from storage.spool import Spool

HOST = "mail.bench.test"
PASSWORD = REFERENCE_PASSWORD


class Sink:
    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.count += len(envelope.rcpt_tos)
        return "250 2.0.0 OK"


def start_sink(sink: Sink) -> int:
    loop = asyncio.new_event_loop()
    ready: list[int] = []
    started = threading.Event()

    async def serve() -> None:
        server = await loop.create_server(lambda: SMTP(sink, hostname="sink.bench"),
                                          "127.0.0.1", 0)  # fmt: skip
        ready.append(listening_port(server))
        started.set()

    threading.Thread(target=lambda: (loop.run_until_complete(serve()), loop.run_forever()),
                     daemon=True).start()  # fmt: skip
    started.wait(10)
    return ready[0]


def client_run(port: int, count: int, worker: int) -> None:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    user = f"user{worker % 10 + 1}@client-a.test"
    body = (f"From: {user}\r\nTo: r@remote.bench\r\nSubject: bench\r\n\r\n"
            + ("x" * 76 + "\r\n") * 26).encode()  # fmt: skip
    with smtplib.SMTP_SSL("127.0.0.1", port, context=context, timeout=60) as client:
        client.login(user, PASSWORD)
        for n in range(count):
            client.sendmail(user, [f"r{worker}.{n}@remote.bench"], body)


async def main(messages: int, connections: int) -> None:
    data = Path(tempfile.mkdtemp(prefix="mw-bench-out-"))
    seed(data, 10, PASSWORD)
    settings = load_settings(data)
    db = Database(settings.db_url)
    sink = Sink()
    sink_port = start_sink(sink)
    spool = Spool(settings.spool_root)
    agent = DeliveryAgent(db, mail_root=settings.mail_root, spool=spool, hostname=HOST)
    queue = OutboundQueue(db, agent=agent, spool=spool, hostname=HOST, settings=QueueSettings(
        transport={"*": f"127.0.0.1:{sink_port}"}, poll_interval=0.2, per_destination=20))
    handler = SubmissionHandler(agent=agent, authenticator=SMTPAuthenticator(db),
                                keys=KeyStore(data / "dkim"), hostname=HOST,
                                settings=SubmissionSettings(), on_queued=queue.wake)
    tls = server_context(*ensure_self_signed(data / "tls", HOST))
    server = await start_submission(handler, host="127.0.0.1", port=0, tls_context=tls,
                                    implicit_tls=True)  # fmt: skip
    port = listening_port(server)
    per = messages // connections

    started = time.perf_counter()
    with ThreadPoolExecutor(connections) as pool:
        jobs = [asyncio.wrap_future(pool.submit(client_run, port, per, w))
                for w in range(connections)]  # fmt: skip
        await asyncio.gather(*jobs)
    submit_seconds = time.perf_counter() - started
    total = per * connections
    print(f"submission -> queue: {total} messages in {submit_seconds:.2f} s "
          f"= {total / submit_seconds:.0f} msg/s ({connections} TLS connections, DKIM x2)")

    started = time.perf_counter()
    queue.start()
    while sink.count < total:
        await asyncio.sleep(0.05)
    drain_seconds = time.perf_counter() - started
    print(f"queue -> sink:       {total} messages in {drain_seconds:.2f} s "
          f"= {total / drain_seconds:.0f} msg/s (per-destination limit 20)")
    await queue.stop()
    server.close()
    agent.close()
    db.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.connections))
