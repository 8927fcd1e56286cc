"""Maintenance work on the control queue: the tasks of dead workers, expired holds, and
tasks a halt set aside whose scope has resumed.

It sends no task events, so Flower's list shows the studio's work, not the sweep.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from arbiter.errors import SovereignError
from arbiter.ledger.leases import Death
from tasks.alerts import after_poison
from tasks.complete import poisoned_sentence
from tasks.kinds import Job
from tasks.names import COMPLETE, EXPIRE_RESERVATIONS
from tasks.resume import publish_resumable
from tasks.runtime import Runtime, RuntimeSlot

log = logging.getLogger("sovereign.maintenance")


def register_maintenance(app: Celery, slot: RuntimeSlot) -> None:
    """Register the maintenance tasks on `app`."""

    @app.task(name=EXPIRE_RESERVATIONS, ignore_result=True, send_events=False)
    def expire_reservations() -> dict[str, Any]:
        runtime = slot.get()
        rerun = poisoned = 0
        for death in runtime.ledger.reap_dead():
            if rerun_or_poison(app, runtime, death):
                rerun += 1
            else:
                poisoned += 1
        expired = runtime.ledger.expire_reservations()
        if expired:
            log.warning("expired %d reservation(s) held past their time to live", expired)
        # Tasks a halt set aside whose scope has resumed, however it was resumed.
        resumed = len(publish_resumable(app, runtime.ledger).sent)
        return {"expired": expired, "rerun": rerun, "poisoned": poisoned, "resumed": resumed}


def rerun_or_poison(app: Celery, runtime: Runtime, death: Death) -> bool:
    """A task whose worker died: run it again as a new attempt through the gate, or, after
    too many deaths, fail it as poisoned. True when it was queued again."""
    job = ((death.payload or {}).get("kwargs") or {}).get("job") or {}
    parsed = Job.from_message(job, runtime.settings)
    if death.died >= runtime.settings.poison_after:
        sentence = poisoned_sentence(parsed, death.died)
        runtime.ledger.poison(death.task_id, sentence)
        log.error("%s", sentence)
        after_poison(runtime, death.task_id, sentence)
        return False
    log.warning(
        "task %s attempt %s: its worker died (its lease ran out); running it again",
        death.task_id,
        death.attempt,
    )
    try:
        app.send_task(
            COMPLETE,
            kwargs={"job": parsed.to_message(), "attempt": death.attempt + 1},
            task_id=death.task_id,
            shadow=parsed.kind,
        )
    except SovereignError as exc:  # the gate refused it, or parked it: it is recorded
        log.warning("task %s was not run again: %s", death.task_id, exc)
    return True
