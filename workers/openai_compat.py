"""Local OpenAI-compatible servers (llama.cpp's server, LM Studio, vLLM, Ollama's /v1).

They speak chat/completions with a placeholder key. Structured output differs between
them: most take OpenAI's ``json_schema`` response format, llama-cpp-python's server only
``{"type": "json_object", "schema": ...}``. With ``schema_style="auto"`` the backend
tries the first and, when the server rejects it (a 4xx, or the 500 that
llama-cpp-python's server answers with a ``response_format`` validation error), switches
to the second for good.

It asks for token log-probabilities (``logprobs: true``) for the confidence of research
briefs; a server that rejects the field is asked again without it, and never again.
llama.cpp's ``llama-server`` and vLLM return them; llama-cpp-python's server returns none
(it wants ``top_logprobs`` and a model loaded with ``logits_all`` as well).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Literal

import openai

from arbiter.errors import (
    BackendError,
    BackendUnavailable,
    ModelNotFound,
    PermanentBackendError,
)
from workers import openai_wire
from workers.guard import refuse_off_premises
from workers.openai_wire import Api, SchemaStyle
from workers.protocol import DEFAULT_TIMEOUT_S, Completion, CompletionRequest, ProbeResult, Tier

# Local servers ignore the key, but the SDK insists on one.
PLACEHOLDER_KEY = "sk-no-key-required"
PROBE_TIMEOUT_S = 2.0


class OpenAICompatBackend:
    """A local server speaking OpenAI's wire format; chat/completions by default."""

    name = "openai_compat"
    tier: Tier = "local"

    def __init__(
        self,
        base_url: str,
        *,
        api: Api = "chat",
        api_key: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        schema_style: SchemaStyle | Literal["auto"] = "auto",
        strict_schema: bool = False,
        private_networks: Sequence[str] = (),
        logprobs: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.logprobs = logprobs
        self.private_networks = tuple(private_networks)
        self.api: Api = api
        self.schema_style: SchemaStyle | Literal["auto"] = schema_style
        self._key = api_key or PLACEHOLDER_KEY
        self._timeout_s = timeout_s
        self._strict = strict_schema
        self._client: openai.OpenAI | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OpenAICompatBackend(base_url={self.base_url!r}, api={self.api!r})"

    def _get_client(self) -> openai.OpenAI:
        with self._lock:
            if self._client is None:
                self._client = openai_wire.make_client(
                    api_key=self._key, base_url=self.base_url, timeout_s=self._timeout_s
                )
            return self._client

    def complete(self, req: CompletionRequest) -> Completion:
        """Send ``req`` to the local server."""
        refuse_off_premises(req, self.base_url, self.private_networks, self.name)
        if not self.logprobs:
            return self._complete(req)
        try:
            return self._complete(req)
        except BackendError as exc:
            if "logprob" not in str(exc).lower() or isinstance(exc, BackendUnavailable):
                raise
        self.logprobs = False
        return self._complete(req)

    def _complete(self, req: CompletionRequest) -> Completion:
        style = self.schema_style
        try:
            return self._call(req, "json_schema" if style == "auto" else style)
        except BackendError as exc:
            if style != "auto" or req.json_schema is None or not _rejects_schema(exc):
                raise
        completion = self._call(req, "json_object")
        self.schema_style = "json_object"
        return completion

    def _call(self, req: CompletionRequest, style: SchemaStyle) -> Completion:
        return openai_wire.complete(
            self._get_client(),
            req,
            api=self.api,
            provider=self.name,
            where=self.base_url,
            secrets=(self._key if self._key != PLACEHOLDER_KEY else None,),
            # Older local servers know only ``max_tokens``.
            max_tokens_field="max_tokens",
            strict_schema=self._strict,
            schema_style=style,
            logprobs=self.logprobs,
        )

    def probe(self) -> ProbeResult:
        """``GET /models``: available when the server answers, with the models it serves."""
        try:
            page = self._get_client().models.list(timeout=PROBE_TIMEOUT_S)
            models = tuple(sorted(m.id for m in page.data))
        except openai.OpenAIError as exc:
            error = openai_wire.translate_error(
                exc, provider=self.name, model="", timeout_s=PROBE_TIMEOUT_S, where=self.base_url
            )
            return ProbeResult(False, (), str(error))
        return ProbeResult(True, models, f"answering at {self.base_url}")

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def _rejects_schema(exc: BackendError) -> bool:
    """Whether ``exc`` looks like a server refusing the ``json_schema`` response format."""
    if isinstance(exc, ModelNotFound | BackendUnavailable):
        return False
    return isinstance(exc, PermanentBackendError) or "response_format" in str(exc)
