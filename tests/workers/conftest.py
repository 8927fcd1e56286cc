"""Fixtures of the backend tests: loopback wire servers and settings without the host's
environment (no real keys, no real Ollama)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from wire_fakes import WireServer

from arbiter.settings import Settings, load_settings


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
