"""Model output stays out of Celery's "succeeded" log line and its task events."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

from tasks.names import COMPLETE, EXPIRE_RESERVATIONS
from tasks.redact import NOT_SHOWN, TRACE_LOGGER, QuietRequest, ResultFilter

SECRET = "{'text': 'Invoice 1142 for Acme is overdue'}"


def succeeded_record(name: str) -> logging.LogRecord:
    """The record Celery's trace logs: a format and one context dict (also as ``data``)."""
    context = {"id": "t1", "name": name, "return_value": SECRET, "runtime": 0.5}
    record = logging.LogRecord(
        TRACE_LOGGER, logging.INFO, __file__, 1, "Task %(name)s[%(id)s] succeeded in "
        "%(runtime)ss: %(return_value)s", (context,), None,
    )  # fmt: skip
    record.data = context
    return record


def test_the_completion_tasks_result_is_not_logged() -> None:
    record = succeeded_record(COMPLETE)
    assert ResultFilter().filter(record)
    message = record.getMessage()
    assert "Invoice 1142" not in message and NOT_SHOWN in message
    assert "succeeded in 0.5s" in message
    assert record.data["return_value"] == NOT_SHOWN


def test_other_tasks_keep_their_line() -> None:
    record = succeeded_record(EXPIRE_RESERVATIONS)
    assert ResultFilter().filter(record)
    assert SECRET in record.getMessage()


def test_events_of_the_completion_task_carry_no_result() -> None:
    sent: list[tuple[str, dict[str, Any]]] = []
    eventer = SimpleNamespace(enabled=True, send=lambda type, **f: sent.append((type, f)))
    request = QuietRequest.__new__(QuietRequest)
    request._eventer = eventer
    request._task = SimpleNamespace(send_events=True)
    request.id = "t1"
    request.send_event("task-succeeded", result=SECRET, runtime=0.5)
    request.send_event("task-started")
    assert sent == [
        ("task-succeeded", {"uuid": "t1", "result": NOT_SHOWN, "runtime": 0.5}),
        ("task-started", {"uuid": "t1"}),
    ]
