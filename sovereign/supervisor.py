"""A small foreground supervisor for `sovereign up`: start, watch, restart, stop children.

Output lines of each child are prefixed with its name (as honcho does). With a log
folder, every line goes to ``<folder>/<name>.log`` and the terminal shows only what a
person needs: errors (with their exceptions) and the lines a `sovereign` process prints
for people (marked with ``sovereign: ``). A child that dies is restarted with a growing
pause (up to half a minute), one line each time, for as long as the stack runs: a stack
left unattended keeps trying rather than giving up. SIGINT and SIGTERM stop the stack:
workers first, so they finish their current task (warm shutdown), then the children
marked ``stop_last`` (the broker); a second Ctrl-C stops everything at once.

Children get SIGTERM from the kernel if the supervisor dies (Linux ``PR_SET_PDEATHSIG``),
so a killed supervisor leaves no orphans.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from arbiter.errors import SovereignError

log = logging.getLogger("sovereign.up")

MAX_PAUSE_S = 30.0
STABLE_S = 60.0  # a child that ran this long starts again from the shortest pause
STOP_TIMEOUT_S = 60.0
PEOPLE = "sovereign: "  # a line a `sovereign` process prints for people, not for the log

# Celery's records ("[2026-12-02 07:15:47,123: ERROR/MainProcess] ...") and tornado's,
# which Flower uses ("[E 261202 07:15:47 web:1234] ...").
_CELERY_RECORD = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,.]+: ([A-Z]+)/")
_TORNADO_RECORD = re.compile(r"^\[([DIWEC]) \d{6} ")
_RECORD_PREFIX = re.compile(r"^\[[^\]]*\] ")

# Run in a child before its program: ask the kernel for a signal when the thread that
# started it dies, check that it has not died already, then become the program. (A
# preexec_fn would do the same without an exec, but is unsafe in a threaded parent.)
_ORPHAN_GUARD = (
    "import ctypes,os,sys;"
    "ctypes.CDLL(None,use_errno=True).prctl(1,int(sys.argv[2]),0,0,0);"  # PR_SET_PDEATHSIG
    "os.getppid()==int(sys.argv[1]) or os._exit(1);"
    "os.execv(sys.argv[3],sys.argv[3:])"
)


def orphan_proof(argv: Sequence[str], sig: int = signal.SIGTERM) -> list[str]:
    """``argv`` run so that it gets ``sig`` when the calling thread dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return list(argv)
    return [sys.executable, "-I", "-S", "-c", _ORPHAN_GUARD, str(os.getpid()), str(sig), *argv]


@dataclass
class Child:
    """One supervised process and how to start it."""

    name: str
    start: Callable[[], subprocess.Popen[bytes]]
    stop_last: bool = False
    process: subprocess.Popen[bytes] | None = None
    failed_start: bool = False
    started_at: float = 0.0
    restart_at: float | None = None
    failures: int = 0
    last_line: str = ""
    last_shown: bool = False


class _Screen:
    """Decides which lines of one child reach the terminal.

    Of a traceback it shows the unindented lines (the exceptions and what links them),
    not the frames, which stay in the log file."""

    def __init__(self) -> None:
        self.showing = False  # inside an error record or a traceback
        self.traceback = False

    def shows(self, line: str) -> bool:
        record = _CELERY_RECORD.match(line) or _TORNADO_RECORD.match(line)
        if record:
            self.showing = record[1] in ("ERROR", "CRITICAL", "E", "C")
            self.traceback = False
            return self.showing
        if line.startswith(PEOPLE):
            self.showing = self.traceback = False
            return True
        if line.startswith("Traceback (most recent call last)"):
            self.showing = self.traceback = True
        elif line.startswith("error:"):
            self.showing = True
        if self.traceback and (not line.strip() or line[:1].isspace()):
            return False
        return self.showing


