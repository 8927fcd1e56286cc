"""A small foreground supervisor for `sovereign up`: start, watch, restart, stop children.

Output lines of each child are prefixed with its name (as honcho does). A child that dies
is restarted with a growing pause; one that dies too often stops the stack. SIGINT and
SIGTERM are forwarded so Celery workers finish their current task (warm shutdown).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

log = logging.getLogger("sovereign.up")

MAX_RESTARTS = 5
RESTART_WINDOW_S = 120.0
STOP_TIMEOUT_S = 60.0


@dataclass
class Child:
    """One supervised process."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    process: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)


class Supervisor:
    """Runs children until asked to stop or until one keeps failing."""

    def __init__(self, out: Callable[[str], None] | None = None) -> None:
        self.children: list[Child] = []
        self._stopping = threading.Event()
        self._out = out or (lambda line: print(line, flush=True))
        self._width = 6

    def add(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self.children.append(Child(name, list(argv), dict(env)))
        self._width = max(self._width, len(name))

    def _start(self, child: Child) -> None:
        child.process = subprocess.Popen(
            child.argv,
            env=dict(child.env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, args=(child, child.process), daemon=True).start()
        self._out(f"{child.name:<{self._width}} | started (pid {child.process.pid})")

    def _pump(self, child: Child, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            self._out(f"{child.name:<{self._width}} | {line}")

    def stop(self, *_: object) -> None:
        self._stopping.set()

    def run(self) -> int:
        """Start everything and supervise; the exit status is 0 on a requested stop."""
        previous = {sig: signal.signal(sig, self.stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        status = 0
        try:
            for child in self.children:
                self._start(child)
            while not self._stopping.wait(0.5):
                for child in self.children:
                    process = child.process
                    if process is None or process.poll() is None:
                        continue
                    if not self._restart(child, process.returncode):
                        status = 1
                        self._stopping.set()
                        break
        finally:
            self._shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return status

    def _restart(self, child: Child, code: int) -> bool:
        now = time.monotonic()
        child.restarts = [t for t in child.restarts if now - t < RESTART_WINDOW_S] + [now]
        if len(child.restarts) > MAX_RESTARTS:
            self._out(
                f"{child.name:<{self._width}} | exited {code} {MAX_RESTARTS} times in "
                f"{RESTART_WINDOW_S:.0f}s; stopping the stack (see its lines above)"
            )
            return False
        pause = min(10.0, 0.5 * 2 ** (len(child.restarts) - 1))
        self._out(f"{child.name:<{self._width}} | exited {code}; restarting in {pause:.1f}s")
        if self._stopping.wait(pause):
            return True
        self._start(child)
        return True

    def _shutdown(self) -> None:
        alive = [c for c in self.children if c.process and c.process.poll() is None]
        # Only each child's main process gets SIGTERM: a Celery worker then finishes its
        # running task (warm shutdown); signalling the whole group would kill the pool
        # processes mid-task.
        for child in reversed(alive):
            assert child.process is not None
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in reversed(alive):
            assert child.process is not None
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()
            self._out(f"{child.name:<{self._width}} | stopped")


def sovereign_argv(*args: str) -> list[str]:
    """argv that runs a `sovereign` subcommand with this interpreter."""
    return [sys.executable, "-m", "sovereign", *args]
