"""Facts about the backends for the gate: ``local.available``, ``local.models`` and
``cloud.providers``.

The local probe asks the configured local backend (Ollama's ``GET /api/tags`` by
default) and caches the answer for a few seconds, so a burst of submissions costs one
probe, and builds each backend (and its HTTP client) once, not once per probe. Cloud
facts need no network: a provider counts when its key is configured.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from arbiter.errors import ConfigError
from arbiter.settings import Settings
from workers.protocol import Backend, ProbeResult
from workers.registry import CLOUD_PROVIDERS, Backends, Route

DEFAULT_TTL_S = 5.0


@dataclass(frozen=True, slots=True)
class LocalFacts:
    """What the ``local`` fact holds."""

    available: bool
    models: tuple[str, ...] = ()
    backend: str = ""
    detail: str = ""
    checked_at: float = field(default=0.0, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "available": self.available,
            "models": list(self.models),
            "backend": self.backend,
            "detail": self.detail,
        }


class LocalProbe:
    """The local backend's availability and models, cached for ``ttl_s`` seconds.

    ``backend`` pins the backend to probe (tests, a worker's own backend); otherwise
    the one ``SOVEREIGN_LOCAL_BACKEND`` names is probed, with ``auto`` resolved anew
    at each probe so that an Ollama started later is noticed.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
        backend: Backend | None = None,
    ) -> None:
        self.settings = settings
        self.ttl_s = ttl_s
        self._clock = clock
        self._backend = backend
        self._backends = Backends(settings)
        self._cached: LocalFacts | None = None
        self._lock = threading.Lock()

    def facts(self) -> LocalFacts:
        """The cached facts, probing again when they are older than ``ttl_s``."""
        with self._lock:
            now = self._clock()
            cached = self._cached
            if cached is not None and now - cached.checked_at < self.ttl_s:
                return cached
            fresh = self._probe(now)
            self._cached = fresh
            return fresh

    def invalidate(self) -> None:
        """Forget the cached answer (after a backend reported itself unavailable)."""
        with self._lock:
            self._cached = None

    def _probe(self, now: float) -> LocalFacts:
        if self._backend is not None:
            return _facts(self._backend, now)
        choice = self.settings.local_backend
        try:
            if choice != "auto":
                return _facts(self._local(choice), now)
            # ``auto``: Ollama when it answers, else embedded llama.cpp when installed;
            # when neither, Ollama's answer says how to start it.
            ollama = _facts(self._local("ollama"), now)
            if ollama.available:
                return ollama
            embedded = _facts(self._local("embedded"), now)
            return embedded if embedded.available else ollama
        except ConfigError as exc:
            return LocalFacts(False, (), choice, str(exc), now)

    def _local(self, provider: str) -> Backend:
        return self._backends.get(Route("local", provider))


def _facts(backend: Backend, now: float) -> LocalFacts:
    result: ProbeResult = backend.probe()
    return LocalFacts(result.available, result.models, backend.name, result.detail, now)


def cloud_providers(settings: Settings) -> list[str]:
    """Cloud providers with a key configured (environment or secrets file)."""
    names: list[str] = []
    for provider in CLOUD_PROVIDERS:
        key = settings.secret("openai_api_key" if provider == "openai" else "anthropic_api_key")
        if key:
            names.append(provider)
    return names


def cloud_facts(settings: Settings) -> dict[str, Any]:
    """What the ``cloud`` fact holds."""
    return {"providers": cloud_providers(settings)}