class Supervisor:
    """Runs children until asked to stop, restarting those that die."""

    def __init__(
        self,
        out: Callable[[str], None] | None = None,
        *,
        log_dir: Path | None = None,
        on_line: Callable[[str, str], None] | None = None,
        stopping: str | None = None,
    ) -> None:
        self.children: list[Child] = []
        self._stopping = threading.Event()
        self._hurry = threading.Event()
        self._out = out or (lambda line: print(line, flush=True))
        self._log_dir = log_dir
        self._on_line = on_line
        self._stopping_line = stopping
        self._width = 6

    def add(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> None:
        """A child that runs ``argv``; its output is shown with its name."""

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                orphan_proof(argv),
                env=dict(env),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        self.adopt(name, None, start)

    def adopt(
        self,
        name: str,
        process: subprocess.Popen[bytes] | None,
        start: Callable[[], subprocess.Popen[bytes]],
        *,
        stop_last: bool = False,
    ) -> None:
        """A child already running (or None), restarted with ``start`` when it dies.

        ``start`` may raise a :class:`SovereignError`, which counts as an exit."""
        self.children.append(Child(name, start, stop_last, process))
        self._width = max(self._width, len(name))

    def say(self, name: str, text: str) -> None:
        self._out(f"{name:<{self._width}} | {text}")

    def _start(self, child: Child) -> None:
        try:
            process = child.start()
        except SovereignError as exc:
            child.process, child.failed_start = None, True
            self.say(child.name, f"could not start: {exc}")
            return
        child.process, child.failed_start = process, False
        child.started_at, child.last_line = time.monotonic(), ""
        if process.stdout is not None:
            threading.Thread(target=self._pump, args=(child, process), daemon=True).start()
        self.say(child.name, f"started (pid {process.pid})")

    def _pump(self, child: Child, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        name = child.name
        screen = _Screen() if self._log_dir is not None else None
        with self._log(name) as log_file:
            for raw in process.stdout:
                line = raw.decode("utf-8", "replace").rstrip()
                if log_file is not None:
                    log_file.write(line + "\n")
                    log_file.flush()
                shown = screen is None or screen.shows(line)
                if shown:
                    self.say(name, line.removeprefix(PEOPLE))
                if line.strip():
                    child.last_line = _RECORD_PREFIX.sub("", line.strip())
                    child.last_shown = shown
                if self._on_line is not None:
                    self._on_line(name, line)

    def _log(self, name: str) -> contextlib.AbstractContextManager[IO[str] | None]:
        if self._log_dir is None:
            return contextlib.nullcontext()
        self._log_dir.mkdir(parents=True, exist_ok=True)
        return open(self._log_dir / f"{name}.log", "a", encoding="utf-8")

    def stop(self, *_: object) -> None:
        if self._stopping.is_set():
            self._hurry.set()
        self._stopping.set()

    def run(self) -> int:
        """Start everything and supervise; the exit status is 0 on a requested stop."""
        previous = {sig: signal.signal(sig, self.stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for child in self.children:
                if child.process is None:
                    self._start(child)
                else:
                    child.started_at = time.monotonic()
            while not self._stopping.wait(0.2):
                for child in self.children:
                    if child.restart_at is None:
                        code = self._exit_code(child)
                        if code is not None:
                            self._schedule_restart(child, code)
                    elif time.monotonic() >= child.restart_at:
                        child.restart_at = None
                        self._start(child)
        finally:
            self._shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    @staticmethod
    def _exit_code(child: Child) -> int | None:
        if child.failed_start:
            return 1
        return None if child.process is None else child.process.poll()

    def _schedule_restart(self, child: Child, code: int) -> None:
        now = time.monotonic()
        if now - child.started_at > STABLE_S:
            child.failures = 0
        child.failures += 1
        pause = min(MAX_PAUSE_S, 0.5 * 2 ** (child.failures - 1))
        if code < 0:
            how = f"was killed ({_signal_name(-code)})"
        else:
            # Its last line says why, when the terminal did not show it (a warning).
            said = ""
            if code > 0 and child.last_line and not child.last_shown:
                said = f": {child.last_line.rstrip('.')}"
            how = f"exited {code}{said}"
        self.say(child.name, f"{how}; restarting in {pause:g} s")
        child.process, child.failed_start = None, False
        child.restart_at = now + pause

    def _shutdown(self) -> None:
        """Workers and beat first, then the children marked stop_last (the broker)."""
        if self._stopping_line:
            self._out(self._stopping_line)
        for last in (False, True):
            self._stop([c for c in self.children if c.stop_last == last])

    def _stop(self, children: list[Child]) -> None:
        alive = [c for c in children if c.process is not None and c.process.poll() is None]
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
            while child.process.poll() is None:
                if self._hurry.is_set() or time.monotonic() > deadline:
                    self.say(child.name, "stopping at once")
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(child.process.pid, signal.SIGKILL)
                    child.process.wait()
                    break
                self._hurry.wait(0.1)
            self.say(child.name, "stopped")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def sovereign_argv(*args: str) -> list[str]:
    """argv that runs a `sovereign` subcommand with this interpreter."""
    return [sys.executable, "-m", "sovereign", *args]
