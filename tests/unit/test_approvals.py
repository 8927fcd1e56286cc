"""Approvals through the router without a broker, and the patch a commit takes from a task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from arbiter.errors import InputError, TaskBlocked, TaskParked
from sovereign.commands.approvals import preview
from sovereign.commands.commit import _patch_of_task
from tasks.kinds import make_job
from tasks.names import COMPLETE
from tasks.router import GateRouter
from tasks.runtime import RuntimeSlot
from tests.unit.test_commit import PATCH
from tests.unit.test_run_job import make_runtime

POLICY = """
strategy R returns Route {
    when { task.confidential == true } then Local { provider: "fake", model: "m" }
    else Cloud { provider: "openai", model: "gpt-5.4-mini" }
}

rule Review priority 50 {
    when { "review" in task.tags } then RequireApproval { reason: "a person reviews this" }
}
"""


def test_an_approved_confidential_task_stays_confidential(tmp_path: Path) -> None:
    runtime = make_runtime(tmp_path, POLICY)
    router = GateRouter(RuntimeSlot(lambda: runtime))
    job = make_job(
        runtime.settings,
        kind="summarize",
        prompt="the client's merger terms",
        confidential=True,
        tags=["review"],
        extra={"submitted_by": "ann"},
    )
    with pytest.raises(TaskParked, match="approve it with `sovereign approve"):
        router(COMPLETE, (), {"job": job.to_message()}, {})
    (record,) = runtime.ledger.approvals()
    assert (record.submitted_by, record.confidential) == ("ann", True)
    assert preview(record) == {"prompt": ["the client's merger terms"]}

    # Claiming approval without a grant changes nothing.
    with pytest.raises(TaskParked):
        router(COMPLETE, (), {"job": job.to_message(), "approved": True}, {})
    payload = runtime.ledger.grant(job.job_id, "bob", "fine")
    kwargs: dict[str, Any] = dict(payload["kwargs"], approved=True)
    destination = router(COMPLETE, (), kwargs, {})
    assert destination is not None and destination["queue"] == "local"
    assert kwargs["gate"]["route"]["tier"] == "local"
    last = runtime.ledger.decisions(job.job_id)[-1]
    assert last.facts["task"]["confidential"] is True and last.facts["task"]["approved"] is True


def test_an_approved_task_still_meets_a_halt(tmp_path: Path) -> None:
    runtime = make_runtime(tmp_path, POLICY)
    router = GateRouter(RuntimeSlot(lambda: runtime))
    job = make_job(runtime.settings, kind="summarize", prompt="public notes", tags=["review"])
    with pytest.raises(TaskParked):
        router(COMPLETE, (), {"job": job.to_message()}, {})
    payload = runtime.ledger.grant(job.job_id, "bob")
    runtime.ledger.set_halt("cloud", True, "provider incident")
    with pytest.raises(TaskBlocked, match="cloud work is halted: provider incident"):
        router(COMPLETE, (), dict(payload["kwargs"], approved=True), {})


def test_a_commit_is_refused_a_cloud_route(tmp_path: Path) -> None:
    runtime = make_runtime(tmp_path, POLICY)
    router = GateRouter(RuntimeSlot(lambda: runtime))
    job = make_job(
        runtime.settings,
        kind="commit",
        prompt=PATCH,
        extra={"repo": str(tmp_path), "branch": "fix"},
    )
    assert job.estimated_tokens == 0, "no model reads a patch"
    with pytest.raises(TaskBlocked, match=r"runs on the studio's own machines.*local tier"):
        router(COMPLETE, (), {"job": job.to_message()}, {})


class Ledger:
    def __init__(self, rows: dict[str, dict[str, Any]]) -> None:
        self.rows = rows

    def task(self, task_id: str) -> dict[str, Any] | None:
        return self.rows.get(task_id)


def test_a_commit_takes_the_diff_from_an_earlier_tasks_answer() -> None:
    answer = f"Here you go:\n```diff\n{PATCH}```\nDone."
    ledger = Ledger(
        {
            "code1": {"status": "succeeded", "result": {"text": answer}, "confidential": True},
            "code2": {"status": "succeeded", "result": {"text": "I could not."}},
            "code3": {"status": "running", "result": None},
        }
    )
    assert _patch_of_task(ledger, "code1") == (PATCH, True), "derived work stays confidential"
    with pytest.raises(InputError, match="holds no unified diff"):
        _patch_of_task(ledger, "code2")
    with pytest.raises(InputError, match="has no answer yet"):
        _patch_of_task(ledger, "code3")
    with pytest.raises(InputError, match="no task nope in the ledger"):
        _patch_of_task(ledger, "nope")
