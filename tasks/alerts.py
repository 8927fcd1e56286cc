"""Alerts from the Celery side: the router's and the sweep's hooks, and the daily summary.

Each process (a worker's pool child, beat, a CLI command) has one outbox per runtime, built
on first use; its thread posts to ``SOVEREIGN_ALERT_WEBHOOK`` (see ``arbiter.alerts``). The
hooks only queue: they cost a decision one cheap check, and one ``put_nowait`` when the
decision carries news, and they never raise.
"""

from __future__ import annotations

import logging
import os
import threading
from functools import partial
from typing import Any

from celery import Celery
from celery.schedules import crontab

from arbiter.alerts import Alert, Outbox, from_decision, poisoned, worth_a_look
from arbiter.alerts.summary import compose, gather
from arbiter.gate import Admission
from arbiter.lang.caps import Cap, policy_caps
from arbiter.settings import Settings
from tasks.names import DAILY_SUMMARY
from tasks.runtime import Runtime, RuntimeSlot

log = logging.getLogger("sovereign.alerts")

_outboxes: dict[tuple[int, int], Outbox] = {}
_lock = threading.Lock()


def outbox_for(runtime: Runtime) -> Outbox | None:
    """This process's outbox for ``runtime``, or None when no webhook is configured."""
    secret = runtime.settings.alert_webhook
    if secret is None:
        return None
    key = (os.getpid(), id(runtime))
    outbox = _outboxes.get(key)
    if outbox is None:
        with _lock:
            outbox = _outboxes.get(key)
            if outbox is None:
                outbox = Outbox(secret.get_secret_value(), runtime.ledger)
                _outboxes[key] = outbox
    return outbox


def after_admission(runtime: Runtime, kind: str, admission: Admission) -> None:
    """Queue the alerts a decision carries: halts, Alert actions, a reached cap."""
    try:
        if runtime.settings.alert_webhook is None or not worth_a_look(admission.decision):
            return
        outbox = outbox_for(runtime)
        if outbox is not None:
            outbox.put(partial(decision_alerts, runtime, kind, admission))
    except Exception as exc:  # an alert is never worth a failed publish
        log.error("could not queue the alerts of task %s: %s", admission.task_id, exc)


def decision_alerts(runtime: Runtime, kind: str, admission: Admission) -> list[Alert]:
    """The alerts of one decision (runs on the outbox's thread: it may parse the policy)."""
    ledger = runtime.ledger
    day = ledger.clock().astimezone(ledger.zone).date()
    return from_decision(
        admission.task_id,
        kind,
        admission.attempt,
        admission.decision,
        caps_for(runtime, admission.policy_version),
        day,
        admission.policy_version,
    )


def after_poison(runtime: Runtime, task_id: str, sentence: str) -> None:
    """Queue the alert of a task poisoned for good."""
    try:
        outbox = outbox_for(runtime)
        if outbox is not None:
            outbox.put(poisoned(task_id, sentence))
    except Exception as exc:
        log.error("could not queue the alert of poisoned task %s: %s", task_id, exc)


def caps_for(runtime: Runtime, version: str | None) -> list[Cap]:
    """The caps of policy ``version`` (the active policy when None or not found)."""
    policy = runtime.policies.current()
    if version is None or policy.version == version:
        return policy_caps(policy.sources)
    for record in runtime.ledger.policy_history(50):
        if record.version == version:
            return policy_caps(record.sources)
    return policy_caps(policy.sources)


def summary_entry(settings: Settings) -> dict[str, Any] | None:
    """Beat's entry for the daily summary at ``SOVEREIGN_SUMMARY_HOUR`` local time (the
    app's timezone is ``SOVEREIGN_TIMEZONE``), or None without a webhook."""
    if settings.alert_webhook is None:
        return None
    return {"task": DAILY_SUMMARY, "schedule": crontab(minute=0, hour=settings.summary_hour)}


def register_alerts(app: Celery, slot: RuntimeSlot) -> None:
    """Register the daily summary task on ``app``."""

    # Once a day: its result (the key it queued) is kept, for whoever asks.
    @app.task(name=DAILY_SUMMARY, send_events=False)
    def daily_summary() -> dict[str, Any]:
        return queue_summary(slot.get())


def queue_summary(runtime: Runtime) -> dict[str, Any]:
    """Compose today's summary and queue it (sent once a day, whoever asks twice)."""
    outbox = outbox_for(runtime)
    if outbox is None:
        return {"queued": None}
    alert = compose(gather(runtime.ledger, caps_for(runtime, None)))
    outbox.put(alert)
    return {"queued": alert.key}
