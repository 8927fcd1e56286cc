"""Expressions to Python source: the heart of the compiler.

Each expression becomes one Python expression over the fact roots (locals named
``_F_<root>``) and the helpers of ``runtime``. Constant parts are folded here; the hot
operators get an inline fast path for the common types (``x >= 35`` on a number) and
fall back to the total helper otherwise, so the spec's semantics hold for every value.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from arbiter.lang import runtime
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
    Value,
)

_MISSING: Any = object()
_SLOT = "\0"
_BIN_HELPER = {"+": "_add", "-": "_sub", "*": "_mul", "/": "_div", "%": "_mod"}
_CMP_HELPER = {"<": "_lt", "<=": "_le", ">": "_gt", ">=": "_ge"}
_FUNC_HELPER = {
    "count": "_length",
    "len": "_length",
    "sum": "_total",
    "min": "_minimum",
    "max": "_maximum",
    "avg": "_average",
}

# The names generated code may use, bound once in its globals.
RUNTIME_GLOBALS: dict[str, Any] = {
    "_NUMT": runtime.NUMBER_TYPES,
    "_root": runtime.root,
    "_get": runtime.get,
    "_iter": runtime.iter_list,
    "_eq": runtime.eq,
    "_lt": runtime.lt,
    "_le": runtime.le,
    "_gt": runtime.gt,
    "_ge": runtime.ge,
    "_between": runtime.between,
    "_in": runtime.in_,
    "_starts": runtime.starts_with,
    "_ends": runtime.ends_with,
    "_matches": runtime.matches,
    "_matches_re": runtime.matches_re,
    "_add": runtime.add,
    "_sub": runtime.sub,
    "_mul": runtime.mul,
    "_div": runtime.div,
    "_mod": runtime.mod,
    "_neg": runtime.neg,
    "_length": runtime.length,
    "_total": runtime.total,
    "_minimum": runtime.minimum,
    "_maximum": runtime.maximum,
    "_average": runtime.average,
}


Scope = dict[str, "str | Out"]  # let/quantifier names -> a Python local, or a folded value


@dataclass(slots=True)
class Out:
    """Generated code for one expression: its text, what it is known to be, its value
    when constant (``value is _MISSING`` otherwise)."""

    text: str
    kind: str  # "bool", "num", "str", "null", "list" or "any"
    value: Any = _MISSING

    @property
    def const(self) -> bool:
        return self.value is not _MISSING


def _kind_of(value: Value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if runtime.num(value) is not None:
        return "num"
    if isinstance(value, str):
        return "str"
    return "list" if isinstance(value, list) else "any"


def flatten(e: Expr, op: str) -> list[Expr]:
    """Return the operands of a chain ``a op b op c`` (left-nested), without recursion."""
    out: list[Expr] = []
    while isinstance(e, Binary) and e.op == op:
        out.append(e.right)
        e = e.left
    out.append(e)
    out.reverse()
    return out


class ExprCompiler:
    """Compiles expressions of one policy; shares one globals namespace for constants."""

    def __init__(self, consts: dict[str, Value], namespace: dict[str, Any]) -> None:
        self.consts = consts
        self.ns = namespace
        self._ids = itertools.count()
        self._const_refs: dict[tuple[str, str], str] = {}
        self.roots: set[str] = set()

    # --- helpers
    def fresh(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}"

    def global_ref(self, value: Any, prefix: str = "_K") -> str:
        """Bind ``value`` in the generated module's globals and return its name."""
        name = self.fresh(prefix)
        self.ns[name] = value
        return name

    def constant(self, value: Value) -> Out:
        kind = _kind_of(value)
        if (
            value is None
            or isinstance(value, (bool, str))
            or type(value) is int
            or (type(value) is float and math.isfinite(value))
        ):
            text = repr(value)
        else:
            text = self.global_ref(value)
        return Out(text, kind, value)

    def truth(self, out: Out) -> str:
        """Code that is the Python bool ``out is True`` (only ``true`` counts as true)."""
        if out.const:
            return "True" if out.value is True else "False"
        return out.text if out.kind == "bool" else f"({out.text} is True)"

    def regex(self, pattern: str) -> str:
        key = ("re", pattern)
        if key not in self._const_refs:
            self._const_refs[key] = self.global_ref(re.compile(pattern), "_R")
        return self._const_refs[key]

    # --- expressions
    def emit(self, e: Expr, scope: Scope, walrus: bool = True) -> Out:
        """Compile ``e``; ``scope`` maps let/quantifier names to Python locals.
        ``walrus=False`` inside a comprehension's iterable, where Python forbids ``:=``."""
        if isinstance(e, Literal):
            return self.constant(e.value)
        if isinstance(e, Name):
            if e.name in scope:
                bound = scope[e.name]
                return bound if isinstance(bound, Out) else Out(bound, "any")
            return self.constant(self.consts.get(e.name))
        if isinstance(e, Path):
            return self._path(e, scope)
        if isinstance(e, Binary):
            if e.op in ("and", "or"):
                return self._logic(e, scope, walrus)
            return self._arith(e, scope, walrus)
        if isinstance(e, Compare):
            return self._compare(e, scope, walrus)
        if isinstance(e, Unary):
            x = self.emit(e.operand, scope, walrus)
            if e.op == "not":
                if x.const:
                    return self.constant(x.value is not True)
                code = f"(not {x.text})" if x.kind == "bool" else f"({x.text} is not True)"
                return Out(code, "bool")
            if x.const:
                return self.constant(runtime.neg(x.value))
            return Out(f"_neg({x.text})", "any")
        if isinstance(e, IsNull):
            x = self.emit(e.operand, scope, walrus)
            if x.const:
                return self.constant((x.value is None) != e.negated)
            return Out(f"({x.text} is {'not ' if e.negated else ''}None)", "bool")
        if isinstance(e, Between):
            return self._between(e, scope, walrus)
        if isinstance(e, ListExpr):
            items = [self.emit(i, scope, walrus) for i in e.items]
            if all(i.const for i in items):
                return self.constant([i.value for i in items])
            return Out("[" + ", ".join(i.text for i in items) + "]", "list")
        if isinstance(e, Call):
            x = self.emit(e.arg, scope, walrus)
            if x.const:
                return self.constant(runtime.FUNCTIONS[e.func](x.value))
            return Out(f"{_FUNC_HELPER[e.func]}({x.text})", "any")
        if isinstance(e, Quantifier):
            return self._quantifier(e, scope, walrus)
        raise TypeError(f"not an expression: {e!r}")  # pragma: no cover

    def block(self, b: Block, scope: Scope, walrus: bool = True) -> Out:
        """Compile a block: its lets bound in order, then its expression."""
        if not b.lets:
            return self.emit(b.expr, scope, walrus)
        inner: Scope = dict(scope)
        bound: list[tuple[str, str]] = []
        for let in b.lets:
            value = self.emit(let.expr, inner, walrus)
            if value.const:  # a constant `let` is folded into its uses
                inner[let.name] = value
                continue
            local = self.fresh("_l")
            bound.append((local, value.text))
            inner[let.name] = local
        body = self.emit(b.expr, inner, walrus)
        if not bound:
            return body
        if walrus:
            lets = ", ".join(f"({local} := {code})" for local, code in bound)
            return Out(f"({lets}, {body.text})[-1]", body.kind)
        code = body.text
        for local, value_code in reversed(bound):
            code = f"(lambda {local}: {code})({value_code})"
        return Out(code, body.kind)

    def _path(self, e: Path, scope: Scope) -> Out:
        fields = iter(e.fields)
        bound = scope.get(e.root)
        if isinstance(bound, Out):
            if bound.const:  # a path into a constant `let`: fold it
                value = bound.value
                for f in e.fields:
                    value = runtime.get(value, f)
                return self.constant(value)
            bound = bound.text
        if bound is not None:
            code = bound
        else:
            self.roots.add(e.root)
            # Fact roots are always dicts (decide normalises them), so the first step is a
            # plain ``.get``.
            code = f"_F_{e.root}.get({next(fields)!r})"
        for f in fields:
            code = f"_get({code}, {f!r})"
        return Out(code, "any")

    def _logic(self, e: Binary, scope: Scope, walrus: bool) -> Out:
        parts: list[str] = []
        absorbing = e.op == "or"  # a constant true decides an `or`, a false an `and`
        for operand in flatten(e, e.op):
            x = self.emit(operand, scope, walrus)
            if x.const:
                if (x.value is True) == absorbing:
                    return self.constant(absorbing)
                continue
            parts.append(self.truth(x))
        if not parts:
            return self.constant(not absorbing)
        if len(parts) == 1:
            return Out(parts[0], "bool")
        return Out("(" + f" {e.op} ".join(parts) + ")", "bool")

    def _arith(self, e: Binary, scope: Scope, walrus: bool) -> Out:
        a, b = self.emit(e.left, scope, walrus), self.emit(e.right, scope, walrus)
        if a.const and b.const:
            return self.constant(runtime.BINARY[e.op](a.value, b.value))
        return Out(f"{_BIN_HELPER[e.op]}({a.text}, {b.text})", "any")

    def _between(self, e: Between, scope: Scope, walrus: bool) -> Out:
        x = self.emit(e.operand, scope, walrus)
        lo, hi = self.emit(e.low, scope, walrus), self.emit(e.high, scope, walrus)
        if x.const and lo.const and hi.const:
            return self.constant(runtime.between(x.value, lo.value, hi.value))
        if walrus and lo.kind == hi.kind == "num" and lo.const and hi.const:
            t = self.fresh("_t")
            return Out(
                f"({lo.text} <= {t} <= {hi.text} if type({t} := {x.text}) in _NUMT "
                f"else _between({t}, {lo.text}, {hi.text}))",
                "bool",
            )
        return Out(f"_between({x.text}, {lo.text}, {hi.text})", "bool")

    def _compare(self, e: Compare, scope: Scope, walrus: bool) -> Out:
        op = e.op
        a, b = self.emit(e.left, scope, walrus), self.emit(e.right, scope, walrus)
        if a.const and b.const:
            return self.constant(runtime.COMPARE[op](a.value, b.value))
        if op in ("==", "!="):
            return self._equality(op, a, b, walrus)
        if op in _CMP_HELPER:
            if walrus and b.const and b.kind in ("num", "str") and a.kind != "bool":
                return self._fast(
                    a, f"\0 {op} {b.text}", b.kind, f"{_CMP_HELPER[op]}(\0, {b.text})"
                )
            if walrus and a.const and a.kind in ("num", "str") and b.kind != "bool":
                return self._fast(
                    b, f"{a.text} {op} \0", a.kind, f"{_CMP_HELPER[op]}({a.text}, \0)"
                )
            return Out(f"{_CMP_HELPER[op]}({a.text}, {b.text})", "bool")
        if op in ("in", "not in", "contains", "not contains"):
            needle, hay = (a, b) if op.endswith("in") else (b, a)
            code = self._membership(needle, hay, walrus)
            return Out(f"(not {code})" if op.startswith("not") else code, "bool")
        if op == "matches":
            if b.const and isinstance(b.value, str):
                try:
                    return Out(f"_matches_re({self.regex(b.value)}, {a.text})", "bool")
                except re.error:
                    return self.constant(False)  # the checker reports it
            return Out(f"_matches({a.text}, {b.text})", "bool")
        helper = "_starts" if op == "starts_with" else "_ends"
        return Out(f"{helper}({a.text}, {b.text})", "bool")

    def _fast(self, x: Out, fast: str, kind: str, slow: str) -> Out:
        """``fast`` when ``x`` has the exact type ``kind``, else the total ``slow`` helper."""
        t = self.fresh("_t")
        test = (
            f"type({t} := {x.text}) in _NUMT" if kind == "num" else f"type({t} := {x.text}) is str"
        )
        # A NUL never occurs in generated code (repr escapes it), so it marks the slot.
        return Out(f"({fast.replace(_SLOT, t)} if {test} else {slow.replace(_SLOT, t)})", "bool")

    def _equality(self, op: str, a: Out, b: Out, walrus: bool) -> Out:
        neg = op == "!="
        if a.const and not b.const:
            a, b = b, a
        if b.const:
            v = b.value
            if v is None or isinstance(v, bool):
                return Out(f"({a.text} is {'not ' if neg else ''}{v!r})", "bool")
            if isinstance(v, str) and type(v) is str:
                # Python's == between a str and any non-str built-in value is False, as
                # the spec wants; only numbers need care (True == 1 in Python).
                return Out(f"({a.text} {op} {b.text})", "bool")
            if b.kind == "num" and walrus:
                fast = self._fast(a, f"\0 == {b.text}", "num", f"_eq(\0, {b.text})")
                return Out(f"(not {fast.text})" if neg else fast.text, "bool")
        code = f"_eq({a.text}, {b.text})"
        return Out(f"(not {code})" if neg else code, "bool")

    def _membership(self, needle: Out, hay: Out, walrus: bool) -> str:
        if hay.const and isinstance(hay.value, list) and walrus and hay.value:
            values = hay.value
            if all(type(v) is str for v in values):
                ref = self.global_ref(frozenset(values), "_S")
                return self._fast(needle, f"\0 in {ref}", "str", f"_in(\0, {hay.text})").text
            if all(type(v) in (int, float) for v in values):
                ref = self.global_ref(frozenset(values), "_S")
                return self._fast(needle, f"\0 in {ref}", "num", f"_in(\0, {hay.text})").text
        if hay.const and isinstance(hay.value, str) and walrus:
            return self._fast(needle, f"\0 in {hay.text}", "str", f"_in(\0, {hay.text})").text
        return f"_in({needle.text}, {hay.text})"

    def _quantifier(self, e: Quantifier, scope: Scope, walrus: bool) -> Out:
        items = self.emit(e.iterable, scope, walrus=False)
        var = self.fresh("_q")
        body = self.block(e.body, {**scope, e.var: var}, walrus)
        cond = self.truth(body)
        gen = f"{cond} for {var} in _iter({items.text})"
        if e.kind == "any":
            return Out(f"any({gen})", "bool")
        if e.kind == "all":
            return Out(f"all({gen})", "bool")
        return Out(f"(not any({gen}))", "bool")


