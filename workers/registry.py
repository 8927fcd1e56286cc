"""Build the backend a route names, from settings.

A route is ``{tier, provider, model}`` (the arbiter's decision). Local providers are
``ollama``, ``openai_compat``, ``embedded`` and ``fake``, plus ``local`` (whatever
``SOVEREIGN_LOCAL_BACKEND`` says) and ``auto`` (Ollama when it answers, else embedded
llama.cpp), whose model names :class:`~workers.local_models.LocalModels` maps to a
server and a model at each call; cloud providers are ``openai`` and ``anthropic`` (and
``fake`` for tests). The model travels in each
:class:`~workers.protocol.CompletionRequest`, so one backend serves every model of its
provider.

Backend modules are imported when first built: the cloud SDKs take seconds to import,
and a local worker or the command line should not pay for them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from arbiter.errors import ConfigError
from arbiter.settings import Settings
from workers.local_models import LocalModels, embedded_model_name
from workers.protocol import Backend, Tier

if TYPE_CHECKING:
    from workers.embedded import EmbeddedBackend
    from workers.ollama import OllamaBackend

LOCAL_PROVIDERS = ("ollama", "openai_compat", "embedded", "fake")
CLOUD_PROVIDERS = ("openai", "anthropic")
LOCAL_ALIASES = ("auto", "local")


@dataclass(frozen=True, slots=True)
class Route:
    """Where a task runs: the tier, the provider and the model."""

    tier: Tier
    provider: str
    model: str = ""

    @classmethod
    def of(cls, route: Route | Mapping[str, Any]) -> Route:
        """A :class:`Route` from itself or from a decision's route mapping."""
        if isinstance(route, Route):
            return route
        tier = route.get("tier")
        if tier not in ("local", "cloud"):
            raise ConfigError(f"unknown tier {tier!r} in route {dict(route)}; use local or cloud")
        default = "local" if tier == "local" else ""
        provider = str(route.get("provider") or default)
        return cls(tier=tier, provider=provider, model=str(route.get("model") or ""))


def resolve_local_provider(
    settings: Settings,
    choice: str | None = None,
    *,
    ollama_answers: Callable[[], bool] | None = None,
) -> str:
    """The concrete local provider for ``choice`` (default ``SOVEREIGN_LOCAL_BACKEND``):
    ``local`` means the setting; ``auto`` means Ollama when it answers, else embedded
    llama.cpp when installed, else Ollama (whose error then says how to start it)."""
    chosen = choice or settings.local_backend
    if chosen == "local":
        chosen = settings.local_backend
    if chosen != "auto":
        return chosen
    answers = ollama_answers or (lambda: _ollama(settings).probe().available)
    if answers():
        return "ollama"
    if _embedded(settings).probe().available:
        return "embedded"
    return "ollama"


def build_backend(route: Route | Mapping[str, Any], settings: Settings) -> Backend:
    """A new backend for ``route``; unknown providers are a :class:`ConfigError`."""
    r = Route.of(route)
    if r.tier == "local":
        if r.provider in LOCAL_ALIASES:
            choice = "auto" if r.provider == "auto" else None
            return LocalModels(settings, lambda p: _build_local(p, settings), choice=choice)
        return _build_local(r.provider, settings)
    return _build_cloud(r.provider, settings)


def _build_local(provider: str, settings: Settings) -> Backend:
    if provider == "ollama":
        return _ollama(settings)
    if provider == "embedded":
        return _embedded(settings)
    if provider == "fake":
        from workers.fake import FakeBackend

        return FakeBackend(tier="local")
    if provider == "openai_compat":
        from workers.openai_compat import OpenAICompatBackend

        if not settings.openai_compat_base_url:
            raise ConfigError(
                "the local backend openai_compat needs a server URL; "
                "set SOVEREIGN_OPENAI_COMPAT_BASE_URL (for example http://127.0.0.1:8080/v1)"
            )
        return OpenAICompatBackend(
            settings.openai_compat_base_url,
            timeout_s=settings.request_timeout_s,
            private_networks=settings.private_networks,
        )
    known = ", ".join(LOCAL_PROVIDERS + LOCAL_ALIASES)
    raise ConfigError(f"unknown local provider {provider!r}; use one of {known}")


def _build_cloud(provider: str, settings: Settings) -> Backend:
    if provider == "openai":
        from workers.openai_cloud import OpenAIBackend

        return OpenAIBackend(
            settings.secret("openai_api_key"),
            base_url=settings.openai_base_url,
            timeout_s=settings.request_timeout_s,
        )
    if provider == "anthropic":
        from workers.anthropic_cloud import AnthropicBackend

        return AnthropicBackend(
            settings.secret("anthropic_api_key"),
            base_url=settings.anthropic_base_url,
            timeout_s=settings.request_timeout_s,
        )
    if provider == "fake":
        from workers.fake import FakeBackend

        return FakeBackend(tier="cloud")
    known = ", ".join((*CLOUD_PROVIDERS, "fake"))
    raise ConfigError(f"unknown cloud provider {provider!r}; use one of {known}")


def _ollama(settings: Settings) -> OllamaBackend:
    from workers.ollama import OllamaBackend

    return OllamaBackend(
        settings.ollama_host,
        keep_alive=settings.ollama_keep_alive,
        private_networks=settings.private_networks,
    )


def _embedded(settings: Settings) -> EmbeddedBackend:
    from workers.embedded import EmbeddedBackend

    return EmbeddedBackend(
        settings.embedded_model_path,
        n_ctx=settings.embedded_n_ctx,
        model_name=embedded_model_name(settings),
    )


class Backends:
    """The backends of one worker process, built once per (tier, provider) and shared.

    ``preset`` puts ready-made backends in place (a test's :class:`FakeBackend`).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        preset: Mapping[tuple[Tier, str], Backend] | None = None,
    ) -> None:
        self.settings = settings
        self._backends: dict[tuple[Tier, str], Backend] = dict(preset or {})
        self._lock = threading.Lock()

    def get(self, route: Route | Mapping[str, Any]) -> Backend:
        """The backend for ``route``, built on first use."""
        r = Route.of(route)
        key = (r.tier, r.provider)
        with self._lock:
            backend = self._backends.get(key)
            if backend is None:
                backend = build_backend(r, self.settings)
                self._backends[key] = backend
            return backend

    def close(self) -> None:
        """Close every backend's connections."""
        with self._lock:
            for backend in self._backends.values():
                close = getattr(backend, "close", None)
                if callable(close):
                    close()
            self._backends.clear()
