"""Publishing while workers run: the next task is decided under the new version with no
restart, a broken policy changes nothing, and a rollback restores the previous version.

Every process that admits tasks re-reads the active version every ``REFRESH_S``: this
test process (its submissions), the worker (its retries) and beat (its research topics),
all started before the new version was published.
"""

from __future__ import annotations

import getpass
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from arbiter.errors import TaskBlocked
from arbiter.policy_store import REFRESH_S
from tasks import submit
from tests.pipeline.conftest import Stack, wait_for

pytestmark = pytest.mark.e2e

LATER = """
rule LaterIsDenied priority 12 {
    when { "later" in task.tags or task.topic starts_with "later" }
    then Deny { reason: "v2 holds later work back" }
}
"""


def settle_in() -> None:
    """Wait out one refresh of every running gate (the reload needs no restart)."""
    time.sleep(REFRESH_S + 0.5)


def active(stack: Stack) -> str:
    record = stack.ledger.active_policy()
    assert record is not None
    return str(record.version)


def versions(stack: Stack, task_id: str) -> list[tuple[int, str, str | None]]:
    return [(d.attempt, d.verdict, d.policy_version) for d in stack.ledger.decisions(task_id)]


def beat_decision(stack: Stack, topic: str) -> Any:
    """Beat's decision on the research of ``topic`` (the assertion shows beat's log)."""

    def decided() -> Any:
        found = [d for d in stack.ledger.decisions() if d.facts["task"].get("topic") == topic]
        return found[0] if found else None

    try:
        return wait_for(decided, 60, f"beat to submit {topic!r}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; beat's log:\n{stack.log('beat')}") from None


def test_publish_while_workers_run_then_roll_back(
    redis_url: str, make_stack: Callable[..., Stack]
) -> None:
    stack = make_stack(redis_url)
    policy = stack.home / "rules" / "policy.arb"
    first = policy.read_text()
    published = stack.sovereign("rules", "publish")
    assert published.returncode == 0, published.stderr
    v1 = active(stack)
    stack.start_worker("local")
    stack.start("beat", "beat", "--loglevel", "INFO")

    # Version 1 everywhere: here, in the worker (the retry of a flaky call), and in beat.
    h1 = submit("classify", "FLAKY:1 sort these under v1", tags=["later"], app=stack.app)
    assert h1.result(timeout=60)["attempt"] == 2
    assert versions(stack, h1.task_id) == [(1, "proceed", v1), (2, "proceed", v1)]
    stack.ledger.add_topic("later: kerning tables under v1")
    early = beat_decision(stack, "later: kerning tables under v1")
    assert (early.verdict, early.policy_version) == ("proceed", v1)

    # Version 2 denies work tagged or titled "later"; nothing restarts.
    policy.write_text(first + LATER)
    published = stack.sovereign("rules", "publish")
    assert published.returncode == 0, published.stderr
    v2 = active(stack)
    assert v2 != v1 and f"policy {v2} is active" in published.stdout
    settle_in()
    with pytest.raises(TaskBlocked, match="v2 holds later work back") as blocked:
        submit("classify", "held back under v2", tags=["later"], app=stack.app)
    assert blocked.value.task_id is not None
    assert versions(stack, blocked.value.task_id) == [(1, "deny", v2)]
    h2 = submit("classify", "FLAKY:1 sort these under v2", app=stack.app)
    assert h2.result(timeout=60)["attempt"] == 2
    assert versions(stack, h2.task_id) == [(1, "proceed", v2), (2, "proceed", v2)]
    stack.ledger.add_topic("later: ligatures under v2")
    late = beat_decision(stack, "later: ligatures under v2")
    assert (late.verdict, late.decided_by, late.policy_version) == ("deny", "LaterIsDenied", v2)

    # A broken policy is refused with its problems, and version 2 stays.
    policy.write_text((first + LATER).replace("budget.daily_spend_usd", "budget.daly_spend_usd"))
    broken = stack.sovereign("rules", "publish")
    assert broken.returncode == 1 and broken.stdout == ""
    assert "Traceback" not in broken.stderr
    assert "policy.arb:" in broken.stderr and "error: unknown field" in broken.stderr.lower()
    assert (
        broken.stderr.strip()
        .splitlines()[-1]
        .endswith(f"nothing was published and policy {v2} stays active")
    )
    assert active(stack) == v2
    settle_in()
    with pytest.raises(TaskBlocked, match="v2 holds later work back"):
        submit("classify", "still held back", tags=["later"], app=stack.app)

    # Rollback: version 1 again, recorded as a new publication by this user.
    rolled = stack.sovereign("rules", "rollback")
    assert rolled.returncode == 0, rolled.stderr
    assert f"policy {v1} is active again (was {v2})" in rolled.stdout
    assert active(stack) == v1
    settle_in()
    h3 = submit("classify", "welcome back, later work", tags=["later"], app=stack.app)
    assert h3.result(timeout=60)["text"]
    assert versions(stack, h3.task_id) == [(1, "proceed", v1)]

    history = json.loads(stack.sovereign("rules", "history", "--json").stdout)
    assert [(h["version"], h["active"]) for h in history] == [(v1, True), (v2, False), (v1, False)]
    assert history[0]["published_by"] == getpass.getuser() and history[0]["republished"]
    diff = stack.sovereign("rules", "diff").stdout.splitlines()
    assert f"--- {v2}/policy.arb" in diff and f"+++ {v1}/policy.arb" in diff
    assert "-rule LaterIsDenied priority 12 {" in diff

    # And the blocked task explains itself under the version it was decided by.
    why = json.loads(stack.sovereign("why", blocked.value.task_id, "--json").stdout)
    (decision,) = why["decisions"]
    assert (decision["verdict"], decision["policy_version"]) == ("deny", v2)
    assert decision["fired"][0]["rule"] == "LaterIsDenied"
    assert decision["fired"][0]["source"].startswith("rule LaterIsDenied priority 12 {")
    assert "Traceback" not in stack.log("beat") and "Traceback" not in stack.log("local")
