"""SQLite: put admissions on disk and copy the log back, off the admission path.

Admissions commit on a connection of their own that neither waits for the disk nor
checkpoints (see ``AdmissionConnections``). This thread does both for them, on a connection
of its own: a PASSIVE checkpoint first syncs the write-ahead log, so every admission
logged before it is on disk, then copies the log into the database and syncs that, and it
never blocks a writer. It runs within ``FLUSH_WITHIN_S`` of the first admission after the
previous one (so, as with the embedded broker's log, at most about a second of admissions
is ever only in memory), and at once after ``CHECKPOINT_EVERY`` admissions (so the log
stays small). Its copying runs in SQLite's C code, outside the interpreter lock, alongside
the admissions. Every other ledger connection keeps SQLite's own automatic checkpoints and
synchronous commits, so the log is bounded and a worker's pre-call commit flushes it even
if this thread is gone.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

log = logging.getLogger("sovereign.ledger")

# Admissions between two checkpoints when they come fast: about 12 log pages each, so
# about SQLite's own default threshold of 1,000 pages.
CHECKPOINT_EVERY = 80
# How long an admission may stay in memory only (the embedded Valkey syncs every second).
FLUSH_WITHIN_S = 1.0
CHECKPOINT = "PRAGMA wal_checkpoint(PASSIVE)"


class Checkpointer:
    """A thread that checkpoints when admissions ask; started on first use, again after a
    fork."""

    def __init__(
        self,
        connect: Callable[[], Any],
        every: int = CHECKPOINT_EVERY,
        within_s: float = FLUSH_WITHIN_S,
    ) -> None:
        self._connect = connect
        self._every = every
        self._within_s = within_s
        self._pending = 0  # admissions since the last checkpoint began (approximate)
        self._wake = threading.Event()  # there is something to flush
        self._now = threading.Event()  # enough to checkpoint without waiting
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = -1
        self._lock = threading.Lock()
        # Registered with atexit once the thread runs: a weak reference, so that it does not
        # keep a closed ledger's checkpointer alive.
        self._at_exit = functools.partial(_close_if_alive, weakref.ref(self))
        self.checkpoints = 0

    def committed(self) -> None:
        """One more admission in the log, not yet on disk."""
        self._pending += 1
        if self._pending == 1:
            self._ensure_thread()
            self._wake.set()
        elif self._pending >= self._every:
            self._now.set()

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
            # A short-lived process (`sovereign enqueue`, a script) flushes before it exits.
            atexit.register(self._at_exit)

    def _run(self) -> None:
        try:
            conn = self._connect()
        except Exception as exc:  # the next admission starts a new thread and tries again
            log.warning("ledger checkpoint thread cannot connect: %s", exc)
            self._pending = 0
            return
        try:
            while True:
                self._wake.wait()
                self._now.wait(self._within_s)
                stopping = self._stop.is_set()
                self._wake.clear()
                self._now.clear()
                pending, self._pending = self._pending, 0
                if pending:
                    self._checkpoint(conn)
                if stopping:
                    return
        finally:
            conn.close()

    def _checkpoint(self, conn: Any) -> None:
        try:
            conn.execute(CHECKPOINT).fetchall()
            self.checkpoints += 1
        except Exception as exc:  # the next admission asks again
            log.warning("ledger checkpoint failed: %s", exc)

    def close(self) -> None:
        """Flush what is pending and stop the thread (the ledger is closing)."""
        self._stop.set()
        self._now.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and self._pid == os.getpid():
            thread.join(timeout=5)
        atexit.unregister(self._at_exit)


def _close_if_alive(ref: weakref.ref[Checkpointer]) -> None:
    checkpointer = ref()
    if checkpointer is not None:
        checkpointer.close()
