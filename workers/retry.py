"""Retry timing for transient backend errors, as pure functions.

The backends never retry by themselves (every SDK is built with ``max_retries=0``): a
:class:`~arbiter.errors.TransientBackendError` goes up to the Celery task, which retries
with :func:`next_delay` up to ``Settings.max_retries`` times. After the last failure the
task releases the budget reservation and records no spend, since a call that failed was
not billed. :class:`~arbiter.errors.PermanentBackendError` is never retried.
"""

from __future__ import annotations

import random
import time
from email.utils import parsedate_to_datetime
from typing import Protocol


class UniformSource(Protocol):
    """Anything with ``uniform(a, b)``, such as :class:`random.Random`."""

    def uniform(self, a: float, b: float) -> float: ...


def backoff_delay(attempt: int, base: float, cap: float, rng: UniformSource | None = None) -> float:
    """Exponential backoff with full jitter: uniform in ``[0, min(cap, base * 2**attempt)]``.

    ``attempt`` counts from 0 for the first retry. Full jitter spreads the retries of
    many workers hit by the same outage, so they do not come back in lockstep.
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    if base <= 0 or cap <= 0:
        raise ValueError("base and cap must be positive")
    # Cap the exponent so that a large attempt count cannot overflow a float.
    ceiling = min(cap, base * 2.0 ** min(attempt, 64))
    source = rng if rng is not None else random
    return source.uniform(0.0, ceiling)


def next_delay(
    attempt: int,
    base: float,
    cap: float,
    retry_after_s: float | None = None,
    rng: UniformSource | None = None,
) -> float:
    """The delay before retry ``attempt``: the provider's ``Retry-After`` when it gave one
    (bounded by ``cap``), else :func:`backoff_delay`."""
    if retry_after_s is not None and retry_after_s >= 0:
        return min(cap, retry_after_s)
    return backoff_delay(attempt, base, cap, rng)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN is no answer
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def retry_after_from_headers(headers: object) -> float | None:
    """``retry-after-ms`` (more precise, sent by OpenAI and Anthropic) or ``retry-after``."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    millis = get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000.0)
        except (TypeError, ValueError):
            pass
    raw = get("retry-after")
    return parse_retry_after(raw) if isinstance(raw, str) else None
