"""SIGKILL of `sovereign broker` while tasks are being submitted, then restarts.

Real processes throughout: the broker command, a submitting script, and a worker that
drains the queue afterwards. Checked: every task whose submit returned is in the queue
and then runs; there is never a second Valkey on the data directory; no reservation is
held without a message behind it; two brokers started at once leave exactly one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from sovereign.embedded_broker import valkeys_on
from tests.pipeline.conftest import Stack, answers, wait_for

pytestmark = pytest.mark.e2e

KILLS = 2
PER_ROUND = 40

SUBMITTER = """
import sys, time
from pathlib import Path
from arbiter.errors import SovereignError
from arbiter.settings import load_settings
from tasks.app import create_app
from tasks.submit import submit

ok, failed, stop = (Path(p) for p in sys.argv[1:4])
app = create_app(load_settings())
n = 0
with ok.open("a") as ok_file, failed.open("a") as failed_file:
    while not stop.exists():
        n += 1
        try:
            handle = submit("summarize", f"load test task {n}", app=app)
        except SovereignError as exc:
            failed_file.write(f"{exc}\\n")
            failed_file.flush()
            time.sleep(0.05)
            continue
        ok_file.write(handle.task_id + "\\n")
        ok_file.flush()
        time.sleep(0.01)
"""


class ValkeyCounter:
    """Samples how many Valkeys run on a data directory, in a thread, until stopped."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.most = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.most = max(self.most, len(valkeys_on(self.data_dir)))
            self.samples += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def more_than(path: Path, count: int) -> bool:
    return len(lines(path)) > count


def exit_codes(*procs: subprocess.Popen[bytes]) -> list[int]:
    return [code for code in (p.poll() for p in procs) if code is not None]


def queued_ids(url: str, queue: str) -> set[str]:
    client = redis.Redis.from_url(url)
    try:
        return {json.loads(raw)["headers"]["id"] for raw in client.lrange(queue, 0, -1)}
    finally:
        client.close()


def held_task_ids(database_url: str) -> set[str]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT task_id FROM reservations WHERE status = 'held'"))
            return {row[0] for row in rows}
    finally:
        engine.dispose()


def task_statuses(database_url: str, ids: list[str]) -> dict[str, str]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, status FROM tasks"))
            wanted = set(ids)
            return {row[0]: row[1] for row in rows if row[0] in wanted}
    finally:
        engine.dispose()


def test_sigkill_of_the_broker_under_load_loses_nothing(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack("unused")
    del stack.env["SOVEREIGN_BROKER_URL"]
    var = stack.home / "var"
    data_dir = (var / "valkey").resolve()
    url_file = var / "broker.url"
    counter = ValkeyCounter(data_dir)

    broker = stack.start("broker", "broker")
    wait_for(url_file.exists, 30, "the broker's URL")
    url = url_file.read_text().strip()
    ok, failed, stop = var / "ok.txt", var / "failed.txt", var / "stop"
    submitter = subprocess.Popen(
        [sys.executable, "-c", SUBMITTER, str(ok), str(failed), str(stop)],
        env=stack.env,
        cwd=stack.home,
    )
    try:
        for round_ in range(1, KILLS + 1):
            wait_for(partial(more_than, ok, round_ * PER_ROUND), 120, "submissions")
            refused = len(lines(failed))
            os.kill(broker.pid, signal.SIGKILL)  # the broker command only, not its group
            broker.wait()
            wait_for(lambda: valkeys_on(data_dir) == [], 30, "Valkey to die with its broker")
            wait_for(partial(more_than, failed, refused), 60, "a refused submission")
            # Two restarts at once: exactly one takes the data directory.
            first = stack.start("broker", "broker")
            rival = stack.start("rival", "broker")
            codes = wait_for(partial(exit_codes, first, rival), 30, "one broker to give way")
            assert codes == [1]
            broker, loser = (rival, "broker") if first.poll() is not None else (first, "rival")
            refusal = stack.log(loser).strip().splitlines()[-1]
            assert refusal.startswith(f"error: the embedded broker of {data_dir} already runs (")
            stack.procs["broker"] = broker
            wait_for(lambda: url_file.exists() and len(valkeys_on(data_dir)) == 1, 30, "restart")
            assert url_file.read_text().strip() == url, "the broker kept its address"
        wait_for(partial(more_than, ok, (KILLS + 1) * PER_ROUND), 120, "more submissions")
    finally:
        stop.touch()
        submitter.wait(timeout=60)
    counter.stop()

    submitted = lines(ok)
    database_url = stack.settings.database_url
    queued = queued_ids(url, stack.settings.queue_local)
    missing = [task_id for task_id in submitted if task_id not in queued]
    assert not missing, f"{len(missing)} of {len(submitted)} submitted tasks lost"
    assert held_task_ids(database_url) <= queued, "a reservation held without a message"
    assert counter.most == 1 and counter.samples > 100

    stack.start_worker("local")
    wait_for(
        lambda: set(task_statuses(database_url, submitted).values()) == {"succeeded"},
        300,
        "every submitted task to run",
    )
    assert held_task_ids(database_url) == set()
    print(f"{len(submitted)} submitted, {len(lines(failed))} refused while the broker was down")
    assert lines(failed), "some submissions were refused while the broker was down"


def test_a_valkey_left_behind_is_stopped_and_its_data_kept(tmp_path: Path) -> None:
    from arbiter.settings import load_settings
    from sovereign.embedded_broker import EmbeddedBroker

    settings = load_settings({"SOVEREIGN_VAR_DIR": str(tmp_path / "var")})
    old = EmbeddedBroker(settings)
    url = old.start()
    redis.Redis.from_url(url).lpush("local", b"a queued task")
    # Its holder "dies" without stopping it: the lock goes, the Valkey stays.
    assert old._lock_fd is not None and old.process is not None
    os.close(old._lock_fd)
    old._lock_fd = None
    left_behind = old.process
    new = EmbeddedBroker(settings)
    try:
        assert new.start() == url, "the same address"
        assert left_behind.wait(timeout=30) is not None
        assert valkeys_on(new.data_dir) == [new.process.pid if new.process else -1]
        assert redis.Redis.from_url(url).lrange("local", 0, -1) == [b"a queued task"]
    finally:
        new.stop()


def test_the_broker_command_brings_its_valkey_back(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack("unused")
    del stack.env["SOVEREIGN_BROKER_URL"]
    data_dir = (stack.home / "var" / "valkey").resolve()
    url_file = stack.home / "var" / "broker.url"
    stack.start("broker", "broker")
    wait_for(url_file.exists, 30, "the broker's URL")
    url = url_file.read_text().strip()
    redis.Redis.from_url(url).lpush("local", b"queued before the kill")
    [first] = valkeys_on(data_dir)
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: valkeys_on(data_dir) not in ([], [first]), 30, "a new Valkey")
    assert "valkey | was killed (SIGKILL); restarting in 0.5 s" in stack.log("broker")
    assert url_file.read_text().strip() == url
    # The new process exists before it listens: wait until it answers.
    wait_for(lambda: answers(url), 30, "the new Valkey to answer")
    assert redis.Redis.from_url(url).lrange("local", 0, -1) == [b"queued before the kill"]
