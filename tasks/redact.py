"""Model output stays out of worker logs and task events.

The router keeps prompts out of message headers and Flower (``message_summary``); the
answers need the same care. Celery writes a repr of a task's return value into its
"succeeded" log line and into the ``task-succeeded`` event that Flower shows. For the
completion task that repr is the model's text, confidential work included. The result
record itself still goes to the result backend, where ``Handle.result()`` reads it.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.request import Request

from tasks.kinds import KINDS
from tasks.names import COMPLETE

NOT_SHOWN = "(result record in the result backend; its text is not logged)"
TRACE_LOGGER = "celery.app.trace"


class QuietRequest(Request):  # type: ignore[misc]
    """The completion task's request: events carry no result text."""

    def send_event(self, type: str, **fields: Any) -> None:
        if "result" in fields:
            fields["result"] = NOT_SHOWN
        super().send_event(type, **fields)


class ResultFilter(logging.Filter):
    """Replaces the return value in Celery's "succeeded" line of the completion task."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = record.args
        if not isinstance(context, dict):
            return True
        # Completion tasks are named by their kind (Celery's shadow name) where shown.
        name = context.get("name")
        if (name == COMPLETE or name in KINDS) and "return_value" in context:
            quiet = {**context, "return_value": NOT_SHOWN}
            record.args = quiet
            if isinstance(getattr(record, "data", None), dict):
                record.data = quiet
        return True


def install_result_filter() -> None:
    """Add the filter to Celery's trace logger once per process."""
    logger = logging.getLogger(TRACE_LOGGER)
    if not any(isinstance(f, ResultFilter) for f in logger.filters):
        logger.addFilter(ResultFilter())
