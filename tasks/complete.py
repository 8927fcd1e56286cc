"""The generic completion task: a thin Celery adapter over `run_job`.

`run_job` is a plain function (tests call it without a broker). It re-checks the kill
switch (a task a halt covers is set aside, queued, until its scope resumes) and the
reservation, calls the backend the gate chose (or, for a kind that calls no model such
as a commit, runs its tool on this machine) while renewing the worker's
lease, and settles the reservation with the real usage, once per task attempt however
often the message is redelivered. A delivery of an attempt whose last delivery died in
its call runs the task again as a new attempt through the gate, or, after
``SOVEREIGN_POISON_AFTER`` deaths, fails it as poisoned (see ``arbiter.ledger.leases``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from celery import Celery, Task
from celery.exceptions import Ignore, SoftTimeLimitExceeded

from arbiter.errors import BackendError, TaskBlocked, TaskFailed, TransientBackendError
from arbiter.ledger import Ledger
from arbiter.ledger.reservations import Timings
from arbiter.usage import Usage
from tasks.alerts import after_poison
from tasks.broker import human_duration
from tasks.kinds import KINDS, RESEARCH_SCHEMA, Job
from tasks.names import COMPLETE
from tasks.redact import QuietRequest, install_result_filter
from tasks.research import RepairNeeded, after_research
from tasks.runtime import Runtime, RuntimeSlot
from workers.protocol import CompletionRequest
from workers.retry import next_delay

log = logging.getLogger("sovereign.worker")


class Stale(Exception):
    """A delivery of an attempt the task has moved on from (it ran again, or is poisoned)."""


class SetAside(Exception):
    """A halt covers this task's tier: it waits, queued, for `sovereign resume`."""


class Died(Exception):
    """The last delivery of this attempt died in its call; ``deaths`` counts them all."""

    def __init__(self, deaths: int) -> None:
        super().__init__(deaths)
        self.deaths = deaths


