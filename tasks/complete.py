"""The generic completion task: a thin Celery adapter over `run_job`.

`run_job` is a plain function (tests call it without a broker). It re-checks the kill
switch and the reservation, calls the backend the gate chose, and settles the reservation
with the real usage, once per task attempt however often the message is redelivered.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from celery import Celery, Task

from arbiter.errors import BackendError, TaskBlocked, TaskFailed, TransientBackendError
from arbiter.ledger.reservations import Timings
from tasks.kinds import KINDS, RESEARCH_SCHEMA, Job
from tasks.names import COMPLETE
from tasks.redact import QuietRequest, install_result_filter
from tasks.research import after_research
from tasks.runtime import Runtime, RuntimeSlot
from workers.protocol import CompletionRequest
from workers.retry import next_delay

log = logging.getLogger("sovereign.worker")


def run_job(runtime: Runtime, job: Job, attempt: int, gate: dict[str, Any]) -> dict[str, Any]:
    """Run one attempt of a job on the route the gate chose; return the result record."""
    ledger = runtime.ledger
    start = ledger.begin_attempt(job.job_id, attempt)
    if start.done is not None:
        # A redelivered message for an attempt that already succeeded: answer from the
        # ledger, never call (and bill) the model twice.
        log.info(
            "task %s attempt %s already succeeded; not calling the model again", job.job_id, attempt
        )
        return dict(start.done.result or {}, cost_usd=start.done.cost_usd)
    if start.halted:
        ledger.release(job.job_id, attempt, "halted before the call")
        raise TaskBlocked(
            f"task {job.job_id} was halted before its model call: the kill switch is on "
            "(`sovereign resume` turns it off)",
            task_id=job.job_id,
        )
    if not start.recorded:
        # Nothing to mark failed: the ledger has no row of this attempt.
        raise TaskFailed(
            f"task {job.job_id} attempt {attempt} has no decision in this worker's ledger (its "
            "admission was lost before it reached the disk, or the worker's "
            "SOVEREIGN_DATABASE_URL is not the submitter's); nothing was spent; submit it again"
        )
    if not start.held:
        ledger.fail_task(job.job_id, attempt, "its budget reservation was no longer held")
        raise TaskFailed(
            f"task {job.job_id} attempt {attempt} has no budget reservation held (it expired "
            "or was released); submit the task again"
        )
    route = dict(gate.get("route") or {})
    request = CompletionRequest.from_prompt(
        job.prompt,
        model=str(route.get("model")),
        max_tokens=job.max_tokens,
        system=job.system,
        json_schema=RESEARCH_SCHEMA if KINDS[job.kind].structured else None,
        timeout_s=runtime.settings.request_timeout_s,
        confidential=job.confidential,
    )
    started = datetime.now(UTC)
    try:
        completion = runtime.backends.get(route).complete(request)
    except BackendError:
        # Nothing was billed for a call that failed: free the reservation now. A retry is
        # a new attempt that goes through the gate again and reserves afresh.
        ledger.release(job.job_id, attempt, "the model call failed")
        raise
    result = {
        "task_id": job.job_id,
        "attempt": attempt,
        "kind": job.kind,
        "text": completion.text,
        "json": completion.json,
        "provider": completion.provider,
        "model": completion.model,
        "usage": completion.usage.to_dict(),
        "latency_s": round(completion.timings.latency_s, 4),
    }
    # Priced by the route the gate reserved for: a provider may answer with a dated model id.
    record = ledger.settle(
        job.job_id,
        attempt,
        completion.usage,
        provider=str(route.get("provider")),
        model=str(route.get("model")),
        timings=Timings(started_at=started, finished_at=datetime.now(UTC)),
        result=result,
    )
    result["cost_usd"] = record.cost_usd
    if job.kind == "research":
        after_research(runtime, job, result)
    return result


def register_complete(app: Celery, slot: RuntimeSlot) -> None:
    """Register the completion task on `app`."""

    # Expected outcomes are logged as one line, not as a traceback.
    # Model output stays out of the worker log and Flower (see tasks/redact.py).
    install_result_filter()

    @app.task(
        name=COMPLETE,
        bind=True,
        max_retries=None,
        throws=(TaskFailed, TaskBlocked),
        Request=QuietRequest,
    )
    def complete(
        self: Task[Any, Any],
        job: dict[str, Any],
        gate: dict[str, Any] | None = None,
        attempt: int = 1,
        approved: bool = False,
    ) -> dict[str, Any]:
        runtime = slot.get()
        settings = runtime.settings
        parsed = Job.from_message(job, settings)
        if gate is None:
            raise TaskFailed(
                f"task {parsed.job_id} reached a worker without a gate decision; publish it "
                "through the sovereign app (its router asks the arbiter)"
            )
        try:
            result = run_job(runtime, parsed, attempt, gate)
            result["worker"] = self.request.hostname
            return result
        except TransientBackendError as exc:
            if attempt > settings.max_retries:
                runtime.ledger.fail_task(
                    parsed.job_id, attempt, f"gave up after {attempt} attempts: {exc}"
                )
                raise TaskFailed(
                    f"task {parsed.job_id} failed after {attempt} attempts: {exc}"
                ) from None
            delay = next_delay(
                attempt - 1,
                settings.retry_backoff_s,
                settings.retry_backoff_max_s,
                exc.retry_after_s,
            )
            log.warning(
                "task %s attempt %s: %s; retrying in %.1fs", parsed.job_id, attempt, exc, delay
            )
            raise self.retry(
                kwargs={"job": parsed.to_message(), "attempt": attempt + 1, "approved": approved},
                countdown=delay,
                exc=exc,
            ) from None
        except BackendError as exc:
            runtime.ledger.fail_task(parsed.job_id, attempt, str(exc))
            raise TaskFailed(f"task {parsed.job_id} failed: {exc}") from None
