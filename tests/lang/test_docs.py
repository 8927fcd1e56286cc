"""Every ```arb example in docs/policy-language.md checks, and the worked examples do
what the text says they do."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from arbiter import Policy, check_sources, load_policy_from_sources

DOC = Path(__file__).resolve().parents[2] / "docs" / "policy-language.md"
BLOCKS = re.findall(r"```arb\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_doc_has_examples() -> None:
    assert len(BLOCKS) >= 10


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_example_checks(index: int) -> None:
    assert check_sources({f"example{index}.arb": BLOCKS[index]}) == []


def _example(marker: str) -> Policy:
    [text] = [b for b in BLOCKS if marker in b]
    return load_policy_from_sources({"example.arb": text})


def test_circuit_breaker_example() -> None:
    policy = _example("rule DailySpendCap priority 20")
    cloud = {"tier": "cloud", "estimated_cost_usd": 0.5}
    over = policy.decide({"budget": {"daily_spend_usd": 4.8}, "route": cloud})
    assert (over.verdict, over.decided_by) == ("deny", "DailySpendCap")
    assert policy.decide({"budget": {"daily_spend_usd": 1.0}, "route": cloud}).verdict == "proceed"
    local = {"tier": "local", "estimated_cost_usd": 0.5}
    assert policy.decide({"budget": {"daily_spend_usd": 9.0}, "route": local}).verdict == "proceed"


def test_hourly_throttle_example() -> None:
    policy = _example("rule HourlyTokens priority 30")
    decision = policy.decide(
        {"budget": {"hourly_tokens": 199_000}, "task": {"estimated_tokens": 2_000}}
    )
    assert (decision.verdict, decision.retry_after_s) == ("throttle", 300)


def test_escalation_example() -> None:
    policy = _example("rule LowConfidenceEscalation")
    unsure = policy.decide({"task": {"kind": "code", "local_confidence": 0.2}})
    assert unsure.route == {"tier": "cloud", "provider": "openai", "model": "gpt-5.4-mini"}
    assert [f.action for f in unsure.fired] == ["Alert"]
    sure = policy.decide({"task": {"kind": "code", "local_confidence": 0.9}})
    assert sure.route is not None and sure.route["tier"] == "local" and sure.fired == ()


def test_confidential_example() -> None:
    policy = _example("rule KeepConfidentialLocal")
    decision = policy.decide({"task": {"confidential": True}})
    assert decision.route is not None and decision.route["tier"] == "local"
    # Had the route been cloud, the rule would bring it home.
    assert policy.decide({"task": {"confidential": False}}).route == {
        "tier": "cloud",
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
    }


def test_commit_approval_example() -> None:
    policy = _example("rule CommitNeedsApproval")
    assert policy.decide({"task": {"tags": ["commit"]}}).verdict == "approval"
    assert policy.decide({"task": {"kind": "commit"}}).verdict == "approval"
    assert policy.decide({"task": {"kind": "code", "tags": []}}).verdict == "proceed"
    assert policy.decide({"task": {"tags": ["commit"]}}, waive={"approval"}).verdict == "proceed"
