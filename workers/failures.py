"""Turn what a provider answered into the project's backend errors, with secrets scrubbed.

429, 408, 5xx and overload are transient (retry with backoff); a 404 on a model is
:class:`ModelNotFound`; any other 4xx is permanent and carries the provider's message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from arbiter.errors import (
    BackendError,
    BackendUnavailable,
    ModelNotFound,
    PermanentBackendError,
    TransientBackendError,
)

# Things that look like API keys even when they are not the configured one (a provider
# may echo part of a key back in its error message).
_KEY_LIKE = re.compile(r"\b(sk-(?:ant-|proj-)?)[A-Za-z0-9_\-*]{6,}")
_MAX_MESSAGE = 500

TRANSIENT_TYPES = frozenset({"overloaded_error", "rate_limit_error", "api_error", "timeout_error"})


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` without any of ``secrets`` and without key-shaped tokens."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _KEY_LIKE.sub(r"\1***", text)


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def from_status(
    *,
    provider: str,
    status: int,
    message: str,
    model: str,
    retry_after_s: float | None = None,
    error_type: str | None = None,
    error_code: str | None = None,
    key_env: str | None = None,
    secrets: Iterable[str | None] = (),
) -> BackendError:
    """The backend error for an HTTP error answer from ``provider``."""
    detail = _clip(scrub(message or "no message", secrets))
    if error_code == "insufficient_quota":
        # OpenAI sends quota exhaustion as a 429, but waiting does not refill it.
        return PermanentBackendError(
            f"{provider} refused the call for lack of quota (HTTP {status}): {detail}; "
            "check the account's billing"
        )
    if status in (408, 409, 429) or status >= 500 or error_type in TRANSIENT_TYPES:
        return TransientBackendError(
            f"{provider} is busy or failing (HTTP {status}): {detail}; the call will be retried",
            retry_after_s=retry_after_s,
        )
    if status == 404 or error_code == "model_not_found":
        return ModelNotFound(
            f"{provider} does not know the model {model} (HTTP {status}): {detail}; "
            "fix the model name in the policy route"
        )
    if status in (401, 403) and key_env:
        return PermanentBackendError(
            f"{provider} rejected the credentials (HTTP {status}): {detail}; check {key_env}"
        )
    return PermanentBackendError(f"{provider} rejected the request (HTTP {status}): {detail}")


def unreadable(
    provider: str, message: str, secrets: Iterable[str | None] = ()
) -> PermanentBackendError:
    """An answer the SDK could not read (not an HTTP error): a retry would read the same."""
    detail = _clip(scrub(message or "no detail", secrets))
    return PermanentBackendError(
        f"{provider} sent an answer that could not be read ({detail}); "
        "check that the URL points at the right kind of server"
    )


def timed_out(provider: str, timeout_s: float) -> TransientBackendError:
    """A call that did not finish within its timeout."""
    return TransientBackendError(
        f"{provider} did not answer within {timeout_s:g} s; the call will be retried"
    )


def unreachable(provider: str, where: str, hint: str) -> BackendUnavailable:
    """A server that refused or dropped the connection."""
    return BackendUnavailable(f"{provider} is not answering at {where}; {hint}")
