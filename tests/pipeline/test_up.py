"""`sovereign up` on embedded defaults, and the embedded broker it starts."""

from __future__ import annotations

import json
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from arbiter.settings import load_settings
from sovereign.embedded_broker import EmbeddedBroker
from tests.pipeline.conftest import Stack, wait_for

pytestmark = pytest.mark.e2e


def test_up_runs_the_whole_stack_and_stops_cleanly(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack("unused")
    del stack.env["SOVEREIGN_BROKER_URL"]  # embedded defaults: no broker configured
    up = stack.start("up", "up")
    url_file = stack.home / "var" / "broker.url"
    wait_for(url_file.exists, 60, "the embedded broker")
    wait_for(lambda: "local@" in stack.log("up") and "ready" in stack.log("up"), 90, "workers")
    assert "Flower needs basic-auth credentials: set SOVEREIGN_FLOWER_USER" in stack.log("up")

    done = stack.sovereign("enqueue", "summarize", "notes from the up test", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["decision"]["verdict"] == "proceed"
    assert outcome["result"]["worker"].startswith("local@")
    assert "notes from the up test" in " ".join(stack.fake.prompts())

    up.send_signal(signal.SIGINT)
    assert up.wait(timeout=90) == 0, stack.log("up")
    assert not url_file.exists(), "the broker stopped with the stack"
    log = stack.log("up")
    assert "Traceback" not in log
    for name in ("beat", "local", "cloud"):
        assert f"{name:<6} | stopped" in log


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
