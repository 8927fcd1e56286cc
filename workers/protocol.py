"""The one small protocol every model backend speaks: a request in, a completion out.

Requests and completions are frozen dataclasses with ``to_dict``/``from_dict`` so that a
Celery task can carry them as plain JSON.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from arbiter.usage import Usage
from workers.structured import parse_answer

Role = Literal["system", "user", "assistant"]
Tier = Literal["local", "cloud"]

DEFAULT_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class Message:
    """One chat turn."""

    role: Role
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """What a backend is asked to do.

    ``system`` is sent the way each provider expects a system prompt (Anthropic's
    ``system`` field, a leading system message elsewhere). ``json_schema`` asks for
    structured output; ``timeout_s`` bounds the whole call; ``confidential`` requests
    never leave the machine.
    """

    messages: tuple[Message, ...]
    max_tokens: int
    model: str
    json_schema: dict[str, Any] | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    confidential: bool = False
    system: str | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if not self.messages:
            raise ValueError("a completion request needs at least one message")

    @classmethod
    def from_prompt(
        cls,
        prompt: str,
        *,
        model: str,
        max_tokens: int,
        system: str | None = None,
        json_schema: dict[str, Any] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        confidential: bool = False,
    ) -> CompletionRequest:
        """A one-turn request: the prompt as the user's message."""
        return cls(
            messages=(Message("user", prompt),),
            max_tokens=max_tokens,
            model=model,
            json_schema=json_schema,
            timeout_s=timeout_s,
            confidential=confidential,
            system=system,
        )

    def chat_messages(self) -> list[dict[str, str]]:
        """Messages with the system prompt first, in the common chat shape."""
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + [m.to_dict() for m in self.messages]

    def to_dict(self) -> dict[str, Any]:
        return {
            "messages": [m.to_dict() for m in self.messages],
            "max_tokens": self.max_tokens,
            "model": self.model,
            "json_schema": self.json_schema,
            "timeout_s": self.timeout_s,
            "confidential": self.confidential,
            "system": self.system,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompletionRequest:
        return cls(
            messages=tuple(Message(m["role"], m["content"]) for m in data["messages"]),
            max_tokens=int(data["max_tokens"]),
            model=str(data["model"]),
            json_schema=data.get("json_schema"),
            timeout_s=float(data.get("timeout_s") or DEFAULT_TIMEOUT_S),
            confidential=bool(data.get("confidential", False)),
            system=data.get("system"),
        )


@dataclass(frozen=True, slots=True)
class Timings:
    """Where the time of one call went, in seconds; providers fill what they know."""

    latency_s: float
    load_s: float | None = None
    prompt_s: float | None = None
    generate_s: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return {
            "latency_s": self.latency_s,
            "load_s": self.load_s,
            "prompt_s": self.prompt_s,
            "generate_s": self.generate_s,
        }


@dataclass(frozen=True, slots=True)
class Completion:
    """What came back.

    ``json`` holds the parsed answer when the request had a schema and the answer
    parsed; otherwise it is ``None`` and ``json_error`` says why. A malformed answer is
    not raised: the call was made (and maybe billed), so its usage must still settle.
    ``logprob_mean`` is the mean log-probability of the answer's tokens where the backend
    returns them (llama.cpp, OpenAI-compatible servers), else ``None``.
    """

    text: str
    usage: Usage
    timings: Timings
    model: str
    provider: str
    json: Any = None
    json_error: str | None = None
    finish_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    logprob_mean: float | None = None

    @classmethod
    def of_answer(
        cls,
        text: str,
        req: CompletionRequest,
        *,
        usage: Usage,
        timings: Timings,
        model: str,
        provider: str,
        finish_reason: str | None = None,
        extra: dict[str, Any] | None = None,
        logprob_mean: float | None = None,
    ) -> Completion:
        """The completion of ``req`` answered with ``text``, parsed when it had a schema."""
        value, problem = parse_answer(text, req.json_schema)
        return cls(
            text=text,
            usage=usage,
            timings=timings,
            model=model,
            provider=provider,
            json=value,
            json_error=problem,
            finish_reason=finish_reason,
            extra=extra or {},
            logprob_mean=logprob_mean,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "json": self.json,
            "json_error": self.json_error,
            "usage": self.usage.to_dict(),
            "timings": self.timings.to_dict(),
            "model": self.model,
            "provider": self.provider,
            "finish_reason": self.finish_reason,
            "extra": dict(self.extra),
            "logprob_mean": self.logprob_mean,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Completion:
        t = data.get("timings") or {}
        return cls(
            text=str(data.get("text", "")),
            json=data.get("json"),
            json_error=data.get("json_error"),
            usage=Usage.from_dict(data.get("usage") or {}),
            timings=Timings(
                latency_s=float(t.get("latency_s") or 0.0),
                load_s=t.get("load_s"),
                prompt_s=t.get("prompt_s"),
                generate_s=t.get("generate_s"),
            ),
            model=str(data.get("model", "")),
            provider=str(data.get("provider", "")),
            finish_reason=data.get("finish_reason"),
            extra=dict(data.get("extra") or {}),
            logprob_mean=_float_or_none(data.get("logprob_mean")),
        )


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def mean_logprob(logprobs: Iterable[float | None]) -> float | None:
    """The mean of the finite token log-probabilities, or ``None`` when there are none.

    A token reported at ``-inf`` (impossible under the raw distribution, but forced by a
    grammar) carries no information about the model's certainty, so it is left out.
    """
    values = [float(x) for x in logprobs if x is not None and math.isfinite(x)]
    return sum(values) / len(values) if values else None


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """Whether a backend can take work now, and which models it has."""

    available: bool
    models: tuple[str, ...] = ()
    detail: str = ""


@runtime_checkable
class Backend(Protocol):
    """A model backend. ``complete`` raises only :class:`arbiter.errors.BackendError`."""

    name: str
    tier: Tier

    def complete(self, req: CompletionRequest) -> Completion:
        """Run one completion."""
        ...

    def probe(self) -> ProbeResult:
        """Say whether the backend answers now; cloud backends check only their key."""
        ...
