"""The studio's default policy, rules/default.arb, decides as its comments say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from arbiter import Policy, load_policy

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(ROOT / "rules")


def facts(**groups: dict[str, Any]) -> dict[str, Any]:
    base: dict[str, Any] = {
        "task": {
            "kind": "code",
            "estimated_tokens": 1000,
            "local_confidence": 0.9,
            "tags": [],
            "source": "cli",
        },
        "budget": {
            "daily_spend_usd": 0,
            "monthly_spend_usd": 0,
            "hourly_tokens": 0,
            "daily_cloud_calls": 0,
        },
        "research": {"cycles_today": 0, "followups_today": 0},
        "local": {"available": True},
        "cloud": {"providers": ["openai", "anthropic"]},
        "system": {"halted": False},
    }
    for name, values in groups.items():
        base[name] = {**base.get(name, {}), **values}
    return base


def cost(route: dict[str, Any]) -> dict[str, Any]:
    return {"estimated_cost_usd": 0.01 if route["tier"] == "cloud" else 0.0}


def test_routes(policy: Policy) -> None:
    local = policy.decide(facts())
    assert local.route == {"tier": "local", "provider": "local", "model": "smollm2-135m"}
    research = policy.decide(facts(task={"kind": "deep_research"}))
    assert research.route == {
        "tier": "cloud",
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
    }
    unsure = policy.decide(facts(task={"local_confidence": 0.3}), cost)
    assert unsure.route is not None and unsure.route["provider"] == "openai"
    assert [f.rule for f in unsure.fired] == ["LowConfidenceEscalation"]
    down = policy.decide(facts(local={"available": False}))
    assert down.route == {"tier": "cloud", "provider": "openai", "model": "gpt-5.4-mini"}
    secret = policy.decide(
        facts(task={"confidential": True, "kind": "strategy"}, local={"available": False})
    )
    assert secret.route is not None and secret.route["tier"] == "local"


def test_caps(policy: Policy) -> None:
    assert policy.decide(facts(system={"halted": True})).verdict == "halt"
    spent = policy.decide(facts(task={"kind": "strategy"}, budget={"daily_spend_usd": 4.995}), cost)
    assert (spent.verdict, spent.decided_by) == ("deny", "DailySpendCap")
    # The daily cap does not stop local work.
    assert policy.decide(facts(budget={"daily_spend_usd": 50}), cost).verdict == "proceed"
    month = policy.decide(facts(task={"kind": "strategy"}, budget={"monthly_spend_usd": 60}), cost)
    assert month.decided_by == "MonthlySpendCap"
    calls = policy.decide(facts(task={"kind": "strategy"}, budget={"daily_cloud_calls": 500}), cost)
    assert calls.decided_by == "DailyCloudCalls"
    busy = policy.decide(facts(budget={"hourly_tokens": 199_500}))
    assert (busy.verdict, busy.retry_after_s) == ("throttle", 300)


def test_research_limits(policy: Policy) -> None:
    deep = policy.decide(facts(task={"kind": "research", "depth": 3}))
    assert deep.decided_by == "ResearchDepth"
    beat = policy.decide(
        facts(task={"kind": "research", "source": "beat"}, research={"cycles_today": 200})
    )
    assert beat.decided_by == "ResearchCyclesPerDay"
    # Cycles only cap the beat; a person's research request still runs.
    assert (
        policy.decide(facts(task={"kind": "research"}, research={"cycles_today": 500})).verdict
        == "proceed"
    )
    more = policy.decide(
        facts(task={"kind": "research", "source": "followup"}, research={"followups_today": 100})
    )
    assert more.decided_by == "FollowupsPerDay"


def test_commit_needs_approval(policy: Policy) -> None:
    decision = policy.decide(facts(task={"tags": ["commit"]}))
    assert (decision.verdict, decision.decided_by) == ("approval", "CommitNeedsApproval")
    assert policy.decide(facts(task={"tags": ["commit"]}), waive={"approval"}).verdict == "proceed"
