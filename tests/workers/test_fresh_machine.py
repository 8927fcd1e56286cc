"""A fresh machine: the default policy, no Ollama, no cloud keys. Its local model names
(qwen2.5:14b, deepseek-coder) run on the embedded SmolLM2 in a real worker process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from arbiter.errors import TaskFailed
from arbiter.settings import load_settings
from tests.conftest import ROOT
from tests.workers.wire_fakes import closed_port

pytestmark = [pytest.mark.inference, pytest.mark.e2e, pytest.mark.redis]

NOT_HERE = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OLLAMA_HOST")


@pytest.fixture
def stack(tmp_path: Path, redis_url: str, smollm2_path: Path) -> Iterator[Any]:
    """The default policy's app in this process and a ``sovereign worker local`` process."""
    from tasks.app import create_app

    (tmp_path / "var").mkdir()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("SOVEREIGN_") and k not in NOT_HERE
    }
    env.update(
        {
            "SOVEREIGN_BROKER_URL": redis_url,
            "SOVEREIGN_DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'ledger.db'}",
            "SOVEREIGN_VAR_DIR": str(tmp_path / "var"),
            "SOVEREIGN_POLICY_PATH": str(ROOT / "rules"),
            "SOVEREIGN_PRICES_PATH": str(ROOT / "rules" / "prices.toml"),
            "SOVEREIGN_OLLAMA_HOST": f"http://127.0.0.1:{closed_port()}",
            "PYTHONPATH": str(ROOT),
        }
    )
    settings = load_settings(env)
    assert settings.local_backend == "auto" and settings.local_models == {}
    app = create_app(settings)
    app.sovereign_runtime.get().policies.publish_files("test")
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "sovereign", "worker", "local", "--loglevel", "INFO"],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        node = f"local@{socket.gethostname()}"
        while not app.control.ping(destination=[node], timeout=1.0):
            if worker.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the local worker did not start:\n{log_path.read_text()[-4000:]}")
        app.worker_log = log_path
        yield app
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        app.sovereign_runtime.get().ledger.close()


def test_the_policy_s_local_models_run_on_the_embedded_model(stack: Any) -> None:
    from tasks import submit

    summary = submit("summarize", "Notes: ship the beta on Friday.", app=stack, max_tokens=24)
    code = submit("code", "A Python function adding two numbers.", app=stack, max_tokens=24)
    docs = submit("docs", "Explain the beta's install step.", app=stack, max_tokens=24)
    ledger = stack.sovereign_runtime.get().ledger
    for handle, policy_model in (
        (summary, "qwen2.5:14b"),
        (code, "deepseek-coder"),  # no OpenAI key: code stays on the local coder
        (docs, "qwen2.5:14b"),  # no Anthropic key: docs stay local
    ):
        assert handle.decision.route == {
            "tier": "local",
            "provider": "local",
            "model": policy_model,
        }
        try:
            result = handle.result(timeout=180)
        except TaskFailed as exc:
            pytest.fail(f"{exc}\nworker log:\n{stack.worker_log.read_text()[-4000:]}")
        assert (result["provider"], result["model"]) == ("embedded", "smollm2-135m")
        assert result["text"].strip()
        record = ledger.call_record(handle.task_id, 1)
        assert record is not None and record.succeeded and record.cost_usd == 0.0
        assert (record.tier, record.model) == ("local", policy_model)
    log = stack.worker_log.read_text()
    assert (
        "local model qwen2.5:14b runs on the embedded smollm2-135m: Ollama does not answer" in log
    )
