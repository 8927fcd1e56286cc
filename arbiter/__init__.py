"""The arbiter: the .arb policy language, the gate and the ledger.

The language's public names are imported on first use, so importing ``arbiter`` (or
``arbiter.errors``) stays cheap and pulls in neither lark nor SQLAlchemy nor Celery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from arbiter.errors import PolicyError
    from arbiter.lang.api import check, check_sources, load_policy, load_policy_from_sources
    from arbiter.lang.decision import Decision, Fired, TraceStep
    from arbiter.lang.diagnostics import Diagnostic
    from arbiter.lang.policy import Policy

_EXPORTS = {
    "PolicyError": "arbiter.errors",
    "check": "arbiter.lang.api",
    "check_sources": "arbiter.lang.api",
    "load_policy": "arbiter.lang.api",
    "load_policy_from_sources": "arbiter.lang.api",
    "Decision": "arbiter.lang.decision",
    "Fired": "arbiter.lang.decision",
    "TraceStep": "arbiter.lang.decision",
    "Diagnostic": "arbiter.lang.diagnostics",
    "Policy": "arbiter.lang.policy",
}

__all__ = [
    "Decision",
    "Diagnostic",
    "Fired",
    "Policy",
    "PolicyError",
    "TraceStep",
    "check",
    "check_sources",
    "load_policy",
    "load_policy_from_sources",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'arbiter' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
