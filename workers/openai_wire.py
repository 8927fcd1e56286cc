"""The OpenAI SDK calls shared by OpenAI cloud and local OpenAI-compatible servers.

Two wire formats: ``/v1/chat/completions`` (what every compatible server speaks) and
``/v1/responses`` (OpenAI's newer API). Both count cached tokens inside the prompt
tokens, so their usage has the ``included`` cache convention.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Literal, cast

import openai

from arbiter.errors import BackendError
from arbiter.usage import Usage
from workers import failures
from workers.protocol import Completion, CompletionRequest, Timings, mean_logprob
from workers.retry import retry_after_from_headers

Api = Literal["responses", "chat"]
# How chat/completions asks for structured output: OpenAI's ``json_schema`` type, or
# ``{"type": "json_object", "schema": ...}`` (llama-cpp-python's server, Anyscale).
SchemaStyle = Literal["json_schema", "json_object"]
SCHEMA_NAME = "output"
# What reading an answer of the wrong shape raises (the SDKs do not validate answers).
_MALFORMED = (AttributeError, TypeError, KeyError, IndexError, ValueError)


def make_client(*, api_key: str, base_url: str | None, timeout_s: float) -> openai.OpenAI:
    """A client that never retries by itself; Celery owns retries."""
    return openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0)


def usage_from_chat(usage: Any) -> Usage:
    """``CompletionUsage`` (chat/completions) to :class:`Usage`."""
    if usage is None:
        return Usage(convention="included")
    details = getattr(usage, "prompt_tokens_details", None)
    return Usage(
        input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        cached_tokens=int(getattr(details, "cached_tokens", 0) or 0),
        cache_write_tokens=int(getattr(details, "cache_write_tokens", 0) or 0),
        convention="included",
    )


def usage_from_responses(usage: Any) -> Usage:
    """``ResponseUsage`` (responses) to :class:`Usage`."""
    if usage is None:
        return Usage(convention="included")
    details = getattr(usage, "input_tokens_details", None)
    return Usage(
        input_tokens=int(getattr(usage, "input_tokens", 0) or 0),
        output_tokens=int(getattr(usage, "output_tokens", 0) or 0),
        cached_tokens=int(getattr(details, "cached_tokens", 0) or 0),
        cache_write_tokens=int(getattr(details, "cache_write_tokens", 0) or 0),
        convention="included",
    )


def translate_error(
    exc: openai.OpenAIError,
    *,
    provider: str,
    model: str,
    timeout_s: float,
    where: str,
    key_env: str | None = None,
    secrets: Iterable[str | None] = (),
) -> BackendError:
    """The backend error for an exception the OpenAI SDK raised."""
    if isinstance(exc, openai.APITimeoutError):
        return failures.timed_out(provider, timeout_s)
    if isinstance(exc, openai.APIConnectionError):
        return failures.unreachable(provider, where, "check that the server is running")
    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        message = body.get("message") if isinstance(body.get("message"), str) else exc.message
        return failures.from_status(
            provider=provider,
            status=exc.status_code,
            message=str(message),
            model=model,
            retry_after_s=retry_after_from_headers(exc.response.headers),
            error_type=exc.type,
            error_code=exc.code,
            key_env=key_env,
            secrets=secrets,
        )
    # Anything else from the SDK (a malformed answer, say) is not worth a retry.
    return failures.unreadable(provider, str(exc), secrets)


def complete(
    client: openai.OpenAI,
    req: CompletionRequest,
    *,
    api: Api,
    provider: str,
    where: str,
    key_env: str | None = None,
    secrets: Iterable[str | None] = (),
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_completion_tokens",
    strict_schema: bool = False,
    schema_style: SchemaStyle = "json_schema",
    logprobs: bool = False,
) -> Completion:
    """Run ``req`` through ``client`` in the ``api`` wire format.

    ``logprobs`` asks chat/completions for the answer's token log-probabilities (OpenAI's
    reasoning models refuse the field, so only local servers ask); their mean becomes the
    completion's ``logprob_mean``.
    """
    started = time.perf_counter()
    logprob_mean: float | None = None
    try:
        if api == "chat":
            text, usage, model, finish, logprob_mean = _chat(
                client, req, max_tokens_field, strict_schema, schema_style, logprobs
            )
        else:
            text, usage, model, finish = _responses(client, req, strict_schema)
    except openai.OpenAIError as exc:
        # ``from None``: the SDK's exception holds the request, headers and all.
        raise translate_error(
            exc,
            provider=provider,
            model=req.model,
            timeout_s=req.timeout_s,
            where=where,
            key_env=key_env,
            secrets=secrets,
        ) from None
    except _MALFORMED as exc:
        raise failures.unreadable(provider, f"{type(exc).__name__}: {exc}", secrets) from None
    latency = time.perf_counter() - started
    return Completion.of_answer(
        text,
        req,
        usage=usage,
        timings=Timings(latency_s=latency),
        model=model or req.model,
        provider=provider,
        finish_reason=finish,
        extra={"api": api},
        logprob_mean=logprob_mean,
    )


def _chat(
    client: openai.OpenAI,
    req: CompletionRequest,
    max_tokens_field: str,
    strict_schema: bool,
    schema_style: SchemaStyle,
    logprobs: bool,
) -> tuple[str, Usage, str, str | None, float | None]:
    kwargs: dict[str, Any] = {max_tokens_field: req.max_tokens}
    if logprobs:
        kwargs["logprobs"] = True
    if req.json_schema is not None and schema_style == "json_object":
        kwargs["response_format"] = {"type": "json_object", "schema": req.json_schema}
    elif req.json_schema is not None:
        kwargs["response_format"] = {
            "type": "json_schema",
            "json_schema": {
                "name": SCHEMA_NAME,
                "schema": req.json_schema,
                "strict": strict_schema,
            },
        }
    resp = client.chat.completions.create(
        model=req.model,
        messages=cast(Any, req.chat_messages()),
        timeout=req.timeout_s,
        **kwargs,
    )
    if not resp.choices:
        raise ValueError("the answer has no choices")
    choice = resp.choices[0]
    text = choice.message.content or ""
    usage = usage_from_chat(resp.usage)
    return text, usage, str(resp.model or ""), choice.finish_reason, _logprob_mean(choice)


def _logprob_mean(choice: Any) -> float | None:
    """The mean of ``choice.logprobs.content[].logprob``; ``None`` when the server sent none."""
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if not content:
        return None
    return mean_logprob(getattr(token, "logprob", None) for token in content)


def _responses(
    client: openai.OpenAI, req: CompletionRequest, strict_schema: bool
) -> tuple[str, Usage, str, str | None]:
    kwargs: dict[str, Any] = {}
    if req.system:
        kwargs["instructions"] = req.system
    if req.json_schema is not None:
        kwargs["text"] = {
            "format": {
                "type": "json_schema",
                "name": SCHEMA_NAME,
                "schema": req.json_schema,
                "strict": strict_schema,
            }
        }
    resp = client.responses.create(
        model=req.model,
        input=cast(Any, [m.to_dict() for m in req.messages]),
        max_output_tokens=req.max_tokens,
        # Nothing is kept on OpenAI's side beyond what the call itself needs.
        store=False,
        timeout=req.timeout_s,
        **kwargs,
    )
    if resp.output is None:
        raise ValueError("the answer has no output")
    status = getattr(resp, "status", None)
    return resp.output_text, usage_from_responses(resp.usage), str(resp.model or ""), status
