"""Bad input gets one sentence naming the fix, and loses nothing already queued or recorded."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from tests.pipeline.conftest import Stack

pytestmark = pytest.mark.e2e


def one_sentence(result: object) -> str:
    """The error output: exactly one line, no traceback."""
    out = (result.stdout + result.stderr).strip()  # type: ignore[attr-defined]
    assert "Traceback" not in out, out
    assert len(out.splitlines()) == 1, out
    return out


def queued(url: str) -> dict[str, int]:
    client = redis.Redis.from_url(url)
    return {q: int(client.llen(q)) for q in ("local", "cloud", "control")}


@pytest.fixture
def stack(redis_url: str, make_stack: Callable[..., Stack]) -> Stack:
    """A stack with one task already queued (no worker runs, so it stays queued)."""
    stack = make_stack(redis_url)
    first = stack.sovereign("enqueue", "classify", "already queued work", "--json")
    assert first.returncode == 0, first.stderr
    assert queued(redis_url)["local"] == 1
    return stack


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (("enqueue", "translate", "hola"), "unknown task kind 'translate'; use one of:"),
        (("enqueue", "classify", "   "), "the prompt is empty"),
        (("enqueue", "classify", "x" * 50), "over the limit of 20"),
    ],
)
def test_refused_before_anything_is_queued(
    stack: Stack, redis_url: str, args: tuple[str, ...], expect: str
) -> None:
    stack.configure(max_prompt_chars="20")
    before = len(stack.ledger.decisions())
    result = stack.sovereign(*args)
    assert result.returncode == 1
    assert expect in one_sentence(result)
    assert queued(redis_url)["local"] == 1, "what was queued is still queued"
    assert len(stack.ledger.decisions()) == before, "nothing new was decided"


def test_broker_that_does_not_answer(stack: Stack, redis_url: str) -> None:
    held_before = stack.ledger.budget_facts()["daily_tokens"]
    recorded = len(stack.ledger.decisions())
    stack.configure(broker_url="redis://127.0.0.1:1/0")
    result = stack.sovereign("enqueue", "classify", "hello", timeout=120)
    assert result.returncode == 1
    assert "broker" in one_sentence(result)
    stack.configure(broker_url=redis_url)
    assert queued(redis_url)["local"] == 1, "what was queued is still queued"
    assert len(stack.ledger.decisions()) == recorded, "nothing was decided for it"
    # A publish that failed released its own reservation: the budget holds what it held.
    assert stack.ledger.budget_facts()["daily_tokens"] == held_before


def test_policy_that_does_not_check_stops_start_up(stack: Stack) -> None:
    policy = stack.home / "rules" / "policy.arb"
    policy.write_text(
        policy.read_text() + "\nrule Broken { when { budget.daly_spend_usd > 1 } then Deny {} }\n"
    )
    for command in (("up", "--no-flower"), ("worker", "local")):
        result = stack.sovereign(*command, timeout=60)
        assert result.returncode == 1, result.stdout
        out = result.stdout + result.stderr
        assert "Traceback" not in out
        assert f"{policy}:" in out or "policy.arb:" in out
        assert "daly_spend_usd" in out