@contextmanager
def lease_kept(ledger: Ledger, task_id: str, attempt: int, every_s: float) -> Iterator[None]:
    """Renew the attempt's lease every ``every_s`` seconds while the block runs."""
    done = threading.Event()

    def renew() -> None:
        while not done.wait(every_s):
            try:
                ledger.renew_lease(task_id, attempt)
            except Exception as exc:  # a database hiccup: the next renewal may work
                log.warning("could not renew the lease of task %s: %s", task_id, exc)

    thread = threading.Thread(target=renew, name=f"lease-{task_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def poisoned_sentence(job: Job, deaths: int) -> str:
    return (
        f"task {job.job_id} ({job.kind}) is poisoned: the worker process died while running "
        f"it {deaths} times (a model that crashes or runs out of memory on it, most likely); "
        "it is not run again"
    )


def run_job(
    runtime: Runtime, job: Job, attempt: int, gate: dict[str, Any], worker: str | None = None
) -> dict[str, Any]:
    """Run one attempt of a job on the route the gate chose; return the result record."""
    ledger = runtime.ledger
    start = ledger.begin_attempt(job.job_id, attempt, worker)
    if start.stale:
        raise Stale(f"task {job.job_id} attempt {attempt} was superseded; nothing to do")
    if start.died:
        raise Died(start.died)
    if start.done is not None:
        # A redelivered message for an attempt that already succeeded: answer from the
        # ledger, never call (and bill) the model twice.
        log.info(
            "task %s attempt %s already succeeded; not calling the model again", job.job_id, attempt
        )
        return dict(start.done.result or {}, cost_usd=start.done.cost_usd)
    if start.halted:
        # Not a failure: the task waits, queued and holding no budget, and is published
        # again as this same attempt when its scope resumes (arbiter.ledger.halts).
        tier = start.tier or str((gate.get("route") or {}).get("tier") or "local")
        reason = f"waits for `sovereign resume`: {start.halt_reason}"
        ledger.set_aside(job.job_id, attempt, tier, reason)
        raise SetAside(f"task {job.job_id} ({tier}) {reason}")
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
    if KINDS[job.kind].tool:
        return run_tool(runtime, job, attempt)
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
        with lease_kept(ledger, job.job_id, attempt, runtime.settings.lease_s / 3):
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
        # Mean token log-probability, where the backend gives one (a confidence signal).
        "logprob_mean": completion.logprob_mean,
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
        # Stores the brief; an invalid one raises RepairNeeded once, then TaskFailed.
        result = after_research(runtime, job, result, route)
    return result


def run_tool(runtime: Runtime, job: Job, attempt: int) -> dict[str, Any]:
    """Run a kind that calls no model (a commit) on this machine, and settle it at zero."""
    from tasks.commit import CommitRefused, apply_commit

    ledger = runtime.ledger
    extra = job.extra
    message = str(extra.get("message") or f"Apply the patch of task {job.job_id}")
    started = datetime.now(UTC)
    try:
        with lease_kept(ledger, job.job_id, attempt, runtime.settings.lease_s / 3):
            done = apply_commit(
                str(extra["repo"]), str(extra["branch"]), job.prompt, message, job.job_id
            )
    except CommitRefused as exc:
        ledger.fail_task(job.job_id, attempt, str(exc))
        raise TaskFailed(f"task {job.job_id} (commit) failed: {exc}") from None
    result: dict[str, Any] = {
        "task_id": job.job_id,
        "attempt": attempt,
        "kind": job.kind,
        "json": None,
        "provider": "git",
        "model": "git",
        "usage": Usage().to_dict(),
        "latency_s": round((datetime.now(UTC) - started).total_seconds(), 4),
        **done,
    }
    record = ledger.settle(
        job.job_id,
        attempt,
        Usage(),
        provider="git",
        model="git",
        tier="local",
        timings=Timings(started_at=started, finished_at=datetime.now(UTC)),
        result=result,
        cost_usd=0.0,
    )
    result["cost_usd"] = record.cost_usd
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
            result = run_job(runtime, parsed, attempt, gate, self.request.hostname)
            result["worker"] = self.request.hostname
            return result
        except Stale as exc:
            log.info("%s", exc)
            raise Ignore() from None
        except SetAside as exc:
            log.warning("%s", exc)
            raise Ignore() from None
        except RepairNeeded as repair:
            # The repair is the next attempt: through the gate, reserved and billed anew.
            raise self.retry(
                kwargs={
                    "job": repair.job.to_message(),
                    "attempt": attempt + 1,
                    "approved": approved,
                },
                countdown=0,
                shadow=parsed.kind,
            ) from None
        except Died as died:
            if died.deaths >= settings.poison_after:
                sentence = poisoned_sentence(parsed, died.deaths)
                runtime.ledger.poison(parsed.job_id, sentence)
                log.error("%s", sentence)
                after_poison(runtime, parsed.job_id, sentence)
                raise TaskFailed(sentence) from None
            log.warning(
                "task %s attempt %s: its worker died in the call (%d of %d); running it again",
                parsed.job_id, attempt, died.deaths, settings.poison_after,
            )  # fmt: skip
            raise self.retry(
                kwargs={"job": parsed.to_message(), "attempt": attempt + 1, "approved": approved},
                countdown=0,
                shadow=parsed.kind,
            ) from None
        except SoftTimeLimitExceeded:
            sentence = (
                f"task {parsed.job_id} ran past its time limit of "
                f"{human_duration(settings.task_time_limit_s)}; its call may have been billed, "
                "so its reservation is charged in full; raise SOVEREIGN_TASK_TIME_LIMIT_S"
            )
            runtime.ledger.charge_in_full(parsed.job_id, attempt, sentence)
            raise TaskFailed(sentence) from None
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
                shadow=parsed.kind,
            ) from None
        except BackendError as exc:
            runtime.ledger.fail_task(parsed.job_id, attempt, str(exc))
            raise TaskFailed(f"task {parsed.job_id} failed: {exc}") from None
