"""SQLite: copy the write-ahead log back into the database off the admission path.

SQLite checkpoints inside whichever commit makes the log pass its threshold, so every
hundredth admission or so would pay a few milliseconds of copying and syncing. Admission
connections turn that off and ask this thread instead, which checkpoints on a connection
of its own (PASSIVE: it never blocks a writer). Its copying runs in SQLite's C code, outside
the interpreter lock, alongside the admissions. Every other ledger connection keeps
SQLite's own automatic checkpoints, so the log is bounded even if this thread is gone.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("sovereign.ledger")

# Admissions between two checkpoint requests: about 12 log pages each, so about SQLite's
# own default threshold of 1,000 pages.
CHECKPOINT_EVERY = 80
CHECKPOINT = "PRAGMA wal_checkpoint(PASSIVE)"


class Checkpointer:
    """A thread that checkpoints when asked; started on first use, again after a fork."""

    def __init__(self, connect: Callable[[], Any], every: int = CHECKPOINT_EVERY) -> None:
        self._connect = connect
        self._every = every
        self._count = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = -1
        self._lock = threading.Lock()
        self.checkpoints = 0

    def committed(self) -> None:
        """One more admission in the log; every ``every``-th asks for a checkpoint."""
        self._count += 1
        if self._count < self._every:
            return
        self._count = 0
        self._ensure_thread()
        self._wake.set()

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._lock:
            if self._stop.is_set():
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(
                target=self._run, name="sovereign-checkpoint", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        try:
            conn = self._connect()
        except Exception as exc:  # the next request starts a new thread and tries again
            log.warning("ledger checkpoint thread cannot connect: %s", exc)
            return
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stop.is_set():
                    return
                try:
                    conn.execute(CHECKPOINT).fetchall()
                    self.checkpoints += 1
                except Exception as exc:  # the next request tries again
                    log.warning("ledger checkpoint failed: %s", exc)
        finally:
            conn.close()

    def close(self) -> None:
        """Stop the thread (the ledger is closing)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and self._pid == os.getpid():
            thread.join(timeout=5)
