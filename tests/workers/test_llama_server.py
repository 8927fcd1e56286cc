"""Real inference: llama-cpp-python's OpenAI-compatible server with SmolLM2, answered
through the openai_compat backend."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.workers.wire_fakes import closed_port
from workers.openai_compat import OpenAICompatBackend
from workers.protocol import CompletionRequest

pytestmark = pytest.mark.inference

MODEL = "smollm2-135m"


def _server_extras_installed() -> bool:
    try:
        import fastapi  # noqa: F401
        import sse_starlette  # noqa: F401
        import starlette_context  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def llama_server(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m llama_cpp.server`` on a free loopback port; its /v1 base URL."""
    if not _server_extras_installed():
        message = "llama-cpp-python[server] extras (uvicorn, fastapi, ...) are not installed"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    port = closed_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(smollm2_path), "--model_alias", MODEL,
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(base + "/models", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_probe_sees_the_served_model(llama_server: str) -> None:
    probe = OpenAICompatBackend(llama_server).probe()
    assert probe.available is True
    assert MODEL in probe.models


def test_real_prompt_through_openai_compat(llama_server: str) -> None:
    backend = OpenAICompatBackend(llama_server, timeout_s=60)
    done = backend.complete(
        CompletionRequest.from_prompt(
            "What is the capital of France?", model=MODEL, max_tokens=24, system="Answer briefly."
        )
    )
    assert done.text.strip()
    assert done.usage.input_tokens > 8
    assert 0 < done.usage.output_tokens <= 24
    assert done.provider == "openai_compat"


def test_structured_output_through_the_server(llama_server: str) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
    }
    backend = OpenAICompatBackend(llama_server, timeout_s=60)
    done = backend.complete(
        CompletionRequest.from_prompt(
            "Reply with a JSON object holding one answer: the colour of the sky.",
            model=MODEL,
            max_tokens=40,
            json_schema=schema,
        )
    )
    assert done.json_error is None, done.text
    assert isinstance(done.json["answer"], str)
    # llama-cpp-python's server accepts only {"type": "json_object", "schema": ...}.
    assert backend.schema_style == "json_object"
