"""The Celery app, the pre-dispatch router and the task functions.

``app`` is built from settings on first access (``celery -A tasks`` asks for it), never
as a side effect of importing this package.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from tasks.submit import Handle, submit

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["Handle", "app", "get_app", "submit"]

_app: Celery | None = None
_lock = threading.Lock()


def get_app() -> Celery:
    """The process's app, built from `load_settings()` on first use."""
    global _app
    if _app is None:
        with _lock:
            if _app is None:
                from arbiter.settings import load_settings
                from tasks.app import create_app

                _app = create_app(load_settings())
    return _app


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        return get_app()
    raise AttributeError(f"module 'tasks' has no attribute {name!r}")
