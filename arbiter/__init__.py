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
    if name not in __all__:
        raise AttributeError(f"module 'arbiter' has no attribute {name!r}")
    # Importing any module of arbiter.lang loads the whole package, so take the names
    # from the package itself; PolicyError from arbiter.errors, which needs no lark.
    module = "arbiter.errors" if name == "PolicyError" else "arbiter.lang"
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
