"""A plain tree-walking interpreter of `.arb` expressions, written straight from the
spec's operator table. The compiled code must agree with it on every input; it is slow
and is used only by the tests."""

from __future__ import annotations

import re
from typing import Any

from arbiter.lang.nodes import (
    Between,
    Binary,
    Block,
    Call,
    Compare,
    Expr,
    IsNull,
    ListExpr,
    Literal,
    Name,
    Path,
    Quantifier,
    Unary,
)


def is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def equal(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if is_number(a) and is_number(b):
        return bool(a == b)
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    return False


def _ordered(a: Any, b: Any) -> bool:
    return (is_number(a) and is_number(b)) or (isinstance(a, str) and isinstance(b, str))


def _arith(op: str, a: Any, b: Any) -> Any:
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        return a + b
    if not (is_number(a) and is_number(b)):
        return None
    if op in "/%" and b == 0:
        return None
    try:
        return (
            {"+": a + b, "-": a - b, "*": a * b}[op]
            if op in "+-*"
            else (a / b if op == "/" else a % b)
        )
    except OverflowError:
        return None


def _member(a: Any, b: Any) -> bool:
    if isinstance(b, list):
        return any(equal(a, e) for e in b)
    if isinstance(a, str) and isinstance(b, str):
        return a in b
    return False


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "==":
        return equal(a, b)
    if op == "!=":
        return not equal(a, b)
    if op in ("<", "<=", ">", ">="):
        if not _ordered(a, b):
            return False
        return bool({"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op])
    if op == "in":
        return _member(a, b)
    if op == "not in":
        return not _member(a, b)
    if op == "contains":
        return _member(b, a)
    if op == "not contains":
        return not _member(b, a)
    if op in ("starts_with", "ends_with"):
        if not (isinstance(a, str) and isinstance(b, str)):
            return False
        return a.startswith(b) if op == "starts_with" else a.endswith(b)
    if op == "matches":
        if not (isinstance(a, str) and isinstance(b, str)):
            return False
        try:
            return re.search(b, a) is not None
        except re.error:
            return False
    raise AssertionError(op)


def _numbers(x: Any) -> list[Any]:
    return [e for e in x if is_number(e)] if isinstance(x, list) else []


def _call(func: str, x: Any) -> Any:
    if func in ("count", "len"):
        return len(x) if isinstance(x, (list, str)) else 0
    ns = _numbers(x)
    if func == "sum":
        return sum(ns)
    if not ns:
        return None
    if func == "min":
        return min(ns)
    if func == "max":
        return max(ns)
    return sum(ns) / len(ns)


def evaluate(
    e: Expr,
    facts: dict[str, Any],
    scope: dict[str, Any] | None = None,
    consts: dict[str, Any] | None = None,
) -> Any:
    """The value of ``e`` for ``facts``."""
    scope = scope or {}
    if isinstance(e, Literal):
        return e.value
    if isinstance(e, Name):
        return scope[e.name] if e.name in scope else (consts or {}).get(e.name)
    if isinstance(e, Path):
        value: Any = scope[e.root] if e.root in scope else facts.get(e.root)
        for field in e.fields:
            value = value.get(field) if isinstance(value, dict) else None
        return value
    if isinstance(e, ListExpr):
        return [evaluate(i, facts, scope, consts) for i in e.items]
    if isinstance(e, Unary):
        x = evaluate(e.operand, facts, scope, consts)
        if e.op == "not":
            return x is not True
        return -x if is_number(x) else None
    if isinstance(e, Binary):
        left = evaluate(e.left, facts, scope, consts)
        if e.op == "and":
            return left is True and evaluate(e.right, facts, scope, consts) is True
        if e.op == "or":
            return left is True or evaluate(e.right, facts, scope, consts) is True
        return _arith(e.op, left, evaluate(e.right, facts, scope, consts))
    if isinstance(e, Compare):
        return _compare(
            e.op, evaluate(e.left, facts, scope, consts), evaluate(e.right, facts, scope, consts)
        )
    if isinstance(e, IsNull):
        return (evaluate(e.operand, facts, scope, consts) is None) != e.negated
    if isinstance(e, Between):
        x = evaluate(e.operand, facts, scope, consts)
        lo = evaluate(e.low, facts, scope, consts)
        hi = evaluate(e.high, facts, scope, consts)
        return _compare("<=", lo, x) and _compare("<=", x, hi)
    if isinstance(e, Call):
        return _call(e.func, evaluate(e.arg, facts, scope, consts))
    if isinstance(e, Quantifier):
        items = evaluate(e.iterable, facts, scope, consts)
        items = items if isinstance(items, list) else []
        results = [block(e.body, facts, {**scope, e.var: v}, consts) is True for v in items]
        if e.kind == "any":
            return any(results)
        if e.kind == "all":
            return all(results)
        return not any(results)
    raise AssertionError(e)


def block(
    b: Block, facts: dict[str, Any], scope: dict[str, Any], consts: dict[str, Any] | None = None
) -> Any:
    """The value of a block: its lets bound in order, then its expression."""
    inner = dict(scope)
    for let in b.lets:
        inner[let.name] = evaluate(let.expr, facts, inner, consts)
    return evaluate(b.expr, facts, inner, consts)
