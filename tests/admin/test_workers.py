"""SMTP worker processes (`[smtp] workers`): real `mailward serve` processes, real sockets."""

from __future__ import annotations

import asyncio
import os
import re
import select
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from admin.config import ConfigError, load_settings
from admin.workers import HintListener, Hints
from storage.filelock import ProcessLock

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    """`mailward serve` with two SMTP processes, on free ports, demo organization."""

    def __init__(self, data: Path) -> None:
        subprocess.run([sys.executable, "-m", "admin.cli", "--data", str(data), "init", "--demo"],
                       capture_output=True, check=True, timeout=60, cwd=ROOT)  # fmt: skip
        self.data = data
        self.smtp_port = _free_port()
        names = ("submission_port", "submissions_port", "imap_port", "imaps_port", "admin_port")
        listen = "\n".join(f"{name} = {_free_port()}" for name in names)
        (data / "mailward.toml").write_text(
            f"[listen]\nsmtp_port = {self.smtp_port}\n{listen}\n"
            '[smtp]\nworkers = 2\nverify_senders = false\n[dns]\nnameservers = ["127.0.0.1"]\n'
            "port = 9\n"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "admin.cli", "serve", "--data", str(data)], cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self.worker_pids: list[int] = []
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            assert line, "serve exited early: " + "".join(self.lines)
            self.lines.append(line)
            if line.startswith("smtp workers"):
                pids = [int(p) for p in re.findall(r"\d+", line.split("pids", 1)[1])]
                self.worker_pids = [p for p in pids if p != self.proc.pid]
            if line.startswith("data folder"):
                break

    def send(self, count: int) -> None:
        """``count`` messages, each on its own connection, all connections open at once."""
        clients = [smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=30) for _ in range(count)]
        try:
            for n, client in enumerate(clients):
                client.sendmail("s@remote.example", ["alice@acme.test"],
                                f"Subject: {n}\r\n\r\nbody {n}\r\n".encode())  # fmt: skip
        finally:
            for client in clients:
                client.quit()

    def delivered(self) -> list[Path]:
        return sorted((self.data / "mail/acme.test/alice/new").iterdir())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in self.worker_pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) is gone for our purpose.
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    started = Node(tmp_path / "var")
    try:
        yield started
    finally:
        started.close()


def test_two_processes_share_the_smtp_port_and_stop_on_sigterm(node: Node) -> None:
    """Ensure both processes accept mail on one port, and SIGTERM stops the whole node."""
    assert len(node.worker_pids) == 1, node.lines
    node.send(24)
    files = node.delivered()
    assert len(files) == 24
    # Maildir names carry the writing process: the kernel spread the connections.
    writers = {re.search(r"P(\d+)Q", f.name).group(1) for f in files}  # type: ignore[union-attr]
    assert writers == {str(node.proc.pid), str(node.worker_pids[0])}
    node.proc.send_signal(signal.SIGTERM)
    assert node.proc.wait(timeout=60) == 0
    assert _wait_gone(node.worker_pids[0], 5)


def test_a_dead_worker_stops_the_node_with_an_error(node: Node) -> None:
    """Ensure a worker that dies takes the node down (non-zero) for the service manager."""
    os.kill(node.worker_pids[0], signal.SIGKILL)
    assert node.proc.wait(timeout=60) == 1
    assert node.proc.stdout is not None
    assert "exited (killed by signal 9)" in node.proc.stdout.read()


def test_workers_stop_when_the_serving_process_is_killed(node: Node) -> None:
    """Ensure no orphan keeps accepting mail once the serving process is gone."""
    node.proc.kill()
    node.proc.wait()
    assert _wait_gone(node.worker_pids[0], 10)


# -- the pieces ------------------------------------------------------------------


async def test_hints_reach_the_serving_process_in_order() -> None:
    """Ensure delivered mailbox ids (split into atomic lines) and queue wake-ups arrive."""
    read_end, write_end = os.pipe()
    got: list[int] = []
    queued: list[bool] = []
    arrived = asyncio.Event()

    def on_delivered(ids: list[int]) -> None:
        got.extend(ids)
        if len(got) == 5001:
            arrived.set()

    listener = HintListener(read_end, on_delivered=on_delivered,
                            on_queued=lambda: queued.append(True))  # fmt: skip
    hints = Hints(write_end)
    hints.delivered([])  # nothing to say: nothing written
    hints.delivered(range(5000))  # more than one PIPE_BUF of text
    hints.queued()
    hints.delivered([123456789])
    await asyncio.wait_for(arrived.wait(), 5)
    assert got == [*range(5000), 123456789]
    assert queued == [True]
    os.close(write_end)
    await asyncio.sleep(0.05)  # EOF: the listener closes its end
    with pytest.raises(OSError):
        os.fstat(read_end)
    listener.close()  # idempotent


def test_hints_never_block_a_worker_on_a_full_pipe() -> None:
    """Ensure a busy serving process (full pipe) or a gone one costs hints, not a stall."""
    read_end, write_end = os.pipe()
    hints = Hints(write_end)
    for _ in range(70_000):  # 140 KB: more than the pipe holds
        hints.queued()
    assert select.select([read_end], [], [], 0)[0]
    os.close(read_end)
    hints.delivered([1, 2, 3])  # the reader is gone: EPIPE is swallowed
    os.close(write_end)


def test_process_lock_excludes_another_process(tmp_path: Path) -> None:
    """Ensure a second process waits for the lock and gets it the moment it is released."""
    lock = ProcessLock(tmp_path / "w.lock")
    code = ("import sys; from storage.filelock import ProcessLock\n"
            "with ProcessLock(sys.argv[1]): print('got it', flush=True)\n")  # fmt: skip
    with lock:
        other = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "w.lock")],
                                 cwd=ROOT, stdout=subprocess.PIPE, text=True)  # fmt: skip
        time.sleep(1.0)
        assert other.poll() is None  # still waiting
    assert other.communicate(timeout=30)[0] == "got it\n"
    with lock:  # and this process can take it again
        pass
    lock.close()


def test_workers_setting_is_bounded(tmp_path: Path) -> None:
    for bad in ("0", "65", '"2"'):
        (tmp_path / "mailward.toml").write_text(f"[smtp]\nworkers = {bad}\n")
        with pytest.raises(ConfigError, match="workers"):
            load_settings(tmp_path)
    (tmp_path / "mailward.toml").write_text("[smtp]\nworkers = 4\n")
    assert load_settings(tmp_path).smtp.workers == 4
