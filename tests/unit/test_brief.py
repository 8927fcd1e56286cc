"""Research briefs: validation, the repair prompt, follow-up normalization, topic files,
and which refusals wait for the next day."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arbiter.errors import InputError
from arbiter.lang import load_policy_from_sources
from sovereign.commands.research import read_topics
from tasks.brief import (
    REPAIR_QUOTE_CHARS,
    InvalidBrief,
    normalize,
    parse_brief,
    repair_prompt,
    text_key,
)
from tasks.cycle import DAILY, MONTHLY, _admits
from tasks.research import escalate_below

GOOD = {
    "summary": "Bronze lasts.",
    "key_points": ["it patinates"],
    "confidence": 0.7,
    "follow_ups": ["Does it stain stone?"],
    "sources": ["notes/metals.md"],
}


def test_a_valid_brief_parses_from_text_a_fence_or_parsed_json() -> None:
    assert parse_brief(json.dumps(GOOD)).summary == "Bronze lasts."
    fenced = "```json\n" + json.dumps(GOOD) + "\n```"
    assert parse_brief(fenced).follow_ups == ["Does it stain stone?"]
    assert parse_brief("ignored", GOOD).confidence == 0.7


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ("Here is my brief, in prose.", "not valid JSON"),
        ("[1, 2]", "wants object"),
        (json.dumps({**GOOD, "confidence": 1.5}), "confidence"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "summary"}), "summary"),
        (json.dumps({**GOOD, "summary": "   "}), "summary"),
        (json.dumps({**GOOD, "verdict": "yes"}), "verdict"),
        (json.dumps({**GOOD, "key_points": "one"}), "key_points"),
    ],
)
def test_an_invalid_brief_says_what_is_wrong(answer: str, problem: str) -> None:
    with pytest.raises(InvalidBrief) as bad:
        parse_brief(answer)
    assert problem in bad.value.problem


def test_the_repair_prompt_quotes_a_bounded_part_of_the_answer() -> None:
    huge = "x" * (REPAIR_QUOTE_CHARS * 3)
    prompt = repair_prompt("bronze", huge, "not valid JSON")
    assert "bronze" in prompt and "not valid JSON" in prompt
    assert len(prompt) < REPAIR_QUOTE_CHARS + 1000


def test_followups_are_normalized_for_comparison() -> None:
    assert normalize("  Which  fonts\n suit signs?? ") == "Which fonts suit signs"
    assert text_key("WHICH fonts suit signs!") == text_key("which fonts  suit signs")
    assert text_key("which fonts suit signs") != text_key("which fonts suit maps")


def test_a_topic_file_skips_blanks_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "topics.txt"
    path.write_text("# mine\n\n  one   topic \ntwo\n", encoding="utf-8")
    assert read_topics(path) == ["one topic", "two"]
    path.write_bytes(b"caf\xe9\n")
    with pytest.raises(InputError, match="not UTF-8"):
        read_topics(path)
    path.write_text("# only a comment\n", encoding="utf-8")
    with pytest.raises(InputError, match="no topic"):
        read_topics(path)
    with pytest.raises(InputError, match="cannot read"):
        read_topics(tmp_path / "missing.txt")


POLICY = """
const ESCALATE_BELOW = 0.45
strategy Routing returns Route {
    when { task.kind == "x" } then Local { model: "x" }
    else Local { model: "m" }
}
rule DailyCap {
    when { budget.daily_spend_usd + route.estimated_cost_usd > 1 } then Deny {}
}
rule Cycles { when { research.cycles_today >= 10 } then Deny {} }
rule Monthly { when { budget.monthly_spend_usd > 20 } then Deny {} }
rule Depth { when { task.depth > 2 } then Deny {} }
"""


def facts(**over: dict[str, object]) -> dict[str, object]:
    base: dict[str, dict[str, object]] = {
        "task": {"kind": "research", "depth": 0},
        "budget": {"daily_spend_usd": 0.0, "monthly_spend_usd": 0.0},
        "research": {"cycles_today": 0},
        "route": {"tier": "local", "estimated_cost_usd": 0.5},
    }
    for root, values in over.items():
        base[root] = {**base[root], **values}
    return dict(base)


def test_a_refusal_waits_for_the_day_or_month_that_lifts_it() -> None:
    policy = load_policy_from_sources({"p.arb": POLICY})
    daily = facts(budget={"daily_spend_usd": 0.9})
    assert policy.decide(daily, enrich=lambda _: {"estimated_cost_usd": 0.5}).verdict == "deny"
    assert _admits(policy, daily, DAILY), "a daily cap lifts tomorrow"
    assert _admits(policy, facts(research={"cycles_today": 10}), DAILY)
    monthly = facts(budget={"monthly_spend_usd": 25.0})
    assert not _admits(policy, monthly, DAILY)
    assert _admits(policy, monthly, {**DAILY, **MONTHLY}), "a monthly cap lifts next month"
    deep = facts(task={"kind": "research", "depth": 3})
    assert not _admits(policy, deep, {**DAILY, **MONTHLY}), "a depth cap never lifts"


def test_the_escalation_threshold_is_the_policys_constant() -> None:
    assert escalate_below(load_policy_from_sources({"p.arb": POLICY})) == 0.45
    plain = "rule A { when { true } then Allow {} }"
    assert escalate_below(load_policy_from_sources({"p.arb": plain})) is None
