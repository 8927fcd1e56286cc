"""The pre-dispatch hook: a Celery router that asks the gate before anything is published.

Celery calls routers from ``send_task``, which ``apply_async`` and beat both use, so every
publish of a governed task passes here. The router receives the very ``kwargs`` that become
the message body and stamps the gate's answer into it (``kwargs["gate"]``), so the worker
runs exactly the route that was decided and reserved for.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from arbiter.errors import ConfigError, TaskBlocked, TaskParked
from arbiter.gate import Admission, TaskRequest
from tasks.alerts import after_admission
from tasks.kinds import KINDS, Job
from tasks.names import COMPLETE, CONTROL_TASKS
from tasks.runtime import RuntimeSlot

log = logging.getLogger("sovereign.router")


class GateRouter:
    """Route governed tasks by the arbiter's decision; control tasks to the control queue."""

    def __init__(self, slot: RuntimeSlot) -> None:
        self._slot = slot
        self._last = threading.local()

    def __call__(
        self,
        name: str,
        args: Any,
        kwargs: dict[str, Any],
        options: dict[str, Any],
        task: Any = None,
        **_: Any,
    ) -> dict[str, Any] | None:
        if name in CONTROL_TASKS:
            return {"queue": self._slot.get().settings.queue_control}
        if name != COMPLETE:
            return None
        runtime = self._slot.get()
        message = kwargs.get("job")
        expected = getattr(self._last, "expected", None)
        if expected is not None and expected[0] is message:
            body, job = expected  # validated by `submit` a moment ago
        else:
            job = Job.from_message(message or {}, runtime.settings)
            body = job.to_message()
        attempt = _attempt(kwargs)
        admission = runtime.gate.admit(
            TaskRequest(
                task_id=job.job_id,
                kind=job.kind,
                estimated_tokens=job.estimated_tokens,
                max_tokens=job.max_tokens,
                confidential=job.confidential,
                source=job.source,
                depth=job.depth,
                priority=job.priority,
                tags=job.tags,
                topic=str(job.extra.get("topic") or "") or None,
                attempt=attempt,
                local_confidence=job.extra.get("local_confidence"),
                payload={"task": name, "kwargs": {"job": body}},
                approved=bool(kwargs.get("approved")),
                on_premises=KINDS[job.kind].tool,
            )
        )
        self._last.admission = admission
        # Halts, Alert actions and reached caps go to the webhook from a thread of their own.
        after_admission(runtime, job.kind, admission)
        verdict = admission.verdict
        if verdict in ("deny", "halt"):
            raise TaskBlocked(_blocked_sentence(job, admission), admission.decision, job.job_id)
        if verdict == "approval":
            raise TaskParked(
                f"task {job.job_id} ({job.kind}) waits for approval: "
                f"{admission.decision.reason}; approve it with `sovereign approve {job.job_id}`",
                admission.decision,
                job.job_id,
            )
        queue = admission.queue
        served = runtime.served_queues
        if queue not in served:
            # A queue no worker consumes would strand the task until its reservation expired.
            message = (
                f"the policy routes task {job.job_id} to queue {queue!r}, which no worker "
                f"consumes; use one of {', '.join(sorted(served))} in the route's `queue`"
            )
            runtime.ledger.fail_task(job.job_id, attempt, message)
            raise ConfigError(message)
        kwargs["job"] = body
        kwargs["attempt"] = attempt
        kwargs["gate"] = {
            "route": admission.route or {},
            "verdict": verdict,
            "policy_version": admission.policy_version,
            "decided_by": admission.decision.decided_by,
        }
        destination: dict[str, Any] = {
            "queue": queue,
            # Celery would otherwise put a repr of the whole prompt in the message headers,
            # where Flower shows it: confidential text stays out, and the repr costs nothing.
            "argsrepr": "()",
            "kwargsrepr": message_summary(job),
        }
        if verdict == "throttle" and admission.countdown_s:
            # The message header `eta` is what `countdown=` would have set; routers cannot
            # pass countdown itself, but headers they return are merged into the message.
            eta = datetime.now(UTC) + timedelta(seconds=float(admission.countdown_s))
            headers = dict(options.get("headers") or {})
            headers["eta"] = eta.isoformat()
            options["headers"] = headers
            destination["headers"] = headers
        return destination

    def expect(self, job: Job | None, message: dict[str, Any] | None = None) -> None:
        """`submit` validated ``job`` and publishes ``message`` (its ``to_message()``) next,
        on this thread: the router need not validate that very message again. None
        forgets it."""
        self._last.expected = (message, job) if job is not None else None

    def last_admission(self) -> Admission | None:
        """The admission of the most recent publish on this thread (for `submit`)."""
        return getattr(self._last, "admission", None)


def message_summary(job: Job) -> str:
    """What Flower and the logs show for a task's arguments: never the prompt."""
    flags = " confidential" if job.confidential else ""
    return f"{{job: {job.kind} {job.job_id}{flags}, {len(job.prompt)} chars}}"


def _attempt(kwargs: dict[str, Any]) -> int:
    try:
        return max(1, int(kwargs.get("attempt") or 1))
    except (TypeError, ValueError):
        return 1


def _blocked_sentence(job: Job, admission: Admission) -> str:
    decision = admission.decision
    who = f" by rule {decision.decided_by}" if decision.decided_by else ""
    verb = "halted" if decision.verdict == "halt" else "denied"
    return f"task {job.job_id} ({job.kind}) was {verb}{who}: {decision.reason}"
