"""The public API: loading, sources, versions, route candidates, decisions, errors."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from arbiter import (
    Decision,
    Diagnostic,
    PolicyError,
    check,
    check_sources,
    load_policy,
    load_policy_from_sources,
)

ROUTING = """
const M = "smollm2-135m"
strategy Routing returns Route {
    when { task.kind == "strategy" } then Cloud { provider: "anthropic", model: "claude-sonnet-4-5" }
    when { task.kind == "x" } then Local { model: task.model }
    else Local { model: M, queue: "gpu" }
}
"""


def test_importing_arbiter_stays_light() -> None:
    code = "import sys, arbiter, arbiter.errors; print(sorted(m for m in ('lark', 'sqlalchemy', 'celery') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_directory_sources_version_and_round_trip(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "main.arb").write_text(ROUTING + 'include "sub/rules.arb"\n')
    (tmp_path / "sub" / "rules.arb").write_text("rule R { when { true } then Alert { } }\n")
    (tmp_path / "notes.txt").write_text("not a policy")
    policy = load_policy(tmp_path)
    assert set(policy.sources) == {"main.arb", "sub/rules.arb"}
    assert len(policy.version) == 12
    again = load_policy_from_sources(policy.sources)
    assert again.version == policy.version
    assert again.decide({"task": {"kind": "strategy"}}) == policy.decide(
        {"task": {"kind": "strategy"}}
    )
    (tmp_path / "sub" / "rules.arb").write_text("rule R { when { false } then Alert { } }\n")
    assert load_policy(tmp_path).version != policy.version


def test_route_candidates() -> None:
    policy = load_policy_from_sources({"p.arb": ROUTING})
    assert policy.route_candidates == [
        {"action": "Cloud", "tier": "cloud", "provider": "anthropic", "model": "claude-sonnet-4-5",
         "params": {"provider": "anthropic", "model": "claude-sonnet-4-5"}},
        {"action": "Local", "tier": "local", "provider": "ollama", "model": None, "params": {}},
        {"action": "Local", "tier": "local", "provider": "ollama", "model": "smollm2-135m",
         "params": {"model": "smollm2-135m", "queue": "gpu"}},
    ]  # fmt: skip
    assert (
        load_policy_from_sources(
            {"p.arb": "rule R { when { true } then Allow { } }"}
        ).route_candidates
        == []
    )


def test_includes_inside_a_mapping() -> None:
    sources = {
        "a/main.arb": 'include "../lib/x.arb"\nrule Main { when { true } then Deny { } }',
        "lib/x.arb": 'rule X priority 1 { when { true } then Deny { reason: CAP } }\nconst CAP = "capped"',
    }
    decision = load_policy_from_sources(sources).decide({})
    assert (decision.decided_by, decision.reason) == ("X", "capped")
    problems = check_sources({"main.arb": 'include "gone.arb"'})
    assert [p.format() for p in problems] == [
        "main.arb:1:9: error: cannot include `gone.arb`: no such file (include paths are relative to the including file)"
    ]


def test_policy_error_lists_every_problem(tmp_path: Path) -> None:
    (tmp_path / "a.arb").write_text("rule A { when { x } then Deny { } }\n")
    (tmp_path / "b.arb").write_text("rule B { when { ) } then Deny { } }\n")
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path)
    assert [(Path(d.file).name, d.line, d.col) for d in info.value.diagnostics] == [
        ("a.arb", 1, 17),
        ("b.arb", 1, 17),
    ]
    assert str(info.value).splitlines()[0] == f"{tmp_path / 'a.arb'}:1:17: error: unknown name `x`"


def test_missing_and_empty_paths(tmp_path: Path) -> None:
    assert [d.message for d in check(tmp_path / "none.arb")] == [
        "cannot read this file: no such file"
    ]
    assert [d.message for d in check(tmp_path)] == ["no .arb files in this directory"]


def test_diagnostic_format_and_caret() -> None:
    d = Diagnostic("p.arb", 2, 5, "unknown name `x`")
    assert d.format() == "p.arb:2:5: error: unknown name `x`" == str(d)
    assert d.render("line one\nabc xyz\n").splitlines() == [d.format(), "    abc xyz", "        ^"]


def test_decision_is_frozen_and_serialises() -> None:
    policy = load_policy_from_sources(
        {"p.arb": ROUTING + "rule T { when { true } then Throttle { retry_after: 2m } }"}
    )
    decision = policy.decide({"task": {"kind": "strategy"}})
    assert isinstance(decision, Decision) and dataclasses.is_dataclass(decision)
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.verdict = "proceed"  # type: ignore[misc]
    data = json.loads(decision.to_json())
    assert data == decision.to_dict()
    assert list(data) == [
        "verdict",
        "route",
        "candidate",
        "decided_by",
        "reason",
        "retry_after_s",
        "fired",
        "trace",
    ]
    assert data["retry_after_s"] == 120
    assert "retry_after_s" not in load_policy_from_sources({"p.arb": ROUTING}).decide({}).to_dict()


def test_enrich_receives_a_copy_of_the_route() -> None:
    policy = load_policy_from_sources(
        {"p.arb": ROUTING + "rule Dear { when { route.estimated_cost_usd > 1 } then Deny { } }"}
    )
    seen: list[dict[str, Any]] = []

    def enrich(route: dict[str, Any]) -> dict[str, Any]:
        seen.append(route)
        route["model"] = "tampered"
        return {"estimated_cost_usd": 2}

    decision = policy.decide({"task": {"kind": "strategy"}}, enrich)
    assert decision.verdict == "deny"
    assert seen[0]["tier"] == "cloud"
    assert decision.route is not None and decision.route["model"] == "claude-sonnet-4-5"


def test_facts_must_be_a_mapping() -> None:
    policy = load_policy_from_sources({"p.arb": ROUTING})
    with pytest.raises(TypeError):
        policy.decide([])  # type: ignore[arg-type]


def test_decimal_money_compares_by_value() -> None:
    from decimal import Decimal

    policy = load_policy_from_sources(
        {"p.arb": "rule Cap { when { budget.daily_spend_usd + 0.5 > 5 } then Deny { } }"}
    )
    assert policy.decide({"budget": {"daily_spend_usd": Decimal("4.75")}}).verdict == "deny"
    assert policy.decide({"budget": {"daily_spend_usd": Decimal("4.25")}}).verdict == "proceed"


def test_large_policies_compile_in_chunks() -> None:
    rules = "\n".join(
        f'rule R{i} {{ {"requires R0 " if i == 400 else ""}when {{ task.n == {i} }} then Deny {{ reason: "r{i}" }} }}'
        for i in range(401)
    )
    policy = load_policy_from_sources({"p.arb": rules})
    assert policy.decide({"task": {"n": 250}}).reason == "r250"
    assert policy.decide({"task": {"n": 400}}).verdict == "proceed"  # R400 requires R0
    assert len(policy.decide({}).trace) == 401
