"""Property tests: compiled code agrees with the reference interpreter, and checking
never raises, whatever the input."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arbiter import check_sources, load_policy_from_sources
from arbiter.lang.exprcode import compile_expression
from arbiter.lang.nodes import (
    Between,
    Binary,
    Block,
    Call,
    Compare,
    Expr,
    IsNull,
    Let,
    ListExpr,
    Literal,
    Name,
    Path,
    Quantifier,
    Unary,
)
from arbiter.lang.parser import parse_expression
from arbiter.lang.unparse import unparse
from tests.lang.reference import evaluate

# --- generated facts -----------------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.0, 0.5, 1.0, -1.5, 2.25]),
    st.text(alphabet="ab1 .", max_size=3),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["x", "y"]), inner, max_size=2),
    ),
    max_leaves=6,
)
_facts = st.fixed_dictionaries(
    {
        "task": st.fixed_dictionaries(
            {"a": _values, "b": _values, "tags": _values, "m": _values},
        ),
        "budget": st.fixed_dictionaries({"daily_spend_usd": _values}),
    }
)

# --- generated expressions -----------------------------------------------------------

_P = (1, 1)
_paths = st.sampled_from(
    [
        Path(*_P, "task", ("a",), *_P),
        Path(*_P, "task", ("b",), *_P),
        Path(*_P, "task", ("tags",), *_P),
        Path(*_P, "task", ("m", "x"), *_P),
        Path(*_P, "task", ("missing",), *_P),
        Path(*_P, "budget", ("daily_spend_usd",), *_P),
    ]
)
_literals = st.builds(
    lambda v: Literal(*_P, v),
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-3, 3),
        st.sampled_from([0.5, 1.0, 2.25]),
        st.sampled_from(["a", "b1", "", "a.", "\\d", "(", '"q"']),
    ),
)
_COMPARE = ["==", "!=", "<", "<=", ">", ">=", "in", "not in", "contains", "not contains",
            "starts_with", "ends_with", "matches"]  # fmt: skip


def _expressions(var_names: tuple[str, ...] = ()) -> st.SearchStrategy[Expr]:
    leaves: list[st.SearchStrategy[Expr]] = [_literals, _paths]
    if var_names:
        leaves.append(st.sampled_from([Name(*_P, v) for v in var_names]))
        leaves.append(st.sampled_from([Path(*_P, v, ("x",), *_P) for v in var_names]))

    def extend(inner: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
        return st.one_of(
            st.builds(lambda o, a, b: Binary(*_P, o, a, b), st.sampled_from(["and", "or", "+", "-", "*", "/", "%"]), inner, inner),
            st.builds(lambda o, a, b: Compare(*_P, o, a, b), st.sampled_from(_COMPARE), inner, inner),
            st.builds(lambda o, a: Unary(*_P, o, a), st.sampled_from(["not", "-"]), inner),
            st.builds(lambda a, n: IsNull(*_P, a, n), inner, st.booleans()),
            st.builds(lambda a, lo, hi: Between(*_P, a, lo, hi), inner, inner, inner),
            st.builds(lambda items: ListExpr(*_P, tuple(items)), st.lists(inner, max_size=3)),
            st.builds(lambda f, a: Call(*_P, f, a), st.sampled_from(["count", "len", "sum", "min", "max", "avg"]), inner),
        )  # fmt: skip

    base = st.recursive(st.one_of(*leaves), extend, max_leaves=8)
    if len(var_names) >= 2:
        return base
    var = "v" if not var_names else "w"
    quantified = st.builds(
        lambda kind, items, let, body: Quantifier(
            *_P,
            kind,
            var,
            *_P,
            items,
            Block(*_P, (Let(*_P, "k", let),) if let is not None else (), body),
        ),
        st.sampled_from(["any", "all", "none"]),
        base,
        st.none() | _literals,
        st.deferred(lambda: _expressions((*var_names, var))),
    )
    return st.one_of(base, base, quantified)


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same types (so 1 and True, or 1 and 1.0, differ)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_expressions(), st.lists(_facts, min_size=1, max_size=4))
def test_compiled_agrees_with_reference(expr: Expr, facts_list: list[dict[str, Any]]) -> None:
    text = unparse(expr)
    parsed = parse_expression(text)  # the printed text parses back
    assert unparse(parsed) == text
    compiled = compile_expression(parsed)
    for facts in facts_list:
        want = evaluate(parsed, facts)
        got = compiled(facts)
        assert _same(got, want), f"{text} with {facts}: compiled {got!r}, reference {want!r}"


_WORDS = [
    "const", "segment", "rule", "strategy", "include", "returns", "priority", "kill_switch",
    "requires", "excludes", "when", "then", "otherwise", "else", "let", "and", "or", "not",
    "in", "contains", "matches", "between", "is", "null", "true", "false", "any", "all",
    "none", "R", "S", "X", "task", "budget", ".", "kind", "{", "}", "[", "]", "(", ")", ",",
    ":", "=", "==", "<", "+", "-", "/", "%", "1", "2.5", "5m", '"a"', '"("', "Deny", "Local",
    "Cloud", "Throttle", "Reroute", "model", "tier", "retry_after", "Route", "count", "#", "\n",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.text(max_size=200), st.lists(st.sampled_from(_WORDS), max_size=60).map(" ".join))
)
def test_check_never_raises(text: str) -> None:
    diagnostics = check_sources({"p.arb": text})
    for d in diagnostics:
        assert d.file == "p.arb" and d.line >= 1 and d.col >= 1 and d.message
    if not diagnostics:
        policy = load_policy_from_sources({"p.arb": text})
        policy.decide({"task": {"kind": "code"}})


_RULES = st.lists(
    st.sampled_from(
        [
            'rule R{i} {{ when {{ task.kind == "a" }} then Deny {{ }} }}',
            "rule R{i} priority {i} {{ when {{ task.n > {i} }} then Throttle {{ retry_after: {i}m }} otherwise Alert {{ }} }}",
            "rule R{i} {{ kill_switch when {{ true }} then Halt {{ }} }}",
            'rule R{i} {{ when {{ any t in task.tags {{ t == "x" }} }} then RequireApproval {{ }} }}',
            'rule R{i} {{ when {{ task.c == true }} then Reroute {{ tier: "local", model: "m" }} }}',
        ]
    ),
    max_size=8,
).map(lambda rs: "\n".join(r.format(i=i) for i, r in enumerate(rs)))


@settings(max_examples=150, deadline=None)
@given(
    _RULES,
    st.lists(_facts, max_size=3),
    st.dictionaries(st.sampled_from(["kind", "n", "tags", "c"]), _values),
)
def test_decide_never_raises(
    source: str, facts_list: list[dict[str, Any]], task: dict[str, Any]
) -> None:
    policy = load_policy_from_sources({"p.arb": source})
    for facts in [*facts_list, {"task": task}]:
        decision = policy.decide(facts)
        assert decision.verdict in {"proceed", "throttle", "approval", "deny", "halt"}
        decision.to_json()
