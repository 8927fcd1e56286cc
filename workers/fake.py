"""An in-memory backend for unit and pipeline tests: deterministic, scriptable, no I/O."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from arbiter.errors import BackendError
from arbiter.usage import Usage
from workers.guard import refuse_confidential
from workers.protocol import Completion, CompletionRequest, ProbeResult, Tier, Timings
from workers.structured import example_value

# A prompt holding this makes the fake kill its own process (tests of poisoned tasks).
CRASH_MARKER = "CRASH-THE-WORKER"

Reply = str | Callable[[CompletionRequest], str]
UsageRule = Usage | Callable[[CompletionRequest, str], Usage]


def default_reply(req: CompletionRequest) -> str:
    """``fake answer: <last user message>``, or a schema-shaped JSON value."""
    if req.json_schema is not None:
        return json.dumps(example_value(req.json_schema), sort_keys=True)
    last = next((m.content for m in reversed(req.messages) if m.role == "user"), "")
    return f"fake answer: {last[:200]}"


def word_usage(req: CompletionRequest, text: str) -> Usage:
    """One token per word, output capped at ``max_tokens``: plausible, deterministic."""
    words_in = sum(len(m.content.split()) for m in req.messages)
    words_in += len(req.system.split()) if req.system else 0
    return Usage(input_tokens=words_in, output_tokens=min(req.max_tokens, len(text.split())))


class FakeBackend:
    """A backend that answers from memory.

    ``failures`` are raised one per call, in order, before any answer (``None`` in the
    list means "answer this call"), so a test can script "429, then success".
    ``calls`` records every request that reached the backend. A cloud-tier fake applies
    the confidential guard like the real cloud backends.
    """

    def __init__(
        self,
        *,
        name: str = "fake",
        tier: Tier = "local",
        reply: Reply = default_reply,
        usage: UsageRule = word_usage,
        delay_s: float = 0.0,
        failures: Iterable[BackendError | None] = (),
        models: Iterable[str] = ("fake",),
        available: bool = True,
    ) -> None:
        self.name = name
        self.tier: Tier = tier
        self.reply = reply
        self.usage = usage
        self.delay_s = delay_s
        self.models = tuple(models)
        self.available = available
        self.calls: list[CompletionRequest] = []
        self._failures: deque[BackendError | None] = deque(failures)
        self._lock = threading.Lock()

    def script(self, *failures: BackendError | None) -> None:
        """Queue more failures (``None``: succeed) for the next calls."""
        with self._lock:
            self._failures.extend(failures)

    def complete(self, req: CompletionRequest) -> Completion:
        """Answer ``req``, or raise the next scripted failure."""
        if self.tier == "cloud":
            refuse_confidential(req, self.name)
        started = time.perf_counter()
        with self._lock:
            self.calls.append(req)
            failure = self._failures.popleft() if self._failures else None
        if self.delay_s > 0:
            time.sleep(self.delay_s)
        if any(CRASH_MARKER in m.content for m in req.messages):
            # A model that takes its process down (a segfault, the out-of-memory killer).
            os.kill(os.getpid(), signal.SIGKILL)
        if failure is not None:
            raise failure
        text = self.reply(req) if callable(self.reply) else self.reply
        usage = self.usage(req, text) if callable(self.usage) else self.usage
        return Completion.of_answer(
            text,
            req,
            usage=usage,
            timings=Timings(latency_s=time.perf_counter() - started),
            model=req.model,
            provider=self.name,
            finish_reason="stop",
        )

    def probe(self) -> ProbeResult:
        """As configured by ``available`` and ``models``."""
        detail = "fake backend" if self.available else "fake backend marked unavailable"
        return ProbeResult(self.available, self.models if self.available else (), detail)
