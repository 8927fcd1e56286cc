"""Anthropic's Messages API through the official SDK.

``max_tokens`` is required; ``temperature`` is never sent (current models reject it).
Anthropic reports cache reads and writes apart from ``input_tokens``, so usage has the
``separate`` cache convention.
"""

from __future__ import annotations

import threading
import time
from typing import Any, cast

import anthropic

from arbiter.errors import BackendError, PermanentBackendError
from arbiter.usage import Usage
from workers import failures
from workers.guard import refuse_confidential
from workers.protocol import (
    DEFAULT_TIMEOUT_S,
    Completion,
    CompletionRequest,
    ProbeResult,
    Tier,
    Timings,
)
from workers.retry import retry_after_from_headers

DEFAULT_BASE_URL = "https://api.anthropic.com"
KEY_ENV = "ANTHROPIC_API_KEY"
MISSING_KEY = (
    "no Anthropic API key is configured; set ANTHROPIC_API_KEY "
    "(or put ANTHROPIC_API_KEY=... in the file named by SOVEREIGN_SECRETS_FILE)"
)


def usage_from_message(usage: Any) -> Usage:
    """Anthropic's ``Usage`` to :class:`Usage` (convention ``separate``)."""
    if usage is None:
        return Usage(convention="separate")
    return Usage(
        input_tokens=int(getattr(usage, "input_tokens", 0) or 0),
        output_tokens=int(getattr(usage, "output_tokens", 0) or 0),
        cached_tokens=int(getattr(usage, "cache_read_input_tokens", 0) or 0),
        cache_write_tokens=int(getattr(usage, "cache_creation_input_tokens", 0) or 0),
        convention="separate",
    )


def split_system(req: CompletionRequest) -> tuple[str | None, list[dict[str, str]]]:
    """Anthropic takes the system prompt apart from the turns."""
    systems = [req.system] if req.system else []
    turns: list[dict[str, str]] = []
    for m in req.messages:
        if m.role == "system":
            systems.append(m.content)
        else:
            turns.append(m.to_dict())
    return ("\n\n".join(systems) or None), turns


class AnthropicBackend:
    """Anthropic cloud. The key comes from settings (environment or secrets file) only."""

    name = "anthropic"
    tier: Tier = "cloud"

    def __init__(
        self,
        api_key: str | None,
        *,
        base_url: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._key = api_key or None
        self.base_url = base_url or DEFAULT_BASE_URL
        self._timeout_s = timeout_s
        self._client: anthropic.Anthropic | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never shows the key
        return f"AnthropicBackend(base_url={self.base_url!r})"

    def _get_client(self) -> anthropic.Anthropic:
        if self._key is None:
            raise PermanentBackendError(MISSING_KEY)
        with self._lock:
            if self._client is None:
                self._client = anthropic.Anthropic(
                    api_key=self._key,
                    base_url=self.base_url,
                    timeout=self._timeout_s,
                    max_retries=0,  # Celery owns retries
                )
            return self._client

    def complete(self, req: CompletionRequest) -> Completion:
        """Send ``req`` to Anthropic; confidential requests are refused before any I/O."""
        refuse_confidential(req, self.name)
        client = self._get_client()
        system, turns = split_system(req)
        kwargs: dict[str, Any] = {}
        if system:
            kwargs["system"] = system
        if req.json_schema is not None:
            kwargs["output_config"] = {"format": {"type": "json_schema", "schema": req.json_schema}}
        started = time.perf_counter()
        try:
            msg = client.messages.create(
                model=req.model,
                max_tokens=req.max_tokens,
                messages=cast(Any, turns),
                timeout=req.timeout_s,
                **kwargs,
            )
        except anthropic.AnthropicError as exc:
            # ``from None``: the SDK's exception holds the request, headers and all.
            raise self._translate(exc, req) from None
        latency = time.perf_counter() - started
        try:
            text = "".join(
                str(getattr(block, "text", "")) for block in msg.content if block.type == "text"
            )
            usage = usage_from_message(msg.usage)
        except (AttributeError, TypeError) as exc:
            raise failures.unreadable(
                self.name, f"{type(exc).__name__}: {exc}", (self._key,)
            ) from None
        return Completion.of_answer(
            text,
            req,
            usage=usage,
            timings=Timings(latency_s=latency),
            model=str(msg.model or req.model),
            provider=self.name,
            finish_reason=msg.stop_reason,
        )

    def _translate(self, exc: anthropic.AnthropicError, req: CompletionRequest) -> BackendError:
        if isinstance(exc, anthropic.APITimeoutError):
            return failures.timed_out(self.name, req.timeout_s)
        if isinstance(exc, anthropic.APIConnectionError):
            return failures.unreachable(self.name, self.base_url, "check the network or proxy")
        if isinstance(exc, anthropic.APIStatusError):
            return failures.from_status(
                provider=self.name,
                status=exc.status_code,
                message=exc.api_message or exc.message,
                model=req.model,
                retry_after_s=retry_after_from_headers(exc.response.headers),
                error_type=exc.type,
                key_env=KEY_ENV,
                secrets=(self._key,),
            )
        return failures.unreadable(self.name, str(exc), (self._key,))

    def probe(self) -> ProbeResult:
        """Available when a key is configured; no network call is made."""
        if self._key is None:
            return ProbeResult(False, (), MISSING_KEY)
        return ProbeResult(True, (), "key configured")

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
