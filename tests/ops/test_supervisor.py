"""The supervisor of `sovereign up` with real child processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sovereign.embedded_broker import _running
from sovereign.supervisor import Supervisor, _Screen
from tests.conftest import ROOT
from tests.pipeline.conftest import wait_for


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        (" -------------- local@vm v5.7.0 (collider)", False),
        ("[2026-12-02 07:23:05,638: INFO/MainProcess] Connected to redis://", False),
        ("[2026-12-02 07:23:05,638: WARNING/MainProcess] a warning", False),
        ("/x/celery/platforms.py:893: SecurityWarning: You're running as root", False),
        ("[2026-12-02 07:23:05,638: ERROR/MainProcess] consumer: Cannot connect", True),
        ("[E 261202 07:23:05 web:1234] 500 GET /", True),
        ("[I 261202 07:23:05 command:168] Visit me at http://127.0.0.1:5555", False),
        ("sovereign: local@vm ready", True),
        ("error: SOVEREIGN_BROKER_URL is not a URL", True),
    ],
)
def test_the_terminal_shows_errors_and_lines_for_people(line: str, shown: bool) -> None:
    assert _Screen().shows(line) is shown


def test_an_error_record_is_shown_with_its_exceptions_and_no_more() -> None:
    screen = _Screen()
    lines = [
        ("[2026-12-02 07:23:05,638: CRITICAL/MainProcess] beat raised exception", True),
        ("Traceback (most recent call last):", True),
        ('  File "x.py", line 1, in <module>', False),
        ("    connection.can_read()", False),
        ("ConnectionError: Connection closed by server.", True),
        ("", False),
        ("During handling of the above exception, another exception occurred:", True),
        ("Traceback (most recent call last):", True),
        ('  File "y.py", line 2, in connect', False),
        ("ConnectionRefusedError: [Errno 111] Connection refused", True),
        ("[2026-12-02 07:23:06,000: INFO/MainProcess] beat: Starting...", False),
        ("  an indented line of a banner", False),
        ("[2026-12-02 07:23:07,000: ERROR/MainProcess] consumer: Cannot connect", True),
        ("Trying again in 2.00 seconds... (1/100)", True),
    ]
    assert [screen.shows(line) for line, _ in lines] == [shown for _, shown in lines]


def run_for(sup: Supervisor, until: threading.Event, timeout: float = 60) -> int:
    def stop() -> None:
        until.wait(timeout)
        sup.stop()

    threading.Thread(target=stop, daemon=True).start()
    return sup.run()


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_child_that_dies_is_restarted_with_a_line_each_time(tmp_path: Path) -> None:
    out: list[str] = []
    done = threading.Event()

    def collect(line: str) -> None:
        out.append(line)
        if sum("restarting" in o for o in out) >= 3:
            done.set()

    sup = Supervisor(collect, log_dir=tmp_path / "log")
    sup.add("flaky", python("print('banner line'); print('the reason it failed'); exit(3)"), {})
    assert run_for(sup, done) == 0
    restarts = [line for line in out if "restarting" in line]
    assert restarts[:3] == [
        "flaky  | exited 3: the reason it failed; restarting in 0.5 s",
        "flaky  | exited 3: the reason it failed; restarting in 1 s",
        "flaky  | exited 3: the reason it failed; restarting in 2 s",
    ]
    assert not [line for line in out if "banner line" in line], "kept for the log file"
    assert "banner line" in (tmp_path / "log" / "flaky.log").read_text()


def test_workers_stop_before_the_broker(tmp_path: Path) -> None:
    order = tmp_path / "order"
    trap = (
        "import signal, sys, time\n"
        "def bye(*_):\n"
        "    time.sleep({pause})\n"
        "    open({path!r}, 'a').write({name!r} + '\\n')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('sovereign: up', flush=True)\n"
        "while True: time.sleep(1)\n"
    )
    up = threading.Event()
    seen: list[str] = []

    def collect(line: str) -> None:
        seen.append(line)
        if sum("| up" in s for s in seen) == 2:
            up.set()

    sup = Supervisor(collect, log_dir=tmp_path / "log")
    broker = subprocess.Popen(
        python(trap.format(pause=0, path=str(order), name="broker")), stdout=subprocess.PIPE
    )
    sup.adopt("broker", broker, lambda: broker, stop_last=True)
    sup.add("worker", python(trap.format(pause=1, path=str(order), name="worker")), {})
    # The adopted broker's output is not pumped; count its line as seen.
    seen.append("broker | up")
    assert run_for(sup, up) == 0
    assert order.read_text().split() == ["worker", "broker"]


def test_a_child_gets_sigterm_when_its_parent_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    child = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    )
    parent = subprocess.Popen(
        python(
            "import subprocess, sys, time\n"
            "from sovereign.supervisor import orphan_proof\n"
            f"subprocess.Popen(orphan_proof([sys.executable, '-c', {child!r}]))\n"
            "time.sleep(600)\n"
        ),
        cwd=ROOT,
    )
    wait_for(lambda: pid_file.exists() and pid_file.read_text(), 30, "the child")
    child_pid = int(pid_file.read_text())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    wait_for(lambda: not _running(child_pid), 30, "the child to die with its parent")


def test_a_second_stop_ends_a_child_that_takes_its_time(tmp_path: Path) -> None:
    out: list[str] = []
    up = threading.Event()

    def collect(line: str) -> None:
        out.append(line)
        if line.endswith("| busy"):
            up.set()

    stubborn = (
        "import os, signal, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: os.write(1, b'sovereign: finishing\\n'))\n"
        "print('sovereign: busy', flush=True)\n"
        "while True: time.sleep(1)\n"
    )
    sup = Supervisor(collect, log_dir=tmp_path / "log", stopping="stopping: wait or press again")

    def twice() -> None:
        up.wait(60)
        sup.stop()
        wait_for(lambda: "worker | finishing" in out, 30, "the child to take its time")
        sup.stop()

    sup.add("worker", python(stubborn), {})
    threading.Thread(target=twice, daemon=True).start()
    assert sup.run() == 0
    tail = out[out.index("stopping: wait or press again") :]
    assert tail == [
        "stopping: wait or press again",
        "worker | finishing",
        "worker | stopping at once",
        "worker | stopped",
    ]
