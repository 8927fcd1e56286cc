"""The local model names a policy uses, and where each one runs on this machine.

A policy names local models by what they are (``qwen2.5:14b``, ``deepseek-coder``) under
the provider ``local``. :class:`LocalModels` is the backend of that provider, and the one
place that turns such a name into a server and a model, at every call:

1. ``SOVEREIGN_LOCAL_MODELS`` maps the name (``qwen2.5:14b=qwen2.5:7b``); a name with no
   entry stays as it is.
2. ``SOVEREIGN_LOCAL_BACKEND`` picks the server:

   - ``auto`` (the default): Ollama when it answers and has the model pulled; else the
     embedded llama.cpp model, whatever the name (SmolLM2-135M, or the GGUF of
     ``SOVEREIGN_EMBEDDED_MODEL_PATH``), so a fresh machine still works; else Ollama,
     whose error then says how to start it or which model to pull.
   - ``embedded``: the embedded model, whatever the name.
   - ``ollama``, ``openai_compat``, ``fake``: that server, with the mapped name.

A route that names a server itself (``provider: "ollama"``) gets exactly the model it
names: the mapping is for the ``local`` provider's names.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from arbiter.errors import BackendError
from arbiter.settings import Settings
from workers.protocol import Backend, Completion, CompletionRequest, ProbeResult, Tier

log = logging.getLogger("sovereign.worker")

SMOLLM2_NAME = "smollm2-135m"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# How long Ollama's list of pulled models is trusted: a burst of calls asks once, and a
# model pulled meanwhile is noticed within seconds.
PULLED_TTL_S = 5.0


def embedded_model_name(settings: Settings) -> str:
    """The name the embedded model answers to: ``smollm2-135m`` for the SmolLM2 GGUF,
    else the stem of ``SOVEREIGN_EMBEDDED_MODEL_PATH``'s file."""
    path = settings.embedded_model_path
    if path is None or path.name == SMOLLM2_FILE:
        return SMOLLM2_NAME
    return path.stem


def pulled_name(model: str, pulled: tuple[str, ...]) -> str | None:
    """``model`` as Ollama lists it (a name without a tag is ``:latest``), or None."""
    if model in pulled:
        return model
    if ":" not in model and f"{model}:latest" in pulled:
        return f"{model}:latest"
    return None


class LocalModels:
    """The ``local`` provider: each call runs where the policy's model name maps to.

    ``build`` makes the backend of a concrete local provider (the registry's); each is
    built once. ``choice`` stands in for ``SOVEREIGN_LOCAL_BACKEND`` (a route's
    ``provider: "auto"``). ``clock`` drives the cache of Ollama's model list.
    """

    name = "local"
    tier: Tier = "local"

    def __init__(
        self,
        settings: Settings,
        build: Callable[[str], Backend],
        *,
        choice: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.choice = choice or settings.local_backend
        self.aliases = dict(settings.local_models)
        self.embedded_name = embedded_model_name(settings)
        self._build = build
        self._clock = clock
        self._backends: dict[str, Backend] = {}
        self._pulled: tuple[float, tuple[str, ...] | None] | None = None
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalModels(backend={self.choice!r}, aliases={self.aliases!r})"

    def choose(self, model: str) -> tuple[Backend, str]:
        """The backend a call for ``model`` runs on, and the model name it is sent with."""
        target = self.aliases.get(model, model)
        chosen = self.choice
        if chosen == "embedded":
            return self._backend("embedded"), self.embedded_name
        if chosen != "auto":
            return self._backend(chosen), target
        pulled = self.pulled()
        if pulled is not None:
            name = pulled_name(target, pulled)
            if name is not None:
                return self._backend("ollama"), name
        embedded = self._backend("embedded")
        if embedded.probe().available:
            self._say_fallback(model, target, pulled is not None)
            return embedded, self.embedded_name
        return self._backend("ollama"), target

    def complete(self, req: CompletionRequest) -> Completion:
        """Run ``req`` where its model maps to."""
        backend, model = self.choose(req.model)
        return backend.complete(req if model == req.model else replace(req, model=model))

    def probe(self) -> ProbeResult:
        """The probe of the server that ``SOVEREIGN_LOCAL_BACKEND`` resolves to now."""
        chosen = self.choice
        if chosen != "auto":
            return self._backend(chosen).probe()
        ollama = self._backend("ollama").probe()
        if ollama.available:
            return ollama
        embedded = self._backend("embedded").probe()
        return embedded if embedded.available else ollama

    def sample_model(self) -> str:
        """A model name this machine's local server runs (for the start-up smoke test)."""
        for name in self.aliases.values():
            if self.choose(name)[1] == name:
                return name
        if self.choice in ("auto", "ollama"):
            pulled = self.pulled()
            if pulled and self.choose(pulled[0])[1] == pulled[0]:
                return pulled[0]
        return self.embedded_name

    def pulled(self) -> tuple[str, ...] | None:
        """Ollama's pulled models, or None when it does not answer (cached a few seconds)."""
        now = self._clock()
        with self._lock:
            if self._pulled is not None and now - self._pulled[0] < PULLED_TTL_S:
                return self._pulled[1]
        models = getattr(self._backend("ollama"), "models", None)
        try:
            pulled: tuple[str, ...] | None = tuple(models()) if callable(models) else None
        except BackendError:
            pulled = None
        with self._lock:
            self._pulled = (now, pulled)
        return pulled

    def close(self) -> None:
        """Close every backend built."""
        with self._lock:
            backends, self._backends = list(self._backends.values()), {}
        for backend in backends:
            close = getattr(backend, "close", None)
            if callable(close):
                close()

    def _backend(self, provider: str) -> Backend:
        with self._lock:
            backend = self._backends.get(provider)
            if backend is None:
                backend = self._build(provider)
                self._backends[provider] = backend
            return backend

    def _say_fallback(self, model: str, target: str, ollama_answers: bool) -> None:
        # Once per name and process: the log says why a 14B name answered as SmolLM2.
        with self._lock:
            if model in self._warned:
                return
            self._warned.add(model)
        why = f"Ollama has no model {target}" if ollama_answers else "Ollama does not answer"
        log.warning(
            "local model %s runs on the embedded %s: %s (ollama pull %s, or map it with "
            "SOVEREIGN_LOCAL_MODELS)",
            model, self.embedded_name, why, target,
        )  # fmt: skip
