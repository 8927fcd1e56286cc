"""When the embedded broker's port is taken while it restarts, it moves and the stack follows."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable

import pytest

from sovereign.embedded_broker import valkeys_on
from tests.pipeline.conftest import Stack, wait_for

pytestmark = pytest.mark.e2e


def grab(port: int, within_s: float) -> socket.socket | None:
    """A listener on ``port`` as soon as it is free, or None."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        sock = socket.socket()
        # Connections the dead server accepted linger in TIME_WAIT, as servers allow.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.close()
            time.sleep(0.001)
            continue
        sock.listen()
        return sock
    return None


def test_workers_follow_a_broker_that_had_to_move(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack("unused")
    del stack.env["SOVEREIGN_BROKER_URL"]
    up = stack.start("up", "up", "--no-flower")
    wait_for(lambda: "sovereign is ready." in stack.log("up"), 90, "the ready banner")
    url_file = stack.home / "var" / "broker.url"
    url = url_file.read_text().strip()
    data_dir = (stack.home / "var" / "valkey").resolve()

    holder = None
    for _ in range(3):  # the supervisor may win the race for the port; try again
        [valkey] = wait_for(lambda: valkeys_on(data_dir), 30, "a Valkey")
        os.kill(valkey, signal.SIGKILL)
        holder = grab(int(url.rsplit(":", 1)[1].split("/")[0]), within_s=5)
        if holder is not None:
            break
    assert holder is not None, "could not take the broker's port"
    try:
        moved = wait_for(lambda: url_file.read_text().strip() != url, 30, "the broker to move")
        assert moved
        new_url = url_file.read_text().strip()
        lines = [
            f"{name:<6} | the broker moved to {new_url}; restarting to follow it"
            for name in ("beat", "local", "cloud")
        ]
        wait_for(lambda: all(line in stack.log("up") for line in lines), 60, "all to follow")
        done = stack.sovereign("enqueue", "summarize", "after the move", "--wait", "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["result"]["worker"].startswith("local@")
    finally:
        holder.close()
    up.send_signal(signal.SIGINT)
    assert up.wait(timeout=90) == 0
