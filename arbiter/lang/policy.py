"""A loaded, checked and compiled policy, and ``decide``."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from arbiter.lang.checker import CheckedPolicy
from arbiter.lang.compiler import Compiled, compile_policy
from arbiter.lang.decision import Decision, Fired, make_decision
from arbiter.lang.exprcode import fold
from arbiter.lang.unparse import format_value
from arbiter.lang.vocabulary import DEFAULT_LOCAL_PROVIDER, IMPLIED_TIER

Enrich = Callable[[dict[str, Any]], Mapping[str, Any] | None]
_NO_WAIVE: frozenset[str] = frozenset()
_tuple_new = tuple.__new__  # NamedTuple's own __new__ is a slower Python function


def policy_version(sources: Mapping[str, str]) -> str:
    """A short content hash of the sources (their paths included)."""
    h = hashlib.sha256()
    for key in sorted(sources):
        h.update(key.encode("utf-8") + b"\0" + sources[key].encode("utf-8") + b"\0")
    return h.hexdigest()[:12]


class Policy:
    """A policy ready to decide; build one with ``load_policy`` or
    ``load_policy_from_sources``."""

    def __init__(self, checked: CheckedPolicy, compiled: Compiled | None = None) -> None:
        self._compiled = compiled if compiled is not None else compile_policy(checked)
        self._fn = self._compiled.fn
        self.sources: dict[str, str] = {f.key: f.text for f in checked.files}
        self.version: str = policy_version(self.sources)
        self.route_candidates: list[dict[str, Any]] = _route_candidates(checked)
        self.rule_names: tuple[str, ...] = tuple(r.rule.name for r in checked.rules)

    @property
    def python_source(self) -> str:
        """The generated Python of ``decide`` (for debugging)."""
        return self._compiled.source

    def decide(
        self,
        facts: Mapping[str, Any],
        enrich: Enrich | None = None,
        *,
        waive: frozenset[str] | set[str] = _NO_WAIVE,
    ) -> Decision:
        """Decide for ``facts``: route, then rules, then the verdict (spec section 6).

        ``enrich(route)`` returns extra ``route`` facts for the rules (e.g. the estimated
        cost); ``waive`` names verdicts to ignore (a granted approval waives "approval"),
        though their actions still appear in ``fired``.
        """
        if type(facts) is not dict:
            if not isinstance(facts, Mapping):
                raise TypeError(f"facts must be a mapping, not {type(facts).__name__}")
            facts = dict(facts)
        cand, route, fired, trace = self._fn(facts, enrich)
        if not fired:
            return make_decision("proceed", route, cand, None, None, None, (), tuple(trace))
        best: Any = None
        best_rank = 0
        reroute = None
        for item in fired:
            site = item[0]
            rank = site.rank
            if rank > best_rank and (not waive or site.verdict not in waive):
                best, best_rank = item, rank
            if site.reroute and reroute is None:
                reroute = item[1]
        verdict = "proceed"
        decided_by = reason = None
        retry: Any = None
        if best is not None:
            site, params = best
            verdict, decided_by = site.verdict, site.rule
            given = params.get("reason")
            if given is None:
                reason = site.rule
            else:
                reason = given if isinstance(given, str) else format_value(given)
            if verdict == "throttle":
                retry = max(
                    _seconds(p.get("retry_after")) for s, p in fired if s.verdict == "throttle"
                )
        if reroute is not None:
            route = _reroute(reroute)
        return make_decision(
            verdict,
            route,
            cand,
            decided_by,
            reason,
            retry,
            tuple([_tuple_new(Fired, (s.rule, s.action, p)) for s, p in fired]),
            tuple(trace),
        )


def _seconds(value: Any) -> int | float:
    """A ``retry_after`` as seconds; anything but a non-negative number counts as 0."""
    if type(value) in (int, float) and value >= 0:
        return value  # type: ignore[no-any-return]
    return 0


def _reroute(params: dict[str, Any]) -> dict[str, Any]:
    tier = params.get("tier")
    provider = params.get("provider")
    if provider is None and tier == "local":
        provider = DEFAULT_LOCAL_PROVIDER
    rest = {k: v for k, v in params.items() if k not in ("tier", "provider")}
    return {"tier": tier, "provider": provider, **rest}


def _route_candidates(checked: CheckedPolicy) -> list[dict[str, Any]]:
    """The routing strategy's candidates with their constant params (for price checks)."""
    s = checked.routing
    if s is None:
        return []
    out = []
    for action in [*(c.action for c in s.candidates), s.otherwise]:
        params: dict[str, Any] = {}
        for p in action.params:
            ok, value = fold(p.expr, checked.consts)
            if ok:
                params[p.name] = value
        tier = params.get("tier", IMPLIED_TIER.get(action.name))
        provider = params.get("provider")
        if (
            provider is None
            and tier == "local"
            and not any(p.name == "provider" for p in action.params)
        ):
            provider = DEFAULT_LOCAL_PROVIDER
        out.append(
            {
                "action": action.name,
                "tier": tier,
                "provider": provider,
                "model": params.get("model"),
                "params": params,
            }
        )
    return out