def fold(expr: Expr, consts: dict[str, Value]) -> tuple[bool, Value]:
    """Return ``(True, value)`` when ``expr`` is constant (literals, consts, operators)."""
    ns: dict[str, Any] = dict(RUNTIME_GLOBALS)
    compiler = ExprCompiler(consts, ns)
    out = compiler.emit(expr, {})
    if out.const:
        return True, out.value
    if compiler.roots:
        return False, None
    # Quantifiers over constant lists are not folded by ``emit``; evaluate them once.
    code = compile(f"def _const():\n    return {out.text}\n", "<const>", "exec")
    exec(code, ns)
    return True, ns["_const"]()


def compile_expression(
    expr: Expr, consts: dict[str, Value] | None = None
) -> Callable[[Any], Value]:
    """Compile one checked expression into ``f(facts) -> value`` (for tools and tests;
    policies compile whole rules instead)."""
    ns: dict[str, Any] = dict(RUNTIME_GLOBALS)
    compiler = ExprCompiler(consts or {}, ns)
    out = compiler.emit(expr, {})
    lines = ["def _expr(facts):"]
    lines += [f"    _F_{r} = _root(facts.get({r!r}))" for r in sorted(compiler.roots)]
    lines.append(f"    return {out.text}")
    exec(compile("\n".join(lines) + "\n", "<expr>", "exec"), ns)
    return ns["_expr"]  # type: ignore[no-any-return]
