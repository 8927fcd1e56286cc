"""Ollama through the official ``ollama`` client: the default local backend.

The client's default timeout is none at all, so every client here is built with an
explicit one. Structured output uses ``format=`` with the JSON schema; usage comes from
``prompt_eval_count`` and ``eval_count``, which Ollama leaves out at times (then 0).
Every chat asks for token log-probabilities (``logprobs``, Ollama 0.12.11 and client
0.6.1 on); an older server ignores the field and the completion's ``logprob_mean`` stays
``None``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence

import httpx
import ollama

from arbiter.errors import BackendError, ModelNotFound, TransientBackendError
from arbiter.usage import Usage
from workers import failures
from workers.guard import refuse_off_premises
from workers.protocol import (
    Completion,
    CompletionRequest,
    ProbeResult,
    Tier,
    Timings,
    mean_logprob,
)

DEFAULT_HOST = "http://127.0.0.1:11434"
PROBE_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 5.0
START_HINT = "start it with `ollama serve` (or set SOVEREIGN_LOCAL_BACKEND=embedded)"


def resolve_host(configured: str | None) -> str:
    """The configured host, else ``OLLAMA_HOST``, else Ollama's default, with a scheme."""
    host = (configured or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST).strip().rstrip("/")
    return host if "://" in host else f"http://{host}"


# What the client raises: ConnectionError for a refused connection, httpx errors for
# timeouts and broken transfers, ResponseError for an HTTP error answer.
_CLIENT_ERRORS = (ConnectionError, httpx.HTTPError, ollama.ResponseError, ollama.RequestError)


def _seconds(nanos: int | None) -> float | None:
    return None if nanos is None else nanos / 1e9


class OllamaBackend:
    """A local Ollama server."""

    name = "ollama"
    tier: Tier = "local"

    def __init__(
        self,
        host: str | None = None,
        *,
        keep_alive: str | float = "10m",
        private_networks: Sequence[str] = (),
    ) -> None:
        self.host = resolve_host(host)
        self.keep_alive = keep_alive
        self.private_networks = tuple(private_networks)
        self._clients: dict[float, ollama.Client] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OllamaBackend(host={self.host!r})"

    def _client(self, timeout_s: float) -> ollama.Client:
        # The client takes its timeout at construction, so keep one per timeout in use.
        with self._lock:
            client = self._clients.get(timeout_s)
            if client is None:
                timeout = httpx.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s))
                client = ollama.Client(host=self.host, timeout=timeout)
                self._clients[timeout_s] = client
            return client

    def complete(self, req: CompletionRequest) -> Completion:
        """Run ``req`` through ``/api/chat`` (not streamed)."""
        refuse_off_premises(req, self.host, self.private_networks, self.name)
        client = self._client(req.timeout_s)
        started = time.perf_counter()
        try:
            resp = client.chat(
                model=req.model,
                messages=req.chat_messages(),
                format=req.json_schema,
                options={"num_predict": req.max_tokens},
                keep_alive=self.keep_alive,
                logprobs=True,
            )
        except _CLIENT_ERRORS as exc:
            raise self._translate(exc, req.model, req.timeout_s) from None
        except ValueError as exc:  # pydantic: an answer that is not a chat response
            raise failures.unreadable("Ollama", f"{type(exc).__name__}: {exc}") from None
        latency = time.perf_counter() - started
        text = resp.message.content or ""
        return Completion.of_answer(
            text,
            req,
            usage=Usage(
                input_tokens=int(resp.prompt_eval_count or 0),
                output_tokens=int(resp.eval_count or 0),
            ),
            timings=Timings(
                latency_s=latency,
                load_s=_seconds(resp.load_duration),
                prompt_s=_seconds(resp.prompt_eval_duration),
                generate_s=_seconds(resp.eval_duration),
            ),
            model=resp.model or req.model,
            provider=self.name,
            finish_reason=resp.done_reason,
            logprob_mean=mean_logprob(t.logprob for t in resp.logprobs or ()),
        )

    def _translate(self, exc: Exception, model: str, timeout_s: float) -> BackendError:
        if isinstance(exc, ConnectionError | httpx.ConnectError):
            return failures.unreachable("Ollama", self.host, START_HINT)
        if isinstance(exc, httpx.TimeoutException):
            return failures.timed_out("Ollama", timeout_s)
        if isinstance(exc, ollama.ResponseError):
            message = str(exc.error)
            if exc.status_code == 404 or (
                "not found" in message.lower() and "model" in message.lower()
            ):
                return ModelNotFound(
                    f"the model {model} is not pulled into Ollama at {self.host}; "
                    f"run `ollama pull {model}`"
                )
            return failures.from_status(
                provider="Ollama", status=exc.status_code, message=message, model=model
            )
        if isinstance(exc, httpx.TransportError):
            return TransientBackendError(
                f"the connection to Ollama at {self.host} broke ({type(exc).__name__}); "
                "the call will be retried"
            )
        return failures.unreadable("Ollama", str(exc))

    def models(self) -> tuple[str, ...]:
        """Names of the pulled models (``GET /api/tags``); raises like ``complete``."""
        try:
            listed = self._client(PROBE_TIMEOUT_S).list()
        except _CLIENT_ERRORS as exc:
            raise self._translate(exc, "", PROBE_TIMEOUT_S) from None
        return tuple(sorted(m.model for m in listed.models if m.model))

    def probe(self) -> ProbeResult:
        """Available when ``/api/tags`` answers; lists the pulled models."""
        try:
            names = self.models()
        except BackendError as exc:
            return ProbeResult(False, (), str(exc))
        return ProbeResult(True, names, f"Ollama answering at {self.host}")

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()  # type: ignore[no-untyped-call]
            self._clients.clear()
