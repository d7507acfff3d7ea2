"""`mailward serve` as an operator runs it: a real process, real ports, SIGTERM."""

from __future__ import annotations

import signal
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mailward(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "admin.cli", "--data", str(data), *args],
                          capture_output=True, text=True, timeout=60, check=True)  # fmt: skip


def test_serve_delivers_demo_mail_and_stops_on_sigterm(tmp_path: Path) -> None:
    """Ensure serve prints its addresses, delivers to a demo mailbox and exits 0 on SIGTERM."""
    data = tmp_path / "var"
    _mailward(data, "init", "--demo")
    smtp_port = _free_port()
    names = ("submission_port", "submissions_port", "imap_port", "imaps_port", "admin_port")
    ports = {name: _free_port() for name in names}
    listen = "\n".join(f"{k} = {v}" for k, v in ports.items())
    (data / "mailward.toml").write_text(
        f"[listen]\nsmtp_port = {smtp_port}\n{listen}\n"
        # no DNS traffic off loopback from tests: nothing answers on this port
        '[smtp]\nverify_senders = false\n[dns]\nnameservers = ["127.0.0.1"]\nport = 9\n'
    )
    proc = subprocess.Popen([sys.executable, "-m", "admin.cli", "serve", "--data", str(data)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "serve exited early: " + "".join(lines)
            lines.append(line)
            if line.startswith("data folder"):
                break
        assert any(f"127.0.0.1:{smtp_port}" in line for line in lines), lines
        admin_url = f"http://127.0.0.1:{ports['admin_port']}/"
        assert any(admin_url in line for line in lines), lines
        assert httpx.get(admin_url, timeout=10).status_code == 200
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
            client.sendmail("s@remote.example", ["alice@acme.test"], b"Subject: hi\r\n\r\nhi\r\n")
        assert len(list((data / "mail/acme.test/alice/new").iterdir())) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
