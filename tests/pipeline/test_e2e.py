"""End to end: real worker and beat processes, a real broker, the real gate and ledger."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from arbiter.errors import TaskBlocked
from arbiter.settings import load_settings
from tasks import submit
from tests.pipeline.conftest import CLOUD_MODEL, Stack, wait_for
from tests.pipeline.helpers import child_pids

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["redis", "embedded-valkey"])
def broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The machine's Redis (a database of the tests' own), or the embedded Valkey."""
    if request.param == "redis":
        yield str(request.getfixturevalue("redis_url"))
        return
    from sovereign.embedded_broker import EmbeddedBroker

    settings = load_settings({"SOVEREIGN_VAR_DIR": str(tmp_path / "valkey-var")})
    broker = EmbeddedBroker(settings)
    url = broker.start()
    try:
        yield url
    finally:
        broker.stop()


def test_tasks_reach_the_worker_of_their_queue(
    broker_url: str, make_stack: Callable[..., Stack]
) -> None:
    stack = make_stack(broker_url)
    stack.start_worker("local")
    stack.start_worker("cloud")

    local = submit("classify", "Is this invoice overdue?", app=stack.app)
    cloud = submit("strategy", "Should we take the museum contract?", app=stack.app)
    assert (local.queue, cloud.queue) == ("local", "cloud")
    assert local.decision is not None and local.decision.verdict == "proceed"

    local_result = local.result(timeout=60)
    cloud_result = cloud.result(timeout=60)
    assert local_result["worker"].startswith("local@")
    assert cloud_result["worker"].startswith("cloud@")
    assert cloud_result["model"].startswith(CLOUD_MODEL)
    assert "Is this invoice overdue?" in " ".join(stack.fake.prompts())
    # The answers went to the result backend, not into the workers' logs.
    # (Celery logs the "succeeded" line just after it stores the result: wait for it.)
    for queue, result in (("local", local_result), ("cloud", cloud_result)):
        wait_for(lambda q=queue: "succeeded in" in stack.log(q), 10, f"{queue}'s succeeded line")
        assert result["text"] not in stack.log(queue)

    # A completed task has its decision and its model call in the ledger.
    ledger = stack.ledger
    for handle in (local, cloud):
        decisions = ledger.decisions(handle.task_id)
        assert [d.verdict for d in decisions] == ["proceed"]
        call = ledger.call_record(handle.task_id, 1)
        assert (
            call is not None
            and call.succeeded
            and call.usage.input_tokens > 0
            and call.usage.output_tokens > 0
        )
    assert ledger.call_record(cloud.task_id, 1).cost_usd > 0
    assert ledger.call_record(local.task_id, 1).cost_usd == 0

    # A denied task never reaches a worker, and its decision is recorded.
    calls_before = len(stack.fake.calls)
    with pytest.raises(TaskBlocked) as blocked:
        submit("classify", "never run this", tags=["forbidden"], app=stack.app)
    assert "forbidden tag" in str(blocked.value)
    denied = ledger.decisions(blocked.value.task_id)
    assert [d.verdict for d in denied] == ["deny"]
    assert denied[0].decided_by == "Forbidden"
    assert len(stack.fake.calls) == calls_before
    assert "never run this" not in " ".join(stack.fake.prompts())


def test_beat_queues_research_topics(broker_url: str, make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(broker_url)
    topic = stack.ledger.add_topic("open-source typefaces for museum signage")
    stack.start_worker("local")
    stack.start("beat", "beat", "--loglevel", "INFO")
    briefs = wait_for(lambda: stack.ledger.briefs(topic), 60, "beat's research brief")
    assert "fake answer" in briefs[0]
    assert "open-source typefaces" in " ".join(stack.fake.prompts())

    # Exactly one beat per deployment: a second one refuses to start.
    second = stack.sovereign("beat", timeout=60)
    assert second.returncode != 0
    assert "another beat is already running" in second.stdout + second.stderr


def test_spend_cap_blocks_cloud_while_local_continues(
    redis_url: str, make_stack: Callable[..., Stack]
) -> None:
    stack = make_stack(redis_url, cap=0.002)
    stack.start_worker("local")
    stack.start_worker("cloud")
    admitted = 0
    with pytest.raises(TaskBlocked) as blocked:
        for i in range(200):
            handle = submit("strategy", f"plan number {i}", max_tokens=200, app=stack.app)
            handle.result(timeout=60)
            admitted += 1
    assert admitted >= 1
    assert "daily cloud budget" in str(blocked.value)
    spent = stack.ledger.budget_facts()["daily_spend_usd"]
    assert spent <= 0.002

    local = submit("summarize", "Summarise the meeting notes.", app=stack.app)
    assert local.result(timeout=60)["worker"].startswith("local@")


def test_pool_process_killed_mid_call_runs_again_and_is_charged_for_both(
    redis_url: str, make_stack: Callable[..., Stack]
) -> None:
    stack = make_stack(redis_url)
    worker = stack.start_worker("local")  # prefork: the task runs in a pool child
    handle = submit("classify", "SLOW:4 label this slow message", app=stack.app)
    wait_for(lambda: "SLOW:4" in " ".join(stack.fake.prompts()), 30, "the first model call")
    children = child_pids(worker.pid)
    assert children, "the prefork worker has a pool process"
    for pid in children:
        os.kill(pid, signal.SIGKILL)

    result = handle.result(timeout=90)
    assert result["text"].startswith("fake answer")
    calls = [p for p in stack.fake.prompts() if "SLOW:4" in p]
    assert len(calls) == 2, "the killed call, then the call of the new attempt"
    ledger = stack.ledger
    died = ledger.call_record(handle.task_id, 1)
    assert died is not None and died.status == "unknown", "the killed call is charged"
    assert ledger.succeeded_call(handle.task_id, 2) is not None
    assert result["attempt"] == 2
    verdicts = [(d.attempt, d.verdict) for d in ledger.decisions(handle.task_id)]
    assert verdicts == [(1, "proceed"), (2, "proceed")], "the new attempt passed the gate"
    task = ledger.task(handle.task_id)
    assert task is not None and task["status"] == "succeeded" and task["died"] == 1
