"""The compiler: a checked policy becomes one Python function, built once.

``decide`` then runs straight-line Python with consts folded and regexes precompiled;
the syntax tree is never walked per decision. The trace is recorded as prebuilt
``TraceStep`` values, so tracing costs one ``append`` per rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from arbiter.lang.checker import CheckedPolicy, RuleEntry
from arbiter.lang.decision import TraceStep
from arbiter.lang.exprcode import RUNTIME_GLOBALS, ExprCompiler
from arbiter.lang.nodes import Action, Cond, Strategy
from arbiter.lang.unparse import unparse_cond
from arbiter.lang.vocabulary import ACTIONS, DEFAULT_LOCAL_PROVIDER, IMPLIED_TIER, SEVERITY

# Rules per generated function: keeps each function small for CPython's compiler.
CHUNK = 150

RawDecision = tuple[str | None, dict[str, Any] | None, list[Any], list[TraceStep]]
DecideFn = Callable[[dict[str, Any], Any], RawDecision]


@dataclass(frozen=True, slots=True)
class ActionSite:
    """A rule action that can fire: who fires it and what it means."""

    rule: str
    action: str
    verdict: str | None
    rank: int
    reroute: bool


@dataclass(frozen=True, slots=True)
class Compiled:
    """The compiled policy: its decide function and the Python it was made from."""

    fn: DecideFn
    source: str


def _detail(cond: Cond, limit: int = 160) -> str:
    text = unparse_cond(cond)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class PolicyCompiler:
    """Generates the decide function of one checked policy."""

    def __init__(self, checked: CheckedPolicy) -> None:
        self.checked = checked
        self.ns: dict[str, Any] = dict(RUNTIME_GLOBALS)
        self.ex = ExprCompiler(checked.consts, self.ns)
        self.slots: dict[str, int] = {}  # rules named by requires/excludes -> index in _M

    def bind(self, value: Any, prefix: str) -> str:
        return self.ex.global_ref(value, prefix)

    def cond(self, cond: Cond) -> str:
        parts = []
        if cond.segment is not None:
            seg = self.checked.segments[cond.segment]
            parts.append(self.ex.truth(self.ex.block(seg.block, {})))
        if cond.block is not None:
            parts.append(self.ex.truth(self.ex.block(cond.block, {})))
        if any(p == "False" for p in parts):
            return "False"
        parts = [p for p in parts if p != "True"] or ["True"]
        return parts[0] if len(parts) == 1 else "(" + " and ".join(parts) + ")"

    def params(self, action: Action, skip: frozenset[str] = frozenset()) -> list[str]:
        return [
            f"{p.name!r}: {self.ex.emit(p.expr, {}).text}"
            for p in action.params
            if p.name not in skip
        ]

    def route_dict(self, action: Action) -> str:
        """The route of a candidate: implied tier, defaulted provider, then its params."""

        def given(name: str, default: str | None) -> str:
            p = action.param(name)
            return self.ex.emit(p.expr, {}).text if p is not None else repr(default)

        items = [
            f"'tier': {given('tier', IMPLIED_TIER.get(action.name))}",
            f"'provider': {given('provider', DEFAULT_LOCAL_PROVIDER)}",
            *self.params(action, frozenset({"tier", "provider"})),
        ]
        return "{" + ", ".join(items) + "}"

    # --- routing
    def routing(self, s: Strategy) -> list[str]:
        lines: list[str] = []
        steps: list[TraceStep] = []
        for i, cand in enumerate(s.candidates):
            check = f"strategy {s.name}: when #{i + 1} -> {cand.action.name}"
            detail = _detail(cand.cond)
            prefix = self.bind((*steps, TraceStep(check, True, detail)), "_ST")
            steps.append(TraceStep(check, False, detail))
            kw = "if" if i == 0 else "elif"
            lines += [
                f"    {kw} {self.cond(cand.cond)}:",
                f"        _cand = {cand.action.name!r}",
                f"        _route = {self.route_dict(cand.action)}",
                f"        _trace = list({prefix})",
            ]
        final = (
            *steps,
            TraceStep(
                f"strategy {s.name}: else -> {s.otherwise.name}", True, "no candidate matched"
            ),
        )
        ref = self.bind(final, "_ST")
        lines += [
            "    else:",
            f"        _cand = {s.otherwise.name!r}",
            f"        _route = {self.route_dict(s.otherwise)}",
            f"        _trace = list({ref})",
        ]
        return lines

    # --- rules
    def fire(self, entry: RuleEntry, action: Action, indent: str) -> str:
        kind = ACTIONS[action.name]
        site = ActionSite(
            entry.rule.name,
            action.name,
            kind.verdict,
            SEVERITY.get(kind.verdict or "", 0),
            kind.reroute,
        )
        ref = self.bind(site, "_A")
        return f"{indent}_fa(({ref}, {{{', '.join(self.params(action))}}}))"

    def rule(self, entry: RuleEntry) -> list[str]:
        rule = entry.rule
        check = f"rule {rule.name}"
        slot = self.slots.get(rule.name)
        mods = rule.modifiers
        if any(m.kind == "kill_switch" for m in mods):
            lines = [f"    _ta({self.bind(TraceStep(check, False, 'skipped: kill switch'), '_T')})"]
            return lines + ([f"    _M[{slot}] = False"] if slot is not None else [])
        detail = _detail(rule.cond)
        yes = self.bind(TraceStep(check, True, detail), "_T")
        no = self.bind(TraceStep(check, False, detail), "_T")
        body = [
            f"    if {self.cond(rule.cond)}:",
            f"        _ta({yes})",
            self.fire(entry, rule.then, "        "),
        ]
        if slot is not None:
            body.append(f"        _M[{slot}] = True")
        body += ["    else:", f"        _ta({no})"]
        if rule.otherwise is not None:
            body.append(self.fire(entry, rule.otherwise, "        "))
        gates = []
        why = []
        for m in mods:
            s = self.slots[m.target or ""]
            gates.append(f"_M[{s}]" if m.kind == "requires" else f"not _M[{s}]")
            why.append(
                f"requires {m.target}, which did not match"
                if m.kind == "requires"
                else f"excludes {m.target}, which matched"
            )
        if not gates:
            return body
        skipped = self.bind(TraceStep(check, False, "skipped: " + "; or ".join(why)), "_T")
        lines = [f"    if {' and '.join(gates)}:"]
        lines += ["    " + line for line in body]
        lines += ["    else:", f"        _ta({skipped})"]
        return lines

    # --- the whole function
    def compile(self) -> Compiled:
        c = self.checked
        for entry in c.rules:
            for m in entry.rule.modifiers:
                if m.target is not None and m.target not in self.slots:
                    self.slots[m.target] = len(self.slots)
        # Rules first: that fills self.ex.roots, which the prologue binds.
        rule_lines = [self.rule(e) for e in c.rules]
        route_lines = self.routing(c.routing) if c.routing is not None else []
        roots = sorted(self.ex.roots - {"route"})
        uses_route = "route" in self.ex.roots

        out = ["def _decide(facts, enrich):"]
        for r in roots:
            out += [
                f"    _F_{r} = facts.get({r!r})",
                f"    if type(_F_{r}) is not dict:",
                f"        _F_{r} = _root(_F_{r})",
            ]
        if uses_route or c.routing is not None:
            out.append("    _F_route = _root(facts.get('route'))")
        chunked = len(rule_lines) > CHUNK
        if self.slots or chunked:
            out.append(f"    _M = [False] * {len(self.slots)}")
        out += ["    _fired = []", "    _fa = _fired.append"]
        if c.routing is not None:
            out += route_lines
            out += [
                "    if enrich is not None:",
                "        _extra = enrich(dict(_route))",
                "    else:",
                "        _extra = None",
            ]
            out.append("    _ta = _trace.append")
            if uses_route:
                out += [
                    "    _F_route = {**_F_route, **_route}",
                    "    if _extra:",
                    "        _F_route.update(_extra)",
                ]
        else:
            out += [
                "    _cand = None",
                "    _route = None",
                "    _trace = []",
                "    _ta = _trace.append",
            ]
        chunks: list[str] = []
        if not chunked:
            for lines in rule_lines:
                out += lines
        else:
            names = [f"_F_{r}" for r in roots] + (["_F_route"] if uses_route else [])
            args = ", ".join([*names, "_M", "_fired", "_trace"])
            for k in range(0, len(rule_lines), CHUNK):
                name = f"_rules{k // CHUNK}"
                chunk = [
                    f"def {name}({args}):",
                    "    _ta = _trace.append",
                    "    _fa = _fired.append",
                ]
                for lines in rule_lines[k : k + CHUNK]:
                    chunk += lines
                chunks.append("\n".join(chunk) + "\n")
                out.append(f"    {name}({args})")
        out.append("    return _cand, _route, _fired, _trace")
        chunks.append("\n".join(out) + "\n")
        # One compile() per function: CPython's compiler holds a whole module's syntax
        # tree in memory, which for 10,000 rules would be hundreds of megabytes.
        for text in chunks:
            exec(compile(text, "<policy>", "exec"), self.ns)
        source = "\n".join(chunks)
        return Compiled(self.ns["_decide"], source)


def compile_policy(checked: CheckedPolicy) -> Compiled:
    """Compile a policy that checked without errors."""
    return PolicyCompiler(checked).compile()
