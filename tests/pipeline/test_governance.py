"""The verdicts, end to end: throttle, approval, halt, retries, and beat's refusals."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from celery.signals import before_task_publish

from arbiter.errors import TaskBlocked
from tasks import submit
from tests.pipeline.conftest import Stack, wait_for

pytestmark = pytest.mark.e2e


def test_throttled_task_is_published_with_the_delay(
    redis_url: str, make_stack: Callable[..., Stack]
) -> None:
    stack = make_stack(redis_url)
    stack.start_worker("local")
    published: list[dict[str, Any]] = []

    def capture(headers: dict[str, Any] | None = None, **_: Any) -> None:
        published.append(dict(headers or {}))

    before_task_publish.connect(capture, weak=False)
    try:
        handle = submit("classify", "throttle me please", tags=["slowdown"], app=stack.app)
    finally:
        before_task_publish.disconnect(capture)
    assert handle.decision is not None and handle.decision.verdict == "throttle"
    assert handle.decision.retry_after_s == 3
    handle.result(timeout=60)
    called = [c["at"] for c in stack.fake.calls if c["prompt"].endswith("throttle me please")]
    assert len(called) == 1
    # The message carried an ETA three seconds after the decision; the call came after it.
    (decision,) = stack.ledger.decisions(handle.task_id)
    (headers,) = [h for h in published if h.get("id") == handle.task_id]
    due = datetime.fromisoformat(str(headers["eta"]))
    assert due >= decision.created_at + timedelta(seconds=3)
    assert called[0] >= due.timestamp(), "the model was called only after the policy's delay"
    assert [d.verdict for d in stack.ledger.decisions(handle.task_id)] == ["throttle"]


def test_approval_parks_the_task_until_a_person_grants_it(
    redis_url: str, make_stack: Callable[..., Stack]
) -> None:
    stack = make_stack(redis_url)
    stack.start_worker("local")
    handle = submit("code", "commit the logo fix", tags=["commit"], app=stack.app)
    assert handle.parked and handle.verdict == "approval"
    with pytest.raises(Exception, match="waits for approval"):
        handle.result(timeout=1)
    pending = [a.task_id for a in stack.ledger.approvals()]
    assert pending == [handle.task_id]
    time.sleep(1.5)
    assert "commit the logo fix" not in " ".join(stack.fake.prompts()), "parked, not published"

    granted = stack.sovereign("approve", handle.task_id)
    assert granted.returncode == 0, granted.stderr
    wait_for(
        lambda: (stack.ledger.task(handle.task_id) or {}).get("status") == "succeeded",
        60,
        "the granted task to run",
    )
    assert len([p for p in stack.fake.prompts() if "commit the logo fix" in p]) == 1
    verdicts = [d.verdict for d in stack.ledger.decisions(handle.task_id)]
    assert verdicts == ["approval", "proceed"]


def test_halt_holds_queued_work_before_its_model_call_until_resume(
    redis_url: str, make_stack: Callable[..., Stack]
) -> None:
    stack = make_stack(redis_url)
    queued = submit("classify", "queued before the halt", app=stack.app)
    halted = stack.sovereign("halt", "--reason", "audit")
    assert halted.returncode == 0, halted.stderr
    assert halted.stdout.startswith("halted all work: audit")
    with pytest.raises(TaskBlocked, match="halted"):
        submit("classify", "after the halt", app=stack.app)

    stack.start_worker("local")
    wait_for(lambda: stack.ledger.halted_tasks(), 60, "the worker to set the task aside")
    assert "queued before the halt" not in " ".join(stack.fake.prompts())
    assert stack.ledger.task(queued.task_id)["status"] == "queued", "waiting, not failed"
    facts = stack.ledger.budget_facts()
    assert facts["daily_tokens"] == 0, "the halted task's reservation was released"

    resumed = stack.sovereign("resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed all" in resumed.stdout and "1 queued task(s) sent again" in resumed.stdout
    result = queued.result(timeout=60)
    assert result["attempt"] == 1, "waiting for the resume used up no attempt"
    assert submit("classify", "after resuming", app=stack.app).result(timeout=60)["text"]


def test_transient_error_retries_as_a_new_gated_attempt(
    redis_url: str, make_stack: Callable[..., Stack]
) -> None:
    stack = make_stack(redis_url)
    stack.start_worker("local")
    handle = submit("classify", "FLAKY:1 label this", app=stack.app)
    result = handle.result(timeout=60)
    assert result["attempt"] == 2
    decisions = stack.ledger.decisions(handle.task_id)
    assert [(d.attempt, d.verdict) for d in decisions] == [(1, "proceed"), (2, "proceed")]
    assert stack.ledger.call_record(handle.task_id, 1) is None, "the 429 was not billed"
    record = stack.ledger.call_record(handle.task_id, 2)
    assert record is not None and record.succeeded
    report = stack.ledger.spend_report(days=1)
    assert report.total.calls == 1 and report.held_count == 0


def test_a_blocked_beat_task_is_logged_once_without_a_traceback(
    redis_url: str, make_stack: Callable[..., Stack]
) -> None:
    stack = make_stack(redis_url)
    topic = stack.ledger.add_topic("forbidden: the client's unreleased plans")
    stack.start("beat", "beat", "--loglevel", "INFO")
    wait_for(lambda: "denied" in stack.log("beat"), 60, "beat to try the topic")
    time.sleep(4)  # several more beat intervals
    log = stack.log("beat")
    assert "Traceback" not in log
    blocked = [line for line in log.splitlines() if "denied" in line]
    assert len(blocked) == 1, blocked
    assert "deny by ForbiddenTopic: a forbidden research topic" in blocked[0]
    found = stack.ledger.topic(topic)
    # The rule reads no daily counter, so tomorrow changes nothing: denied, not waiting.
    assert found is not None and found.status == "denied", "the topic is refused for good"
    assert len(stack.ledger.decisions(found.task_id)) == 1, "tried once, not every tick"
