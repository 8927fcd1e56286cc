"""The conformance suite: every case is a folder of data files, run by this one test.

A case folder holds the policy (every ``*.arb`` in it, or the files named in
``roots.txt``) and either ``expected_diagnostics.txt`` (every problem ``check``
reports, one per line, paths relative to the case) or ``runs.json``: a list of runs,
each ``{"facts": ..., "expected": ...}`` with optional ``"waive"`` (verdicts) and
``"enrich"`` (the route facts the host adds). ``expected`` lists the keys of
``Decision.to_dict()`` that matter for the case; a key mapped to ``"<absent>"`` must
not be there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from arbiter import PolicyError, check, load_policy

CASES = Path(__file__).parent / "conformance"
ABSENT = "<absent>"


def _cases() -> list[Path]:
    return sorted(p for p in CASES.iterdir() if p.is_dir())


def _roots(case: Path) -> list[Path]:
    listing = case / "roots.txt"
    if listing.exists():
        return [case / line.strip() for line in listing.read_text().splitlines() if line.strip()]
    return [case]


def _relative(line: str, case: Path) -> str:
    return line.replace(str(case) + "/", "")


@pytest.mark.parametrize("case", _cases(), ids=lambda p: p.name)
def test_case(case: Path) -> None:
    roots = _roots(case)
    expected_diags = case / "expected_diagnostics.txt"
    if expected_diags.exists():
        want = [line for line in expected_diags.read_text().splitlines() if line.strip()]
        got = [_relative(d.format(), case) for d in check(roots)]
        assert got == want
        with pytest.raises(PolicyError) as info:
            load_policy(roots)
        assert [_relative(d.format(), case) for d in info.value.diagnostics] == want
        return
    assert check(roots) == []
    policy = load_policy(roots)
    runs = json.loads((case / "runs.json").read_text())
    assert runs, "a case needs at least one run"
    for i, run in enumerate(runs):
        extra = run.get("enrich")
        seen: list[dict[str, Any]] = []

        def enrich(route: dict[str, Any], extra: Any = extra, seen: list[Any] = seen) -> Any:
            seen.append(route)
            return extra

        decision = policy.decide(
            run.get("facts", {}),
            enrich if extra is not None else None,
            waive=frozenset(run.get("waive", ())),
        )
        got = json.loads(decision.to_json())
        for key, value in run["expected"].items():
            if value == ABSENT:
                assert key not in got, f"run {i}: {key} should be absent"
            else:
                assert got.get(key, ABSENT) == value, f"run {i} ({run.get('name', '')}): {key}"
        if extra is not None and decision.candidate is not None:
            assert seen, f"run {i}: enrich was not called"


def test_every_case_has_expectations() -> None:
    for case in _cases():
        assert (case / "runs.json").exists() or (case / "expected_diagnostics.txt").exists(), case
