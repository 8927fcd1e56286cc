"""The confidential guard: a cloud backend never sends a confidential request.

It holds whatever the policy decided, so a routing mistake cannot leak a confidential
prompt. Every cloud backend calls :func:`refuse_confidential` before any network I/O.
"""

from __future__ import annotations

from arbiter.errors import ConfidentialRefused
from workers.protocol import CompletionRequest


def refuse_confidential(req: CompletionRequest, provider: str) -> None:
    """Raise :class:`ConfidentialRefused` when ``req`` is confidential."""
    if req.confidential:
        raise ConfidentialRefused(
            f"a confidential request never goes to a cloud backend ({provider}); "
            "route it to the local tier"
        )
