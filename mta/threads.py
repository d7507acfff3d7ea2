"""Threads for the SMTP servers' blocking work: directory reads, DKIM signing,
sender verification.

``storage.workers.Workers`` rather than ``asyncio.to_thread``: no executor
future chained to an asyncio one and no context copy per call, which were a
measurable part of a submission's CPU on the event loop.
"""

from __future__ import annotations

from storage.workers import Workers

BLOCKING_THREADS = 6  # what asyncio's default executor starts on a 2-core node
blocking = Workers(BLOCKING_THREADS, "smtp-blocking")
