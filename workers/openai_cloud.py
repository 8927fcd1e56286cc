"""OpenAI's cloud API through the official SDK (responses by default, chat on request)."""

from __future__ import annotations

import threading

import openai

from arbiter.errors import PermanentBackendError
from workers import openai_wire
from workers.guard import refuse_confidential
from workers.openai_wire import Api
from workers.protocol import DEFAULT_TIMEOUT_S, Completion, CompletionRequest, ProbeResult, Tier

DEFAULT_BASE_URL = "https://api.openai.com/v1"
KEY_ENV = "OPENAI_API_KEY"
MISSING_KEY = (
    "no OpenAI API key is configured; set OPENAI_API_KEY "
    "(or put OPENAI_API_KEY=... in the file named by SOVEREIGN_SECRETS_FILE)"
)


class OpenAIBackend:
    """OpenAI cloud. The key comes from settings (environment or secrets file) only."""

    name = "openai"
    tier: Tier = "cloud"

    def __init__(
        self,
        api_key: str | None,
        *,
        base_url: str | None = None,
        api: Api = "responses",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        strict_schema: bool = False,
    ) -> None:
        self._key = api_key or None
        self.base_url = base_url or DEFAULT_BASE_URL
        self.api: Api = api
        self._timeout_s = timeout_s
        self._strict = strict_schema
        self._client: openai.OpenAI | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIBackend(base_url={self.base_url!r}, api={self.api!r})"

    def _get_client(self) -> openai.OpenAI:
        if self._key is None:
            raise PermanentBackendError(MISSING_KEY)
        with self._lock:
            if self._client is None:
                self._client = openai_wire.make_client(
                    api_key=self._key, base_url=self.base_url, timeout_s=self._timeout_s
                )
            return self._client

    def complete(self, req: CompletionRequest) -> Completion:
        """Send ``req`` to OpenAI; confidential requests are refused before any I/O."""
        refuse_confidential(req, self.name)
        return openai_wire.complete(
            self._get_client(),
            req,
            api=self.api,
            provider=self.name,
            where=self.base_url,
            key_env=KEY_ENV,
            secrets=(self._key,),
            max_tokens_field="max_completion_tokens",
            strict_schema=self._strict,
        )

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
