"""A real stack for end-to-end tests: worker and beat processes against a real broker."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu.exceptions import OperationalError

from arbiter.settings import Settings, load_settings
from tests.conftest import ROOT
from tests.pipeline.fake_openai import FakeOpenAI

LOCAL_MODEL = "tiny-local"
CLOUD_MODEL = "gpt-5.4-mini"

POLICY = """
const CLOUD_DAILY_CAP_USD = {cap}

strategy Routing returns Route {{
    when {{ task.confidential == true }}
        then Local {{ provider: "openai_compat", model: "{local}" }}
    when {{ task.kind in ["strategy", "deep_research"] }}
        then Cloud {{ provider: "openai", model: "{cloud}" }}
    else Local {{ provider: "openai_compat", model: "{local}" }}
}}

rule Forbidden priority 10 {{
    when {{ "forbidden" in task.tags }}
    then Deny {{ reason: "the forbidden tag is never run" }}
}}

rule ForbiddenTopic priority 11 {{
    when {{ task.topic starts_with "forbidden" }}
    then Deny {{ reason: "a forbidden research topic" }}
}}

rule SlowDown priority 30 {{
    when {{ "slowdown" in task.tags }}
    then Throttle {{ retry_after: 3s, reason: "asked to slow down" }}
}}

rule CommitNeedsApproval priority 40 {{
    when {{ "commit" in task.tags }}
    then RequireApproval {{ reason: "commits need a person" }}
}}

rule CloudDailyCap priority 20 {{
    when {{ route.tier == "cloud"
            and budget.daily_spend_usd + route.estimated_cost_usd > CLOUD_DAILY_CAP_USD }}
    then Deny {{ reason: "the daily cloud budget is spent" }}
}}
"""


def write_policy(folder: Path, cap: float = 1.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "policy.arb"
    path.write_text(POLICY.format(cap=cap, local=LOCAL_MODEL, cloud=CLOUD_MODEL), encoding="utf-8")
    return folder


class Stack:
    """Settings, an app, and the worker/beat processes of one test."""

    def __init__(self, home: Path, broker_url: str, database_url: str, fake: FakeOpenAI) -> None:
        self.home = home
        self.fake = fake
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SOVEREIGN_")}
        self.env.update(
            {
                "SOVEREIGN_BROKER_URL": broker_url,
                "SOVEREIGN_DATABASE_URL": database_url,
                "SOVEREIGN_VAR_DIR": str(home / "var"),
                "SOVEREIGN_POLICY_PATH": str(home / "rules"),
                "SOVEREIGN_PRICES_PATH": str(ROOT / "rules" / "prices.toml"),
                "SOVEREIGN_LOCAL_BACKEND": "openai_compat",
                "SOVEREIGN_OPENAI_COMPAT_BASE_URL": fake.base_url,
                "SOVEREIGN_OPENAI_BASE_URL": fake.base_url,
                "SOVEREIGN_OPENAI_API_KEY": "sk-test-not-a-real-key",
                "SOVEREIGN_BEAT_INTERVAL_S": "1",
                "SOVEREIGN_MAINTENANCE_INTERVAL_S": "2",
                "SOVEREIGN_RETRY_BACKOFF_S": "0.2",
                "SOVEREIGN_CLOUD_CONCURRENCY": "2",
                "PYTHONPATH": str(ROOT),
            }
        )
        self._app: Any = None

    def configure(self, **values: str) -> None:
        """Change settings before processes start (names without the prefix)."""
        for key, value in values.items():
            self.env[f"SOVEREIGN_{key.upper()}"] = value
        self._app = None

    @property
    def settings(self) -> Settings:
        return load_settings(self.env)

    @property
    def app(self) -> Any:
        if self._app is None:
            from tasks.app import create_app

            self._app = create_app(self.settings)
        return self._app

    @property
    def ledger(self) -> Any:
        return self.app.sovereign_runtime.get().ledger

    def sovereign(
        self, *args: str, timeout: float = 60, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sovereign", *args],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.home / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "sovereign", *args],
            env=self.env,
            cwd=self.home,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def start_worker(self, queue: str, *, wait: bool = True) -> subprocess.Popen[bytes]:
        proc = self.start(queue, "worker", queue, "--loglevel", "INFO")
        if wait:
            self.wait_worker(queue)
        return proc

    def wait_worker(self, queue: str, timeout: float = 90.0) -> None:
        node = f"{queue}@{socket.gethostname()}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs.get(queue)
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"worker {queue} exited {proc.returncode}:\n{self.log(queue)}")
            try:
                replies = self.app.control.ping(destination=[node], timeout=1.0)
            except (redis.ConnectionError, OperationalError):
                # A broker on a port an earlier test's broker used: pooled connections to
                # the old server are closed on first use; the next ping reconnects.
                continue
            if replies:
                return
        raise AssertionError(f"worker {queue} did not answer in {timeout}s:\n{self.log(queue)}")

    def log(self, name: str) -> str:
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace")[-6000:] if path.exists() else ""

    def kill(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop(self) -> None:
        for name in list(self.procs):
            self.kill(name)


def answers(url: str) -> bool:
    """Whether the broker at ``url`` answers a PING now."""
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll until `predicate()` is truthy; the assertion names what never happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def make_stack(tmp_path: Path, fake_openai: FakeOpenAI) -> Iterator[Callable[..., Stack]]:
    stacks: list[Stack] = []

    def factory(broker_url: str, database_url: str | None = None, cap: float = 1.0) -> Stack:
        home = tmp_path / f"stack{len(stacks)}"
        write_policy(home / "rules", cap)
        url = database_url or f"sqlite:///{home / 'var' / 'sovereign.db'}"
        (home / "var").mkdir(parents=True, exist_ok=True)
        stack = Stack(home, broker_url, url, fake_openai)
        stacks.append(stack)
        return stack

    yield factory
    for stack in stacks:
        stack.stop()
