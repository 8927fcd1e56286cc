"""The checker: every check-time error of the spec, all reported in one run.

It also resolves what the compiler needs: folded const values, segments, the rules in
evaluation order and the routing strategy.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from arbiter.lang.diagnostics import Diagnostic
from arbiter.lang.exprcode import flatten, fold
from arbiter.lang.nodes import (
    Action,
    Between,
    Binary,
    Block,
    Call,
    Compare,
    Cond,
    Const,
    Decl,
    Expr,
    IsNull,
    ListExpr,
    Literal,
    Name,
    Path,
    Quantifier,
    Rule,
    Segment,
    Strategy,
    Unary,
    Value,
)
from arbiter.lang.sources import SourceFile
from arbiter.lang.vocabulary import (
    ACTIONS,
    DEFAULT_PRIORITY,
    FACT_ROOTS,
    FUNCTIONS,
    IMPLIED_TIER,
    KEYWORDS,
    TIERS,
)

# Deeper expressions are refused: they would overflow Python's parser when compiled.
MAX_DEPTH = 40

_KIND_WORD = {Const: "const", Segment: "segment", Rule: "rule", Strategy: "strategy"}


@dataclass(slots=True)
class RuleEntry:
    """A rule with where it came from and its place in evaluation order."""

    rule: Rule
    file: SourceFile
    source_index: int
    priority: int | float


@dataclass(slots=True)
class CheckedPolicy:
    """What the compiler needs from a policy that checks."""

    files: list[SourceFile]
    consts: dict[str, Value] = field(default_factory=dict)
    segments: dict[str, Segment] = field(default_factory=dict)
    rules: list[RuleEntry] = field(default_factory=list)  # in evaluation order
    routing: Strategy | None = None


def suggest(name: str, candidates: Iterable[str]) -> str:
    """Return "; did you mean `x`?" for a near name, else ""."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


class _TooDeep(Exception):
    """Unwinds the check of an expression nested deeper than MAX_DEPTH."""

    def __init__(self, line: int, col: int) -> None:
        super().__init__(line, col)
        self.line, self.col = line, col


