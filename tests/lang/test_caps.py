"""The caps a policy enforces are read from its rules, not from a second configuration."""

from __future__ import annotations

from arbiter.lang.caps import limit_of, policy_caps

POLICY = """
const DAILY = 5.00
const HOURLY = 200_000

rule DailyCap priority 20 {
    when { route.tier == "cloud" and budget.daily_spend_usd + route.estimated_cost_usd > DAILY }
    then Deny { reason: "the daily cloud budget is spent" }
}
rule MonthlyCap {
    when { 60 < budget.monthly_spend_usd }
    then Halt { reason: "month spent" }
}
rule Tokens { when { budget.hourly_tokens + task.estimated_tokens > HOURLY } then Throttle { retry_after: 5m } }
rule Off { kill_switch when { budget.daily_tokens > 10 } then Deny {} }
rule NotACap { when { task.depth > 2 } then Deny {} }
rule Computed { when { budget.daily_cloud_calls >= task.depth } then Deny {} }
rule Noted { when { budget.daily_spend_usd > DAILY * 0.8 } then Alert { message: "80%" } }
rule Tighter { when { budget.daily_spend_usd >= 3 } then Deny {} }
"""


def test_caps_are_the_rules_comparing_a_budget_fact_with_a_constant() -> None:
    caps = {c.rule: c for c in policy_caps({"p.arb": POLICY})}
    assert set(caps) == {"DailyCap", "MonthlyCap", "Tokens", "Noted", "Tighter"}
    daily = caps["DailyCap"]
    assert (daily.fact, daily.limit, daily.op, daily.verdict, daily.tier) == (
        "daily_spend_usd", 5.0, ">", "deny", "cloud",
    )  # fmt: skip
    # Written the other way round, it reads with the fact on the left.
    month = caps["MonthlyCap"]
    assert (month.fact, month.limit, month.op, month.verdict) == (
        "monthly_spend_usd",
        60,
        ">",
        "halt",
    )
    assert caps["Tokens"].verdict == "throttle" and caps["Tokens"].limit == 200_000
    assert caps["Noted"].limit == 4.0 and caps["Noted"].verdict is None


def test_the_tightest_enforcing_cap_is_the_limit() -> None:
    caps = policy_caps({"p.arb": POLICY})
    assert limit_of(caps, "daily_spend_usd").rule == "Tighter"  # type: ignore[union-attr]
    assert limit_of(caps, "hourly_tokens") is None  # a throttle is not a refusal
    assert limit_of(caps, "hourly_tokens", ("throttle",)).limit == 200_000  # type: ignore[union-attr]


def test_a_policy_that_does_not_check_has_no_caps() -> None:
    assert policy_caps({"p.arb": "rule X { when { budget.nope > 1 } then Deny {} }"}) == []


def test_segments_count_as_part_of_the_condition() -> None:
    policy = """
    segment Cloud { route.tier == "cloud" }
    rule CloudCalls { when segment Cloud { budget.daily_cloud_calls >= 500 } then Deny {} }
    """
    (cap,) = policy_caps({"p.arb": policy})
    assert (cap.rule, cap.fact, cap.limit, cap.op, cap.tier) == (
        "CloudCalls", "daily_cloud_calls", 500, ">=", "cloud",
    )  # fmt: skip
