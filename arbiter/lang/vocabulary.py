"""The fixed words of the language: keywords, functions, fact roots and actions."""

from __future__ import annotations

from dataclasses import dataclass

KEYWORDS = frozenset(
    [
        "const",
        "segment",
        "rule",
        "strategy",
        "include",
        "returns",
        "priority",
        "kill_switch",
        "requires",
        "excludes",
        "when",
        "then",
        "otherwise",
        "else",
        "let",
        "and",
        "or",
        "not",
        "in",
        "contains",
        "starts_with",
        "ends_with",
        "matches",
        "between",
        "is",
        "null",
        "true",
        "false",
        "any",
        "all",
        "none",
    ]
)

FUNCTIONS = frozenset({"count", "len", "sum", "min", "max", "avg"})

# Fields of each fact root; ``None`` means open (any field may appear). ``route`` is
# closed in the spec but also carries every param of the chosen route, so any field goes.
FACT_ROOTS: dict[str, frozenset[str] | None] = {
    "task": None,
    "route": None,
    "budget": frozenset(
        {
            "daily_spend_usd",
            "monthly_spend_usd",
            "hourly_tokens",
            "daily_tokens",
            "daily_cloud_calls",
        }
    ),
    "research": frozenset({"cycles_today", "followups_today", "backlog", "escalations_today"}),
    "local": frozenset({"available", "models", "queue_depth"}),
    "cloud": frozenset({"providers", "queue_depth"}),
    "time": frozenset({"hour", "weekday", "date"}),
    # halted: scope "all" of the kill switch is on; halted_scopes: the scopes that are on.
    "system": frozenset({"halted", "halted_scopes", "policy_version"}),
}

# Verdicts, most severe first; a higher rank wins.
SEVERITY: dict[str, int] = {"halt": 4, "deny": 3, "approval": 2, "throttle": 1}

TIERS = ("local", "cloud")
DEFAULT_LOCAL_PROVIDER = "ollama"
DEFAULT_PRIORITY = 100


@dataclass(frozen=True, slots=True)
class ActionKind:
    """What a rule action means: its verdict and which params it takes."""

    verdict: str | None
    params: frozenset[str] | None  # None: any param goes
    required: tuple[str, ...] = ()
    reroute: bool = False


_HALT = ActionKind("halt", frozenset({"reason", "scope", "alert"}))

ACTIONS: dict[str, ActionKind] = {
    "Halt": _HALT,
    "HaltExecution": _HALT,
    "Deny": ActionKind("deny", frozenset({"reason"})),
    "RequireApproval": ActionKind("approval", frozenset({"reason", "approvers"})),
    "Throttle": ActionKind("throttle", frozenset({"retry_after", "reason"}), ("retry_after",)),
    "Reroute": ActionKind(None, None, ("tier", "model"), reroute=True),
    "Allow": ActionKind(None, None),
    "Alert": ActionKind(None, None),
}

# Route actions whose name implies the tier.
IMPLIED_TIER = {"Local": "local", "Cloud": "cloud"}