class Checker:
    """Checks the declarations of one policy, in source order."""

    def __init__(self, files: list[SourceFile], decls: list[tuple[SourceFile, Decl]]) -> None:
        self.decls = decls
        self.result = CheckedPolicy(files)
        self.diagnostics: list[Diagnostic] = []
        self.names: dict[str, tuple[SourceFile, Decl]] = {}
        self._file = files[0] if files else SourceFile("", "", "")
        self._const_state: dict[str, int] = {}  # 1 = folding, 2 = done

    def error(self, line: int, col: int, message: str, file: SourceFile | None = None) -> None:
        f = file if file is not None else self._file
        self.diagnostics.append(Diagnostic(f.display, line, col, message))

    # --- driver
    def run(self) -> CheckedPolicy:
        self._declare()
        for file, decl in self.decls:
            self._file = file
            if isinstance(decl, Const):
                if self.names.get(decl.name, (None, None))[1] is decl:
                    self._const(decl.name)
                else:  # a duplicate, or named by a keyword: still check its expression
                    self._top(decl.expr, {}, False)
        self._order_rules()
        routing_seen: tuple[SourceFile, Strategy] | None = None
        for file, decl in self.decls:
            self._file = file
            if isinstance(decl, Segment):
                self._top(decl.block, {}, True)
            elif isinstance(decl, Rule):
                self._rule(decl)
            elif isinstance(decl, Strategy):
                routing_seen = self._strategy(decl, routing_seen)
        return self.result

    def _declare(self) -> None:
        for file, decl in self.decls:
            name = getattr(decl, "name", None)
            if name is None:
                continue
            kind = _KIND_WORD[type(decl)]
            if name in KEYWORDS:
                self.error(
                    decl.line, decl.col, f"`{name}` is a keyword and cannot name a {kind}", file
                )
                continue
            if name in self.names:
                first_file, first = self.names[name]
                self.error(
                    decl.line, decl.col,
                    f"`{name}` is already declared (as a {_KIND_WORD[type(first)]} at "
                    f"{first_file.display}:{first.line}:{first.col})",
                    file,
                )  # fmt: skip
                continue
            self.names[name] = (file, decl)
            if isinstance(decl, Segment):
                self.result.segments[name] = decl

    # --- consts
    def _const(self, name: str) -> Value:
        """Fold const ``name`` (once), checking its expression on the way."""
        state = self._const_state.get(name)
        if state == 2:
            return self.result.consts.get(name)
        file, decl = self.names[name]
        assert isinstance(decl, Const)
        if state == 1:
            self.error(decl.line, decl.col, f"const `{name}` is defined in terms of itself", file)
            self._const_state[name] = 2
            return None
        self._const_state[name] = 1
        saved, self._file = self._file, file
        before = len(self.diagnostics)
        self._top(decl.expr, {}, False)
        value = None
        if len(self.diagnostics) == before:
            ok, value = fold(decl.expr, self.result.consts)
            if not ok:  # pragma: no cover - the check above refuses facts in consts
                self.error(decl.line, decl.col, f"const `{name}` is not constant")
        self.result.consts[name] = value
        self._const_state[name] = 2
        self._file = saved
        return value

    # --- expressions
    def _expr(self, e: Expr, scope: dict[str, str], facts: bool, depth: int) -> None:
        """Check ``e``; ``scope`` holds let and quantifier names, ``facts`` whether fact
        roots may be read (not in a const)."""
        if depth > MAX_DEPTH:
            raise _TooDeep(e.line, e.col)
        d = depth + 1
        if isinstance(e, Literal):
            return
        if isinstance(e, Name):
            self._name(e, scope)
        elif isinstance(e, Path):
            self._path(e, scope, facts)
        elif isinstance(e, Binary):
            if e.op in ("and", "or"):
                for operand in flatten(e, e.op):
                    self._expr(operand, scope, facts, d)
            else:
                self._expr(e.left, scope, facts, d)
                self._expr(e.right, scope, facts, d)
        elif isinstance(e, Compare):
            self._expr(e.left, scope, facts, d)
            self._expr(e.right, scope, facts, d)
            if e.op == "matches":
                self._pattern(e.right, scope)
        elif isinstance(e, (Unary, IsNull)):
            self._expr(e.operand, scope, facts, d)
        elif isinstance(e, Between):
            self._expr(e.operand, scope, facts, d)
            self._expr(e.low, scope, facts, d)
            self._expr(e.high, scope, facts, d)
        elif isinstance(e, ListExpr):
            for item in e.items:
                self._expr(item, scope, facts, d)
        elif isinstance(e, Call):
            if e.func not in FUNCTIONS:
                self.error(
                    e.line, e.col,
                    f"unknown function `{e.func}` (functions: {', '.join(sorted(FUNCTIONS))})"
                    + suggest(e.func, FUNCTIONS),
                )  # fmt: skip
            self._expr(e.arg, scope, facts, d)
        elif isinstance(e, Quantifier):
            self._expr(e.iterable, scope, facts, d)
            inner = dict(scope)
            if self._bindable(e.var, e.var_line, e.var_col, "a quantifier variable"):
                inner[e.var] = "var"
            self._block(e.body, inner, facts, d)

    def _top(self, e: Expr | Block, scope: dict[str, str], facts: bool) -> None:
        """Check a whole expression or block, reporting excessive nesting once."""
        try:
            if isinstance(e, Block):
                self._block(e, scope, facts, 0)
            else:
                self._expr(e, scope, facts, 0)
        except _TooDeep as deep:
            self.error(
                deep.line,
                deep.col,
                f"expression is nested too deeply (more than {MAX_DEPTH} levels)",
            )

    def _block(self, b: Block, scope: dict[str, str], facts: bool, depth: int) -> None:
        inner = dict(scope)
        here: set[str] = set()
        for let in b.lets:
            self._expr(let.expr, inner, facts, depth + 1)
            if not self._bindable(let.name, let.line, let.col, "a `let`"):
                continue
            if let.name in here:
                self.error(
                    let.line, let.col, f"`{let.name}` is already bound by a `let` in this block"
                )
            here.add(let.name)
            inner[let.name] = "let"
        self._expr(b.expr, inner, facts, depth + 1)

    def _bindable(self, name: str, line: int, col: int, what: str) -> bool:
        if name in KEYWORDS:
            self.error(line, col, f"`{name}` is a keyword and cannot name {what}")
            return False
        return True

    def _name(self, e: Name, scope: dict[str, str]) -> None:
        n = e.name
        if n in scope:
            return
        if n in KEYWORDS:
            self.error(e.line, e.col, f"`{n}` is a keyword and cannot be used as a name")
            return
        decl = self.names.get(n)
        if isinstance(decl, tuple) and isinstance(decl[1], Const):
            self._const(n)
            return
        if decl is not None:
            kind = _KIND_WORD[type(decl[1])]
            self.error(e.line, e.col, f"`{n}` is a {kind}, not a value")
        elif n in FACT_ROOTS:
            self.error(
                e.line,
                e.col,
                f"`{n}` is a fact namespace; name one of its fields, e.g. `{n}.{_example(n)}`",
            )
        else:
            consts = [k for k, (_, d) in self.names.items() if isinstance(d, Const)]
            self.error(e.line, e.col, f"unknown name `{n}`" + suggest(n, [*scope, *consts]))

    def _path(self, e: Path, scope: dict[str, str], facts: bool) -> None:
        root = e.root
        if root in scope:
            return
        if root in KEYWORDS:
            self.error(e.line, e.col, f"`{root}` is a keyword and cannot be used as a name")
            return
        if root not in FACT_ROOTS:
            decl = self.names.get(root)
            if decl is not None:
                kind = _KIND_WORD[type(decl[1])]
                self.error(
                    e.line,
                    e.col,
                    f"`{root}` is a {kind}; only facts, `let` names and quantifier variables have fields",
                )
                return
            self.error(
                e.line, e.col,
                f"unknown fact root `{root}` (the roots are {', '.join(FACT_ROOTS)})"
                + suggest(root, [*FACT_ROOTS, *scope]),
            )  # fmt: skip
            return
        if not facts:
            self.error(e.line, e.col, f"a const cannot read facts (`{root}.{'.'.join(e.fields)}`)")
            return
        closed = FACT_ROOTS[root]
        first = e.fields[0]
        if closed is not None and first not in closed:
            self.error(
                e.field_line, e.field_col,
                f"unknown field `{first}` of `{root}` (it has {', '.join(sorted(closed))})"
                + suggest(first, closed),
            )  # fmt: skip

    def _pattern(self, e: Expr, scope: dict[str, str]) -> None:
        """A literal or const pattern must compile (a computed one is checked at run time)."""
        if isinstance(e, Literal):
            value = e.value
        elif isinstance(e, Name) and e.name not in scope and self._is_const(e.name):
            value = self.result.consts.get(e.name)
        else:
            return
        if not isinstance(value, str):
            self.error(e.line, e.col, "the pattern after `matches` must be a string")
            return
        try:
            re.compile(value)
        except (re.error, RecursionError, OverflowError) as exc:
            self.error(e.line, e.col, f"bad regular expression {json.dumps(value)}: {exc}")

    def _is_const(self, name: str) -> bool:
        decl = self.names.get(name)
        return decl is not None and isinstance(decl[1], Const)

    # --- rules
    def _order_rules(self) -> None:
        entries = []
        for index, (file, decl) in enumerate(self.decls):
            if not isinstance(decl, Rule):
                continue
            priority: int | float = DEFAULT_PRIORITY
            if decl.priority is not None:
                value = decl.priority.value
                if type(value) is not int:
                    self.error(
                        decl.priority.line,
                        decl.priority.col,
                        "a priority must be a whole number",
                        file,
                    )
                else:
                    priority = value
            entries.append(RuleEntry(decl, file, index, priority))
        entries.sort(key=lambda r: (r.priority, r.source_index))
        self.result.rules = entries
        self._position = {id(r.rule): i for i, r in enumerate(entries)}

    def _rule(self, rule: Rule) -> None:
        for mod in rule.modifiers:
            if mod.kind == "kill_switch" or mod.target is None:
                continue
            target = self.names.get(mod.target)
            if target is None:
                rules = [k for k, (_, d) in self.names.items() if isinstance(d, Rule)]
                self.error(
                    mod.line, mod.col, f"unknown rule `{mod.target}`" + suggest(mod.target, rules)
                )
                continue
            if not isinstance(target[1], Rule):
                kind = _KIND_WORD[type(target[1])]
                self.error(mod.line, mod.col, f"`{mod.target}` is a {kind}, not a rule")
                continue
            if target[1] is rule:
                self.error(mod.line, mod.col, f"a rule cannot {mod.kind[:-1]} itself")
                continue
            if self._position.get(id(target[1]), -1) >= self._position.get(id(rule), -1):
                self.error(
                    mod.line, mod.col,
                    f"`{mod.kind} {mod.target}`: rule `{mod.target}` must come before `{rule.name}` "
                    "in evaluation order (give it a lower priority, or declare it earlier)",
                )  # fmt: skip
        self._cond(rule.cond)
        self._rule_action(rule.then)
        if rule.otherwise is not None:
            self._rule_action(rule.otherwise)

    def _cond(self, cond: Cond) -> None:
        if cond.segment is not None:
            target = self.names.get(cond.segment)
            if target is None:
                segs = list(self.result.segments)
                message = f"unknown segment `{cond.segment}`" + suggest(cond.segment, segs)
                self.error(cond.line, cond.col, message)
            elif not isinstance(target[1], Segment):
                kind = _KIND_WORD[type(target[1])]
                self.error(cond.line, cond.col, f"`{cond.segment}` is a {kind}, not a segment")
        if cond.block is not None:
            self._top(cond.block, {}, True)

    def _params(self, action: Action) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for p in action.params:
            if p.name in seen:
                self.error(p.line, p.col, f"param `{p.name}` is given twice")
            seen[p.name] = p
            self._top(p.expr, {}, True)
        return seen

    def _rule_action(self, action: Action) -> None:
        kind = ACTIONS.get(action.name)
        params = self._params(action)
        if kind is None:
            self.error(
                action.line, action.col,
                f"unknown action `{action.name}` (actions: {', '.join(ACTIONS)})"
                + suggest(action.name, ACTIONS),
            )  # fmt: skip
            return
        if kind.params is not None:
            for p in action.params:
                if p.name not in kind.params:
                    self.error(
                        p.line, p.col,
                        f"`{action.name}` has no param `{p.name}` (it takes {', '.join(sorted(kind.params))})"
                        + suggest(p.name, kind.params),
                    )  # fmt: skip
        if kind.reroute:
            self._route_params(action, params, "`Reroute`")
            return
        for req in kind.required:
            if req not in params:
                unit = " (seconds, e.g. `5m`)" if req == "retry_after" else ""
                self.error(action.line, action.col, f"`{action.name}` needs `{req}`{unit}")

    def _route_params(self, action: Action, params: dict[str, Any], what: str) -> None:
        """Tier, model and provider rules shared by route candidates and `Reroute`."""
        implied = IMPLIED_TIER.get(action.name) if what != "`Reroute`" else None
        tier: Any = implied
        tier_param = params.get("tier")
        if tier_param is not None:
            ok, value = self._constant(tier_param.expr)
            if not ok:
                tier = ...  # computed at run time
            elif value not in TIERS:
                shown = json.dumps(value, default=str)
                message = f'unknown tier {shown} (tiers: "local", "cloud")'
                self.error(tier_param.line, tier_param.col, message)
                tier = None
            elif implied is not None and value != implied:
                message = f'`{action.name}` always has tier "{implied}"'
                self.error(tier_param.line, tier_param.col, message)
            else:
                tier = value
        elif implied is None:
            hint = "" if what == "`Reroute`" else " (or be named `Local` or `Cloud`)"
            self.error(action.line, action.col, f"{what} must give `tier`{hint}")
        if "model" not in params:
            self.error(action.line, action.col, f"{what} must give `model`")
        if "provider" not in params:
            if tier == "cloud":
                self.error(
                    action.line,
                    action.col,
                    f"{what} goes to the cloud tier and must give `provider`",
                )
            elif tier is ...:
                self.error(
                    action.line, action.col, f"{what} computes its tier and must give `provider`"
                )

    def _constant(self, e: Expr) -> tuple[bool, Value]:
        try:
            return fold(e, self.result.consts)
        except Exception:  # pragma: no cover - a broken expression is reported elsewhere
            return False, None

    # --- strategies
    def _strategy(
        self, s: Strategy, routing: tuple[SourceFile, Strategy] | None
    ) -> tuple[SourceFile, Strategy] | None:
        if s.returns != "Route":
            self.error(
                s.returns_line, s.returns_col,
                f"unknown strategy type `{s.returns}` (only `returns Route` is defined)"
                + suggest(s.returns, ["Route"]),
            )  # fmt: skip
        elif routing is not None:
            first_file, first = routing
            self.error(
                s.line, s.col,
                f"a policy has at most one `returns Route` strategy; `{first.name}` is one "
                f"({first_file.display}:{first.line}:{first.col})",
            )  # fmt: skip
        else:
            routing = (self._file, s)
            self.result.routing = s
        for cand in s.candidates:
            self._cond(cand.cond)
            self._candidate(cand.action)
        self._candidate(s.otherwise)
        return routing

    def _candidate(self, action: Action) -> None:
        params = self._params(action)
        self._route_params(action, params, f"route candidate `{action.name}`")


def _example(root: str) -> str:
    fields = FACT_ROOTS.get(root)
    return sorted(fields)[0] if fields else "kind"


def check_decls(
    files: list[SourceFile], decls: list[tuple[SourceFile, Decl]]
) -> tuple[CheckedPolicy, list[Diagnostic]]:
    """Check a loaded policy; return what the compiler needs and every problem found."""
    checker = Checker(files, decls)
    result = checker.run()
    return result, checker.diagnostics
