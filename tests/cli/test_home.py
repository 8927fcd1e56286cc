"""One home: a stack started in its folder is found by the CLI and `submit()` from anywhere.

The deployment here is a copy of the project as `make install` leaves it (the packages
beside rules/ and .env), so the checkout fallback of SOVEREIGN_HOME is what finds it. The
broker is the embedded Valkey, whose URL lives in the home's var/, and the model settings
live in the home's .env: nothing but the current folder tells the processes where to look.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.pipeline.conftest import wait_for, write_policy
from tests.pipeline.fake_openai import FakeOpenAI

pytestmark = pytest.mark.e2e

PACKAGES = ("arbiter", "tasks", "workers", "sovereign")

README_SNIPPET = """
from tasks import submit
handle = submit("summarize", "notes sent from another folder", max_tokens=200)
print(handle.result(timeout=120)["text"])
"""


class Deployment:
    """A checkout with its broker and local worker running."""

    def __init__(self, root: Path, elsewhere: Path, fake: FakeOpenAI) -> None:
        self.root = root
        self.elsewhere = elsewhere
        self.fake = fake
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SOVEREIGN_")}
        self.env["PYTHONPATH"] = str(root)
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, cwd: Path) -> None:
        log = open(self.root / f"{args[0]}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "sovereign", *args],
            env=self.env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)

    def run(
        self, *argv: str, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *argv],
            env=env or self.env,
            cwd=cwd or self.elsewhere,
            capture_output=True,
            text=True,
            timeout=180,
        )

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    fake = FakeOpenAI().start()
    root = tmp_path / "checkout"
    for name in PACKAGES:
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    write_policy(root / "rules")
    shutil.copy(ROOT / "rules" / "prices.toml", root / "rules" / "prices.toml")
    (root / ".env").write_text(
        "SOVEREIGN_LOCAL_BACKEND=openai_compat\n"
        f"SOVEREIGN_OPENAI_COMPAT_BASE_URL={fake.base_url}\n"
        f"SOVEREIGN_OPENAI_BASE_URL={fake.base_url}\n"
        "SOVEREIGN_OPENAI_API_KEY=sk-test-not-a-real-key\n",
        encoding="utf-8",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    stack = Deployment(root, elsewhere, fake)
    try:
        # The stack is started in its folder, as `make up` does; the worker, to be sure,
        # from another one.
        stack.start("broker", cwd=root)
        wait_for((root / "var" / "broker.url").exists, 60, "the embedded broker")
        stack.start("worker", "local", "--loglevel", "INFO", cwd=elsewhere)
        yield stack
    finally:
        stack.stop()
        fake.stop()


def test_submit_and_the_cli_find_the_stack_from_another_folder(deployment: Deployment) -> None:
    snippet = deployment.run("-c", README_SNIPPET)
    assert snippet.returncode == 0, snippet.stderr
    assert "Traceback" not in snippet.stderr
    assert "notes sent from another folder" in " ".join(deployment.fake.prompts())

    cli = deployment.run(
        "-m", "sovereign", "enqueue", "summarize", "typed in another folder", "--wait", "--json"
    )
    assert cli.returncode == 0, cli.stderr
    outcome = json.loads(cli.stdout)
    assert outcome["result"]["worker"].startswith("local@")

    spend = deployment.run("-m", "sovereign", "spend", "--json")
    assert spend.returncode == 0, spend.stderr
    assert json.loads(spend.stdout)["total"]["calls"] == 2

    # One ledger, in the home; nothing was created where the commands ran.
    assert (deployment.root / "var" / "sovereign.db").exists()
    assert list(deployment.elsewhere.iterdir()) == []

    # SOVEREIGN_HOME names the home even when the installed checkout is another one.
    env = dict(deployment.env, PYTHONPATH=str(ROOT), SOVEREIGN_HOME=str(deployment.root))
    status = deployment.run("-m", "sovereign", "status", outcome["task_id"], env=env, cwd=Path("/"))
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0] == f"task {outcome['task_id']} (summarize)"
    assert lines[1].split() == ["status", "succeeded"]
