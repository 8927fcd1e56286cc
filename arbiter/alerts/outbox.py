"""The outbox: alerts leave the process on a thread of their own, never on a decision's.

Shape: a bounded in-process queue drained by one daemon thread, which claims each
message's key in the ledger (so the same news goes out once, whichever process saw it),
then posts it with retries and a doubling backoff. Why not a Celery task: the control
queue is served by the local worker too, whose one slot a hanging webhook would take from
model work; and a queue of its own would need a worker of its own. Putting an alert costs
the caller one ``put_nowait`` (microseconds); a full queue drops the alert with a log line
rather than wait. A short-lived process (a CLI command) waits a few seconds at exit for
what it queued; a process killed outright loses what it had not sent yet.

Items are alerts, or callables that return them: a decision's alerts need the policy's caps,
and working those out belongs on this thread, not the decision's.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from arbiter.alerts.messages import Alert
from arbiter.alerts.webhook import WebhookFailed, post, where

log = logging.getLogger("sovereign.alerts")

Item = Alert | Callable[[], Iterable[Alert]]
Post = Callable[[str, str, float], None]
# Keys remembered in memory; past this the set starts afresh (the ledger still de-duplicates).
SEEN_MAX = 10_000


class AlertLedger(Protocol):
    """What the outbox needs from the ledger (``arbiter.ledger.Ledger`` has it)."""

    def claim_alert(self, key: str, kind: str, text: str) -> bool: ...

    def finish_alert(self, key: str, *, sent: bool, attempts: int, error: str | None) -> None: ...

    def record_alert(
        self, key: str, kind: str, text: str, *, sent: bool, attempts: int, error: str | None
    ) -> None: ...


class Outbox:
    """Sends alerts to one webhook from a daemon thread; ``put`` never blocks."""

    def __init__(
        self,
        url: str,
        ledger: AlertLedger | None = None,
        *,
        maxsize: int = 1000,
        timeout_s: float = 5.0,
        attempts: int = 5,
        backoff_s: float = 1.0,
        exit_wait_s: float = 3.0,
        post: Post = post,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._url = url
        self.where = where(url)
        self.ledger = ledger
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.exit_wait_s = exit_wait_s
        self._post = post
        self._sleep = sleep
        self._queue: queue.Queue[Item | None] = queue.Queue(maxsize=maxsize)
        self._seen: set[str] = set()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.dropped = 0
        self.sent = 0
        self.failed = 0

    def __repr__(self) -> str:
        return f"Outbox({self.where!r})"

    def put(self, item: Item) -> bool:
        """Queue an alert (or a callable making some); False when the queue is full."""
        self._start()
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            # One line for the first drop and every hundredth: a flood would bury the log.
            if self.dropped % 100 == 1:
                log.warning(
                    "the alert queue is full (the webhook at %s is slow or down); %d "
                    "alert(s) dropped so far",
                    self.where,
                    self.dropped,
                )
            return False
        return True

    def flush(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for everything queued to be handled; True when done."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="sovereign-alerts", daemon=True)
                thread.start()
                self._thread = thread
                atexit.register(self._at_exit)

    def _at_exit(self) -> None:
        if self._queue.unfinished_tasks and not self.flush(self.exit_wait_s):
            log.warning(
                "%d alert(s) not sent before exit (the webhook at %s is slow or down)",
                self._queue.unfinished_tasks,
                self.where,
            )

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                alerts = [item] if isinstance(item, Alert) else list(item())
                for alert in alerts:
                    self.deliver(alert)
            except Exception as exc:  # the thread must outlive any one bad alert
                log.error("an alert could not be prepared: %s", type(exc).__name__)
            finally:
                self._queue.task_done()

    def deliver(self, alert: Alert) -> bool:
        """Claim the alert's key (unless it needs none), post it with retries, record the
        outcome; True if sent."""
        if alert.key in self._seen:
            return False
        if len(self._seen) >= SEEN_MAX:
            self._seen.clear()
        self._seen.add(alert.key)
        if self.ledger is not None and alert.claim:
            try:
                if not self.ledger.claim_alert(alert.key, alert.kind, alert.text):
                    return False  # another process sent it (or is sending it)
            except Exception as exc:
                # Better twice than never: the ledger is down, so post anyway.
                log.warning("could not record alert %s in the ledger: %s", alert.key, exc)
        error: str | None = None
        attempt = 0
        for attempt in range(1, self.attempts + 1):
            try:
                self._post(self._url, alert.text, self.timeout_s)
                error = None
                break
            except WebhookFailed as exc:
                error = str(exc)
                if attempt < self.attempts:
                    delay = self.backoff_s * 2 ** (attempt - 1)
                    log.warning("%s; alert %s retried in %.0fs", error, alert.kind, delay)
                    self._sleep(delay)
        if error is None:
            self.sent += 1
        else:
            self.failed += 1
            log.error("alert %s not sent after %d attempts: %s", alert.kind, attempt, error)
        if self.ledger is not None:
            try:
                if alert.claim:
                    self.ledger.finish_alert(
                        alert.key, sent=error is None, attempts=attempt, error=error
                    )
                else:
                    self.ledger.record_alert(
                        alert.key,
                        alert.kind,
                        alert.text,
                        sent=error is None,
                        attempts=attempt,
                        error=error,
                    )
            except Exception as exc:
                log.warning("could not record alert %s in the ledger: %s", alert.key, exc)
        return error is None

    def close(self, timeout_s: float = 1.0) -> None:
        """Stop the thread after what is queued (tests; processes just exit)."""
        thread = self._thread
        if thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            return
        thread.join(timeout_s)
        if not thread.is_alive():
            self._thread = None
