"""The policy the gate tests race against, written in the policy language."""

from __future__ import annotations

from arbiter import Policy, load_policy_from_sources

CAP_POLICY = """
strategy Routing returns Route {
    when { task.confidential == true } then Local { model: "qwen2.5:14b" }
    when { task.kind == "unpriced" } then Cloud { provider: "openai", model: "gpt-9" }
    else Cloud { provider: "openai", model: "gpt-5.4-nano" }
}

rule DailyCap priority 10 {
    when { route.tier == "cloud" and budget.daily_spend_usd + route.estimated_cost_usd > CAP }
    then Deny { reason: "daily cap" }
}

rule Slow priority 20 {
    when { task.kind == "slow" } then Throttle { retry_after: 90s, reason: "slow lane" }
}

rule Review priority 30 {
    when { task.kind == "review" } then RequireApproval { reason: "a person reviews this" }
}
"""


def cap_policy(cap: float) -> Policy:
    """The policy above with its daily cap set to ``cap`` USD."""
    return load_policy_from_sources({"cap.arb": f"const CAP = {cap}\n" + CAP_POLICY})
