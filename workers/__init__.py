"""Model backends behind one small protocol.

``Backend.complete(CompletionRequest) -> Completion``; build backends with
:func:`workers.registry.build_backend` or :class:`workers.registry.Backends`, probe them
with :class:`workers.probe.LocalProbe`. Backend modules import their SDKs, so they are
imported on demand rather than here.
"""

from workers.protocol import (
    Backend,
    Completion,
    CompletionRequest,
    Message,
    ProbeResult,
    Tier,
    Timings,
)
from workers.retry import backoff_delay, next_delay

__all__ = [
    "Backend",
    "Completion",
    "CompletionRequest",
    "Message",
    "ProbeResult",
    "Tier",
    "Timings",
    "backoff_delay",
    "next_delay",
]
