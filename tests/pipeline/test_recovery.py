"""Dead workers and poisoned tasks, with real worker processes killed by SIGKILL."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from tasks import submit
from tests.pipeline.conftest import Stack, wait_for
from workers.fake import CRASH_MARKER

pytestmark = pytest.mark.e2e

FAKE_LOCAL = """
strategy Routing returns Route {
    when { task.confidential == true } then Local { provider: "fake", model: "fake" }
    else Local { provider: "fake", model: "fake" }
}
"""


def test_a_dead_workers_task_runs_again_and_is_charged_for_both_calls(
    redis_url: str, make_stack: Callable[..., Stack]
) -> None:
    stack = make_stack(redis_url)
    stack.configure(lease_s="5")
    worker = stack.start_worker("local")
    stack.start_worker("cloud")  # it takes the control queue too: the maintenance sweep
    stack.start("beat", "beat", "--loglevel", "INFO")  # maintenance every 2 s
    handle = submit("classify", "SLOW:5 a long label", app=stack.app)
    wait_for(lambda: "SLOW:5" in " ".join(stack.fake.prompts()), 30, "the first model call")
    os.killpg(worker.pid, signal.SIGKILL)  # the worker, its pool, all of it
    worker.wait()
    killed_at = time.monotonic()
    stack.procs.pop("local")
    ledger = stack.ledger
    assert (ledger.task(handle.task_id) or {})["status"] == "running"
    # The lease runs out, the sweep charges the attempt and queues attempt 2.
    wait_for(lambda: (ledger.task(handle.task_id) or {}).get("attempt") == 2, 60, "the new attempt")
    rerun_after = time.monotonic() - killed_at
    stack.start_worker("local")
    result = handle.result(timeout=90)
    assert result["attempt"] == 2
    died = ledger.call_record(handle.task_id, 1)
    assert died is not None and died.status == "unknown"
    with ledger.reading() as conn:
        charged = conn.execute(
            sa.text("SELECT cost_nusd, reserved_nusd FROM model_calls WHERE attempt = 1")
        ).one()
    assert charged.cost_nusd == charged.reserved_nusd, "charged its full reservation"
    assert ledger.succeeded_call(handle.task_id, 2) is not None
    print(f"attempt 2 queued {rerun_after:.1f} s after the kill (lease 5 s, sweep 2 s)")


def test_a_task_that_kills_its_worker_is_poisoned_and_others_flow(
    redis_url: str, make_stack: Callable[..., Stack]
) -> None:
    stack = make_stack(redis_url)
    (stack.home / "rules" / "policy.arb").write_text(FAKE_LOCAL)
    stack.configure(local_backend="fake")
    stack.start_worker("local")
    poison = submit("classify", f"{CRASH_MARKER} this input crashes the model", app=stack.app)
    ledger = stack.ledger
    wait_for(
        lambda: (ledger.task(poison.task_id) or {}).get("status") == "poisoned",
        120,
        "the task to be poisoned",
    )
    task = ledger.task(poison.task_id)
    assert task is not None and task["died"] == 3 and "poisoned" in task["error"]
    with ledger.reading() as conn:
        calls = conn.execute(
            sa.text("SELECT attempt, status FROM model_calls ORDER BY attempt")
        ).all()
    assert [(c.attempt, c.status) for c in calls] == [
        (1, "unknown"),
        (2, "unknown"),
        (3, "unknown"),
    ]
    # Nothing loops: no further attempt is admitted, and other work still runs.
    fine = submit("classify", "an ordinary label", app=stack.app)
    assert fine.result(timeout=60)["text"]
    assert max(d.attempt for d in ledger.decisions(poison.task_id)) == 3
