"""Real inference through the full pipeline: submit -> gate -> Redis -> a real local worker
process -> SmolLM2 (embedded in the worker, and behind llama-cpp-python's server) -> the
ledger, which records the real token counts."""

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
from tests.workers.conftest import SMOLLM2

pytestmark = [pytest.mark.inference, pytest.mark.e2e, pytest.mark.redis]

# Confidential work runs in the worker's own llama.cpp; the rest goes to the local server.
POLICY = f"""
strategy Routing returns Route {{
    when {{ task.confidential == true }}
        then Local {{ provider: "embedded", model: "{SMOLLM2}" }}
    else Local {{ provider: "openai_compat", model: "{SMOLLM2}" }}
}}
"""


# A Redis database of this test's own: workers started by other tests (or by someone else
# on the same machine) on another database never take its tasks.
REDIS_DB = int(os.environ.get("WORKERS_TEST_REDIS_DB", "10"))


@pytest.fixture
def redis_db(redis_server: str) -> Iterator[str]:
    import redis

    url = f"{redis_server}/{REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def stack(tmp_path: Path, redis_db: str, smollm2_path: Path, llama_server: str) -> Iterator[Any]:
    """A Celery app in this process and a ``sovereign worker local`` process."""
    from tasks.app import create_app

    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "policy.arb").write_text(POLICY, encoding="utf-8")
    (tmp_path / "var").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOVEREIGN_")}
    env.update(
        {
            "SOVEREIGN_BROKER_URL": redis_db,
            "SOVEREIGN_DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'ledger.db'}",
            "SOVEREIGN_VAR_DIR": str(tmp_path / "var"),
            "SOVEREIGN_POLICY_PATH": str(tmp_path / "rules"),
            "SOVEREIGN_PRICES_PATH": str(ROOT / "rules" / "prices.toml"),
            "SOVEREIGN_LOCAL_BACKEND": "embedded",
            "SOVEREIGN_EMBEDDED_MODEL_PATH": str(smollm2_path),
            "SOVEREIGN_OPENAI_COMPAT_BASE_URL": llama_server,
            "PYTHONPATH": str(ROOT),
        }
    )
    app = create_app(load_settings(env))
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
        app.worker_log = log_path  # for failure messages
        yield app
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        app.sovereign_runtime.get().ledger.close()


def test_real_prompts_settle_real_token_counts(stack: Any) -> None:
    from tasks import submit

    embedded = submit(
        "classify", "Is this spam? 'You won a prize!'", app=stack, confidential=True, max_tokens=16
    )
    served = submit("classify", "Is this spam? 'Lunch at noon?'", app=stack, max_tokens=16)
    ledger = stack.sovereign_runtime.get().ledger
    for handle, provider in ((embedded, "embedded"), (served, "openai_compat")):
        try:
            result = handle.result(timeout=120)
        except TaskFailed as exc:
            pytest.fail(f"{exc}\nworker log:\n{stack.worker_log.read_text()[-4000:]}")
        assert result["provider"] == provider
        assert result["text"].strip()
        record = ledger.call_record(handle.task_id, 1)
        assert record is not None and record.succeeded
        assert (record.tier, record.provider, record.model) == ("local", provider, SMOLLM2)
        # Counted by llama.cpp: the chat template and system prompt make the input longer
        # than the prompt's words; the output never exceeds max_tokens.
        assert record.usage.input_tokens > 10
        assert 0 < record.usage.output_tokens <= 16
        assert record.usage.output_tokens == result["usage"]["output_tokens"]
        assert record.cost_usd == 0.0
