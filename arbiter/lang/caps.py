"""The caps a policy enforces, read from its rules: no second configuration of limits.

A cap is a rule whose condition compares a ``budget`` fact (alone, or plus other terms such
as ``route.estimated_cost_usd``) against a constant: ``budget.daily_spend_usd +
route.estimated_cost_usd > DAILY_CAP_USD`` is a cap of ``DAILY_CAP_USD`` on
``daily_spend_usd``. Only the top-level ``and`` terms of the condition (its segment's too)
count; a rule that also tests ``route.tier == "cloud"`` caps cloud work alone. The status
screen, the spend chart and the alerts all read their limits from here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

from arbiter.lang.checker import CheckedPolicy, check_decls
from arbiter.lang.exprcode import flatten, fold
from arbiter.lang.nodes import Binary, Compare, Cond, Expr, Path
from arbiter.lang.sources import load_mapping
from arbiter.lang.vocabulary import ACTIONS

BUDGET = "budget"
_ORDER = ("<", "<=", ">", ">=")
_MIRROR = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}


@dataclass(frozen=True, slots=True)
class Cap:
    """One limit a rule enforces on a budget fact."""

    rule: str
    fact: str  # a field of ``budget``, e.g. "daily_spend_usd"
    limit: float
    op: str  # the comparison as read with the fact on the left: ">" means "over the limit"
    action: str  # the rule's ``then`` action, e.g. "Deny"
    verdict: str | None  # what the action does ("deny", "halt", "throttle"), None for Alert
    tier: str | None  # "cloud" when the rule applies to one tier only

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def caps_of(checked: CheckedPolicy) -> list[Cap]:
    """Every cap of a checked policy, in rule evaluation order (kill-switched rules skipped)."""
    found: list[Cap] = []
    for entry in checked.rules:
        rule = entry.rule
        if any(m.kind == "kill_switch" for m in rule.modifiers):
            continue
        terms = list(_terms(rule.cond, checked))
        tier = _tier(terms, checked)
        kind = ACTIONS.get(rule.then.name)
        verdict = kind.verdict if kind is not None else None
        for term in terms:
            cap = _cap(term, checked)
            if cap is not None:
                fact, limit, op = cap
                found.append(Cap(rule.name, fact, limit, op, rule.then.name, verdict, tier))
    return found


@lru_cache(maxsize=16)
def _caps_cached(items: tuple[tuple[str, str], ...]) -> tuple[Cap, ...]:
    loaded = load_mapping(dict(items))
    checked, diagnostics = check_decls(loaded.files, loaded.decls)
    if diagnostics or loaded.diagnostics:
        return ()
    return tuple(caps_of(checked))


def policy_caps(sources: Mapping[str, str]) -> list[Cap]:
    """The caps of a policy given by its sources (``Policy.sources``); [] when it does not
    check. Parsed once per distinct policy."""
    return list(_caps_cached(tuple(sorted(sources.items()))))


def cap_rules(sources: Mapping[str, str]) -> frozenset[str]:
    """Names of the rules that compare a budget fact against a constant."""
    return frozenset(c.rule for c in policy_caps(sources))


def limit_of(
    caps: list[Cap], fact: str, verdicts: tuple[str, ...] = ("deny", "halt")
) -> Cap | None:
    """The tightest cap on ``fact`` among rules with one of ``verdicts`` (None: uncapped)."""
    matching = [c for c in caps if c.fact == fact and c.verdict in verdicts]
    return min(matching, key=lambda c: c.limit, default=None)


def _terms(cond: Cond, checked: CheckedPolicy) -> Iterator[Expr]:
    if cond.segment is not None:
        segment = checked.segments.get(cond.segment)
        if segment is not None:
            yield from flatten(segment.block.expr, "and")
    if cond.block is not None:
        yield from flatten(cond.block.expr, "and")


def _budget_fact(expr: Expr) -> str | None:
    """The budget field ``expr`` is (or sums with other terms), else None."""
    if isinstance(expr, Path):
        if expr.root == BUDGET and len(expr.fields) == 1:
            return expr.fields[0]
        return None
    if isinstance(expr, Binary) and expr.op == "+":
        for term in flatten(expr, "+"):
            found = _budget_fact(term)
            if found is not None:
                return found
    return None


def _cap(term: Expr, checked: CheckedPolicy) -> tuple[str, float, str] | None:
    if not isinstance(term, Compare) or term.op not in _ORDER:
        return None
    for fact_side, limit_side, op in (
        (term.left, term.right, term.op),
        (term.right, term.left, _MIRROR[term.op]),
    ):
        fact = _budget_fact(fact_side)
        if fact is None:
            continue
        ok, value = fold(limit_side, checked.consts)
        if ok and type(value) in (int, float):
            # A count stays an int (a token cap of 100,000 is not 100,000.0).
            return fact, value, op
    return None


def _tier(terms: list[Expr], checked: CheckedPolicy) -> str | None:
    for term in terms:
        if not isinstance(term, Compare) or term.op != "==":
            continue
        for path, other in ((term.left, term.right), (term.right, term.left)):
            if isinstance(path, Path) and path.root == "route" and path.fields == ("tier",):
                ok, value = fold(other, checked.consts)
                if ok and isinstance(value, str):
                    return value
    return None
