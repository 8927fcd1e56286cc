"""`sovereign up` on embedded defaults, and the embedded broker it starts."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from arbiter.ledger import Ledger
from arbiter.settings import load_settings
from sovereign.embedded_broker import EmbeddedBroker, valkeys_on
from tests.pipeline.conftest import Stack, answers, wait_for

pytestmark = pytest.mark.e2e


def test_up_runs_the_whole_stack_and_stops_cleanly(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack("unused")
    del stack.env["SOVEREIGN_BROKER_URL"]  # embedded defaults: no broker configured
    up = stack.start("up", "up")
    url_file = stack.home / "var" / "broker.url"
    wait_for(url_file.exists, 60, "the embedded broker")
    wait_for(lambda: "sovereign is ready." in stack.log("up"), 90, "the ready banner")
    log = stack.log("up")
    assert re.search(r"workers  local@\S+ \(queue local\), cloud@\S+ \(queue cloud\)", log)
    assert "Flower needs basic-auth credentials: set SOVEREIGN_FLOWER_USER" in log
    assert "local model: openai_compat" in log and "answered a test prompt" in log
    assert "enqueue summarize" in log, "the banner says what to try first"
    # Celery's banners and warnings are in the log files, not on the terminal.
    assert "[queues]" not in log and "Warning" not in log
    assert "[queues]" in (stack.home / "var" / "log" / "local.log").read_text()

    done = stack.sovereign("enqueue", "summarize", "notes from the up test", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["decision"]["verdict"] == "proceed"
    assert outcome["result"]["worker"].startswith("local@")
    assert "notes from the up test" in " ".join(stack.fake.prompts())

    # Ctrl-C while a task runs: the worker says which task it waits for.
    slow = stack.sovereign("enqueue", "summarize", "SLOW:3 a slow one", "--json")
    assert slow.returncode == 0, slow.stderr
    task_id = json.loads(slow.stdout)["task_id"]
    wait_for(lambda: "a slow one" in " ".join(stack.fake.prompts()), 60, "the slow call")
    up.send_signal(signal.SIGINT)
    assert up.wait(timeout=90) == 0, stack.log("up")
    assert not url_file.exists(), "the broker stopped with the stack"
    log = stack.log("up")
    assert "stopping: workers finish their running tasks first" in log
    assert f"local  | stopping after 1 running task: summarize {task_id} (running for " in log
    ledger = Ledger(stack.settings.database_url)
    assert (ledger.task(task_id) or {}).get("status") == "succeeded", "it finished first"
    ledger.close()
    assert "Traceback" not in log
    for name in ("beat", "local", "cloud"):
        assert f"{name:<6} | stopped" in log


def test_up_brings_a_killed_broker_back_and_refuses_a_second_one(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack("unused")
    del stack.env["SOVEREIGN_BROKER_URL"]
    up = stack.start("up", "up", "--no-flower")

    def up_log() -> str:
        return (stack.home / "up.log").read_text()

    wait_for(lambda: "sovereign is ready." in up_log(), 90, "the ready banner")
    url = (stack.home / "var" / "broker.url").read_text().strip()
    data_dir = (stack.home / "var" / "valkey").resolve()
    [first] = valkeys_on(data_dir)

    second = stack.sovereign("broker")
    assert second.returncode == 1
    assert second.stderr.strip().splitlines() == [
        f"error: the embedded broker of {data_dir} already runs (pid {up.pid}, {url}); use "
        "it, or stop that process first"
    ]

    again = stack.sovereign("up")
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == second.stderr.strip().splitlines()

    os.kill(first, signal.SIGKILL)
    wait_for(lambda: "broker | was killed (SIGKILL); restarting in" in up_log(), 30, "the restart")
    wait_for(lambda: valkeys_on(data_dir) not in ([], [first]), 30, "a new Valkey")
    assert len(valkeys_on(data_dir)) == 1
    assert (stack.home / "var" / "broker.url").read_text().strip() == url, "the same address"
    wait_for(lambda: answers(url), 30, "the new Valkey to answer")  # it exists before it listens
    done = stack.sovereign("enqueue", "summarize", "after the broker came back", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"]["worker"].startswith("local@")

    # A worker killed with its pool comes back too.
    [local] = re.findall(r"local  \| started \(pid (\d+)\)", up_log())
    os.killpg(int(local), signal.SIGKILL)
    wait_for(lambda: up_log().count("local  | local@") == 2, 60, "the local worker back")
    assert "local  | was killed (SIGKILL); restarting in 0.5 s" in up_log()
    done = stack.sovereign("enqueue", "summarize", "after the worker came back", "--wait", "--json")
    assert done.returncode == 0, done.stderr

    up.send_signal(signal.SIGINT)
    assert up.wait(timeout=90) == 0, up_log()
    assert valkeys_on(data_dir) == []


def test_flower_without_credentials_says_how_to_set_them(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack("redis://127.0.0.1:1/0")
    result = stack.sovereign("flower")
    assert result.returncode == 1
    out = (result.stdout + result.stderr).strip()
    assert out.splitlines() == [
        "error: Flower needs basic-auth credentials: set SOVEREIGN_FLOWER_USER and "
        "SOVEREIGN_FLOWER_PASSWORD (in the environment or .env)"
    ]


def test_embedded_broker_keeps_queued_messages_across_a_restart(tmp_path: Path) -> None:
    settings = load_settings({"SOVEREIGN_VAR_DIR": str(tmp_path / "var")})
    broker = EmbeddedBroker(settings)
    url = broker.start()
    try:
        redis.Redis.from_url(url).lpush("local", b'{"a queued": "task"}')
    finally:
        broker.stop()
    again = EmbeddedBroker(settings)
    url = again.start()
    try:
        assert redis.Redis.from_url(url).lrange("local", 0, -1) == [b'{"a queued": "task"}']
    finally:
        again.stop()


def test_embedded_broker_never_takes_a_port_something_else_holds(tmp_path: Path) -> None:
    settings = load_settings({"SOVEREIGN_VAR_DIR": str(tmp_path / "var")})
    broker = EmbeddedBroker(settings)
    wanted = broker._port()
    holder = socket.socket()
    # The port may be in TIME_WAIT from an earlier test's broker, as servers allow.
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", wanted))
    holder.listen()
    try:
        url = broker.start()
        assert not url.startswith(f"redis://127.0.0.1:{wanted}/")
        assert redis.Redis.from_url(url).ping()
    finally:
        broker.stop()
        holder.close()


def test_flower_binds_to_loopback_and_requires_basic_auth(
    redis_url: str, make_stack: Callable[..., Stack]
) -> None:
    import base64
    import urllib.error
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    stack = make_stack(redis_url)
    stack.configure(flower_user="studio", flower_password="s3cret-pass", flower_port=str(port))
    stack.start("flower", "flower")
    url = f"http://127.0.0.1:{port}/"

    def status(auth: str | None) -> int:
        request = urllib.request.Request(url)
        if auth:
            request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return int(response.status)
        except urllib.error.HTTPError as err:
            return int(err.code)
        except OSError:
            return 0

    wait_for(lambda: status(None) != 0, 60, "Flower to listen")
    assert status(None) == 401
    assert status("studio:wrong") == 401
    assert status("studio:s3cret-pass") == 200
    listeners = Path("/proc/net/tcp").read_text().splitlines()[1:]
    local = [line.split()[1] for line in listeners if line.split()[3] == "0A"]
    assert f"0100007F:{port:04X}" in local, "listening on 127.0.0.1"
    assert not [a for a in local if a.endswith(f":{port:04X}") and a != f"0100007F:{port:04X}"]
