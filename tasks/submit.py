"""`submit(kind, prompt, **options)`: the Python API for scripts.

It validates the job before anything is queued, publishes it through the app (so the
router asks the gate), and returns a handle carrying the task id and the decision.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from arbiter.errors import BrokerUnavailable, SovereignError, TaskFailed, TaskParked
from tasks.broker import first_line, human_duration, ping
from tasks.kinds import make_job
from tasks.names import COMPLETE

if TYPE_CHECKING:
    from celery import Celery
    from celery.result import AsyncResult

    from arbiter import Decision


@dataclass
class Handle:
    """A submitted (or parked) task: its id, the arbiter's decision, and its result."""

    task_id: str
    decision: Decision | None
    queue: str | None
    parked: bool = False
    _async: AsyncResult[Any] | None = None

    @property
    def verdict(self) -> str:
        return self.decision.verdict if self.decision is not None else "proceed"

    def done(self) -> bool:
        """Whether the task has finished (succeeded or failed); never blocks."""
        return self._async is not None and bool(self._async.ready())

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the task and return its result record; a failure raises TaskFailed."""
        if self.parked or self._async is None:
            raise TaskParked(
                f"task {self.task_id} waits for approval and has not run; approve it with "
                f"`sovereign approve {self.task_id}`",
                self.decision,
                self.task_id,
            )
        from celery.exceptions import TimeoutError as CeleryTimeout

        try:
            value = self._async.get(timeout=timeout, propagate=False)
        except CeleryTimeout:
            # Stop listening for it, or the result consumer complains at interpreter exit.
            with contextlib.suppress(Exception):
                self._async.backend.remove_pending_result(self._async)  # type: ignore[attr-defined]
            raise TaskFailed(
                f"task {self.task_id} did not finish within {human_duration(timeout or 0)}; "
                f"it is still queued or running (see `sovereign status {self.task_id}`)"
            ) from None
        if self._async.failed():
            raise TaskFailed(str(value) if value else f"task {self.task_id} failed")
        if not isinstance(value, dict):
            raise TaskFailed(f"task {self.task_id} returned no result record")
        return value


def submit(kind: str, prompt: str, *, app: Celery | None = None, **options: Any) -> Handle:
    """Validate, govern and publish one task.

    Options: ``system``, ``max_tokens``, ``confidential``, ``tags``, ``source``, ``depth``,
    ``topic_id``, ``priority``, ``job_id``, ``extra``. Deny and halt raise TaskBlocked;
    a task the policy parks for approval returns a handle with ``parked=True``.
    """
    if app is None:
        from tasks import get_app

        app = get_app()
    settings = app.sovereign_settings  # type: ignore[attr-defined]
    if options.get("source", "api") in ("api", "cli"):
        # Who submitted it, for the person who approves it (`sovereign pending`).
        extra = dict(options.get("extra") or {})
        extra.setdefault("submitted_by", _os_user())
        options = {**options, "extra": extra}
    job = make_job(settings, kind=kind, prompt=prompt, **options)
    message = job.to_message()
    kwargs: dict[str, Any] = {"job": message}
    router = app.sovereign_router  # type: ignore[attr-defined]
    router.expect(job, message)
    try:
        # Flower and the worker log name the task by its kind.
        async_result = app.send_task(COMPLETE, kwargs=kwargs, task_id=job.job_id, shadow=kind)
    except TaskParked as parked:
        return Handle(job.job_id, parked.decision, None, parked=True)
    except SovereignError:
        raise
    except Exception as exc:
        # Broad on purpose: besides kombu's OperationalError, Celery's Redis result backend
        # reports an unreachable broker as a bare RuntimeError before publishing.
        # The gate decided and reserved before the publish failed: free the reservation so
        # the budget is not held by a task that was never queued.
        _release_unpublished(app, job.job_id, kwargs)
        if _broker_answers(app):
            raise BrokerUnavailable(
                f"the broker answers but did not take task {job.job_id} ({first_line(exc)}); "
                "nothing was queued; submit it again"
            ) from None
        raise BrokerUnavailable(
            f"the broker did not take task {job.job_id} ({first_line(exc)}); nothing was "
            "queued; check that the broker runs (`sovereign up`) or fix SOVEREIGN_BROKER_URL"
        ) from None
    finally:
        router.expect(None)
    admission = router.last_admission()
    decision = admission.decision if admission is not None else None
    queue = admission.queue if admission is not None else None
    return Handle(job.job_id, decision, queue, _async=async_result)


@functools.cache
def _os_user() -> str:
    """The account this process runs as (it does not change while the process lives)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _broker_answers(app: Celery) -> bool:
    """Whether the broker answers a PING now (to say truthfully why a publish failed)."""
    try:
        ping(app.conf.broker_url, timeout=1.0)
    except BrokerUnavailable:
        return False
    return True


def _release_unpublished(app: Celery, job_id: str, kwargs: dict[str, Any]) -> None:
    if "gate" not in kwargs:
        return
    # The router stamped the attempt it admitted; failing the task frees its hold too.
    ledger = app.sovereign_runtime.get().ledger  # type: ignore[attr-defined]
    ledger.fail_task(job_id, kwargs["attempt"], "the broker did not accept the task")
