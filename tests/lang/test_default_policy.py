"""The studio's default policy, rules/default.arb, decides as its comments say.

Each rule has cases where it fires, for the facts it was written for, and near misses
where it does not (one table, checked to cover every rule both ways). Where each kind of
task runs is the data case ``conformance/default_policy``; here, that every model the
policy names is priced and that the routing table covers every branch.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from arbiter import Policy, load_policy, load_policy_from_sources
from arbiter.ledger.prices import PriceTable

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "rules" / "default.arb"
ROUTES_CASE = Path(__file__).parent / "conformance" / "default_policy" / "runs.json"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(ROOT / "rules")


def facts(**groups: dict[str, Any]) -> dict[str, Any]:
    """An ordinary task on an ordinary day, with ``groups`` changing some facts."""
    base: dict[str, Any] = {
        "task": {
            "kind": "summarize",
            "source": "cli",
            "confidential": False,
            "depth": 0,
            "tags": [],
            "estimated_tokens": 1000,
            "max_tokens": 256,
            "local_confidence": None,
        },
        "budget": {
            "daily_spend_usd": 0,
            "monthly_spend_usd": 0,
            "hourly_tokens": 0,
            "daily_tokens": 0,
            "daily_cloud_calls": 0,
        },
        "research": {"cycles_today": 0, "followups_today": 0, "backlog": 0, "escalations_today": 0},
        "local": {"available": True, "models": []},
        "cloud": {"providers": ["openai", "anthropic"]},
        "system": {"halted": False},
    }
    for name, values in groups.items():
        base[name] = {**base.get(name, {}), **values}
    return base


def cost(route: dict[str, Any]) -> dict[str, Any]:
    """What the gate adds: a cloud call here reserves one cent."""
    return {"estimated_cost_usd": 0.01 if route["tier"] == "cloud" else 0.0}


@dataclass(frozen=True)
class Case:
    name: str
    facts: dict[str, Any]
    verdict: str
    fired: tuple[str, ...] = ()  # the rules that fire, in evaluation order
    waive: frozenset[str] = field(default_factory=frozenset)


DOCS = {"kind": "docs"}
RESEARCH = {"kind": "research"}
ESCALATION = {"kind": "research", "source": "escalation", "local_confidence": 0.3}

CASES = [
    Case("an ordinary local task", facts(), "proceed"),
    # KillSwitch
    Case("halted", facts(system={"halted": True}), "halt", ("KillSwitch",)),
    # CloudCircuitBreaker: the cent that would pass $20 halts cloud work...
    Case(
        "cloud past the daily cap",
        facts(task=DOCS, budget={"daily_spend_usd": 19.995}),
        "halt",
        ("CloudCircuitBreaker",),
    ),
    Case(
        "cloud just under the daily cap",
        facts(task=DOCS, budget={"daily_spend_usd": 19.98}),
        "proceed",
    ),
    # ... while local work goes on.
    Case("local work past the daily cap", facts(budget={"daily_spend_usd": 25}), "proceed"),
    # MonthlyCloudCap
    Case(
        "cloud past the monthly cap",
        facts(task=DOCS, budget={"monthly_spend_usd": 399.995, "daily_spend_usd": 1}),
        "deny",
        ("MonthlyCloudCap",),
    ),
    Case(
        "cloud under the monthly cap",
        facts(task=DOCS, budget={"monthly_spend_usd": 399.98}),
        "proceed",
    ),
    Case("local work past the monthly cap", facts(budget={"monthly_spend_usd": 900}), "proceed"),
    # HourlyTokens: 499,000 + 1,000 in + 256 out is past 500,000.
    Case(
        "past the hourly tokens",
        facts(budget={"hourly_tokens": 499_000}),
        "throttle",
        ("HourlyTokens",),
    ),
    Case("within the hourly tokens", facts(budget={"hourly_tokens": 498_000}), "proceed"),
    # ResearchDepth
    Case("research too deep", facts(task={**RESEARCH, "depth": 3}), "deny", ("ResearchDepth",)),
    Case("research at the depth cap", facts(task={**RESEARCH, "depth": 2}), "proceed"),
    Case("deep non-research", facts(task={"kind": "draft", "depth": 5}), "proceed"),
    # ResearchCyclesPerDay
    Case(
        "beat research at the cycle cap",
        facts(task={**RESEARCH, "source": "beat"}, research={"cycles_today": 200}),
        "deny",
        ("ResearchCyclesPerDay",),
    ),
    Case(
        "beat research under the cycle cap",
        facts(task={**RESEARCH, "source": "beat"}, research={"cycles_today": 199}),
        "proceed",
    ),
    Case(
        "a person's research past the cycle cap",
        facts(task=RESEARCH, research={"cycles_today": 500}),
        "proceed",
    ),
    # FollowupsPerDay
    Case(
        "a follow-up at the daily cap",
        facts(
            task={**RESEARCH, "source": "followup", "depth": 1}, research={"followups_today": 100}
        ),
        "deny",
        ("FollowupsPerDay",),
    ),
    Case(
        "a follow-up under the daily cap",
        facts(
            task={**RESEARCH, "source": "followup", "depth": 1}, research={"followups_today": 99}
        ),
        "proceed",
    ),
    Case(
        "beat research past the follow-up cap",
        facts(task={**RESEARCH, "source": "beat"}, research={"followups_today": 500}),
        "proceed",
    ),
    # EscalationsPerDay
    Case(
        "an escalation at the daily cap",
        facts(task=ESCALATION, research={"escalations_today": 50}),
        "deny",
        ("EscalationsPerDay",),
    ),
    Case(
        "an escalation under the daily cap",
        facts(task=ESCALATION, research={"escalations_today": 49}),
        "proceed",
    ),
    Case(
        "research past the escalation cap",
        facts(task=RESEARCH, research={"escalations_today": 80}),
        "proceed",
    ),
    # EscalateOnlyToTheFrontier
    Case("an unsure brief escalates", facts(task=ESCALATION), "proceed"),
    Case(
        "a brief confident enough is not escalated",
        facts(task={**ESCALATION, "local_confidence": 0.6}),
        "deny",
        ("EscalateOnlyToTheFrontier",),
    ),
    Case(
        "an escalation with no confidence given",
        facts(task={**ESCALATION, "local_confidence": None}),
        "deny",
        ("EscalateOnlyToTheFrontier",),
    ),
    Case(
        "an escalation with no Anthropic key",
        facts(task=ESCALATION, cloud={"providers": ["openai"]}),
        "deny",
        ("EscalateOnlyToTheFrontier",),
    ),
    Case(
        "a confidential escalation",
        facts(task={**ESCALATION, "confidential": True}),
        "deny",
        ("EscalateOnlyToTheFrontier",),
    ),
    # CommitNeedsApproval
    Case("a commit", facts(task={"kind": "commit"}), "approval", ("CommitNeedsApproval",)),
    Case(
        "a task tagged commit",
        facts(task={"tags": ["commit"]}),
        "approval",
        ("CommitNeedsApproval",),
    ),
    Case(
        "a commit a person approved",
        facts(task={"kind": "commit"}),
        "proceed",
        ("CommitNeedsApproval",),
        frozenset({"approval"}),
    ),
    Case("code is not a commit", facts(task={"kind": "code", "tags": ["patch"]}), "proceed"),
    # Several at once: the most severe verdict decides, every rule still fires.
    Case(
        "halted, over the cap and throttled",
        facts(
            task=DOCS,
            system={"halted": True},
            budget={"daily_spend_usd": 30, "hourly_tokens": 10**6},
        ),
        "halt",
        ("KillSwitch", "CloudCircuitBreaker", "HourlyTokens"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_rule(policy: Policy, case: Case) -> None:
    decision = policy.decide(case.facts, cost, waive=case.waive)
    assert decision.verdict == case.verdict
    assert tuple(f.rule for f in decision.fired) == case.fired
    if case.fired and case.verdict != "proceed":
        assert decision.decided_by == case.fired[0] and decision.reason


def rule_names() -> list[str]:
    return re.findall(r"^rule (\w+)", DEFAULT.read_text(encoding="utf-8"), flags=re.M)


def test_every_rule_fires_and_misses_in_the_table() -> None:
    fired = {rule for case in CASES for rule in case.fired}
    # KeepConfidentialLocal guards against edits of the strategy: tested below.
    assert fired | {"KeepConfidentialLocal"} == set(rule_names())
    for rule in rule_names():
        if rule == "KeepConfidentialLocal":
            continue
        misses = [c for c in CASES if rule not in c.fired and c.verdict == "proceed"]
        assert misses, f"{rule} has no case where it does not fire"


def test_the_daily_breaker_leaves_local_work_alone(policy: Policy) -> None:
    spent = facts(budget={"daily_spend_usd": 20, "monthly_spend_usd": 400})
    for kind in ("classify", "tag", "summarize", "research", "draft"):
        decision = policy.decide({**spent, "task": {**spent["task"], "kind": kind}}, cost)
        assert decision.verdict == "proceed" and decision.route is not None
        assert decision.route["tier"] == "local"
    halted = policy.decide({**spent, "task": {**spent["task"], "kind": "strategy"}}, cost)
    assert halted.verdict == "halt"
    assert [f.rule for f in halted.fired] == ["CloudCircuitBreaker", "MonthlyCloudCap"]
    assert halted.fired[0].params == {
        "scope": "cloud",
        "reason": "the daily cloud budget is spent",
        "alert": True,
    }


def test_confidential_work_comes_home_when_an_edit_sends_it_out() -> None:
    # A studio owner deletes the strategy's confidential branches: the rule still reroutes.
    text = DEFAULT.read_text(encoding="utf-8")
    edited = re.sub(r"    when segment Confidential.*?then Local \{[^}]*\}\n", "", text, flags=re.S)
    assert "when segment Confidential" not in edited.split("strategy Routing")[1].split("\n}\n")[0]
    policy = load_policy_from_sources({"default.arb": edited})
    decision = policy.decide(facts(task={"kind": "strategy", "confidential": True}), cost)
    assert [f.rule for f in decision.fired] == ["KeepConfidentialLocal"]
    assert decision.route == {"tier": "local", "provider": "local", "model": "qwen2.5:14b"}
    assert decision.candidate == "Cloud" and decision.verdict == "proceed"
    public = policy.decide(facts(task={"kind": "strategy"}), cost)
    assert public.fired == () and public.route is not None and public.route["tier"] == "cloud"


def test_every_cloud_model_has_a_price_and_an_output_limit(policy: Policy) -> None:
    prices = PriceTable.load(ROOT / "rules" / "prices.toml")
    runs = json.loads(ROUTES_CASE.read_text(encoding="utf-8"))
    cloud = {
        (r["expected"]["route"]["provider"], r["expected"]["route"]["model"])
        for r in runs
        if (r["expected"].get("route") or {}).get("tier") == "cloud"
    }
    assert cloud == {
        ("openai", "gpt-5.4"),
        ("openai", "gpt-5.4-mini"),
        ("anthropic", "claude-sonnet-4-6"),
        ("anthropic", "claude-opus-4-7"),
    }
    for provider, model in cloud:
        price = prices.price(provider, model, "cloud")
        assert price.max_output is not None and not price.free


def test_the_routing_table_takes_every_branch(policy: Policy) -> None:
    runs = json.loads(ROUTES_CASE.read_text(encoding="utf-8"))
    taken = set()
    for run in runs:
        decision = policy.decide(run["facts"])
        [chosen] = [s.check for s in decision.trace if s.check.startswith("strategy") and s.result]
        taken.add(chosen.split(":")[1].split("->")[0].strip())
    strategy = DEFAULT.read_text(encoding="utf-8").split("strategy Routing")[1].split("\n}\n")[0]
    branches = len(re.findall(r"^    when ", strategy, flags=re.M))
    assert taken == {f"when #{i}" for i in range(1, branches + 1)} | {"else"}


def test_the_walk_through_quotes_the_file() -> None:
    doc = (ROOT / "docs" / "policy-language.md").read_text(encoding="utf-8")
    section = doc.split("## The default policy, walked through")[1].split("\n## ")[0]
    source = DEFAULT.read_text(encoding="utf-8").splitlines()
    quoted = [
        line
        for block in re.findall(r"```text\n(.*?)```", section, flags=re.S)
        for line in block.splitlines()
        if not line.startswith(("$", "verdict:", "route:", "fired:"))
    ]
    assert len(quoted) >= 15
    for line in quoted:
        assert line in source, f"the walk-through quotes a line the policy lacks: {line!r}"
