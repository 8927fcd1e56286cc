"""``sovereign rules``: check a policy, or evaluate it against facts (spec section 7)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from arbiter.errors import InputError, PolicyError


def register(group: click.Group) -> None:
    """Add the ``rules`` command group to ``group``."""
    group.add_command(rules)


@click.group()
def rules() -> None:
    """Check and evaluate `.arb` policies."""


def _print_problems(error: PolicyError, *, carets: bool) -> None:
    """One line per problem; the human view adds the source line and a caret."""
    if not error.diagnostics:
        raise error
    cache: dict[str, str | None] = {}
    for d in error.diagnostics:
        if not carets:
            click.echo(d.format())
            continue
        if d.file not in cache:
            try:
                cache[d.file] = Path(d.file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                cache[d.file] = None
        click.echo(d.render(cache[d.file]))
    count = len(error.diagnostics)
    click.echo(f"{count} problem{'s' if count != 1 else ''} found", err=True)


@rules.command("check")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def check_command(paths: tuple[Path, ...]) -> None:
    """Check the policy at PATHS (files or directories); exit 1 listing every problem."""
    from arbiter.lang.api import load_policy

    try:
        policy = load_policy(paths)
    except PolicyError as exc:
        _print_problems(exc, carets=False)
        sys.exit(1)
    files = len(policy.sources)
    rules_n = len(policy.rule_names)
    routing = "a routing strategy" if policy.route_candidates else "no routing strategy"
    click.echo(
        f"ok: {files} file{'s' if files != 1 else ''}, {rules_n} rule{'s' if rules_n != 1 else ''}, "
        f"{routing} (policy version {policy.version})"
    )


def _read_facts(source: str) -> dict[str, Any]:
    name = "standard input" if source == "-" else f"facts file {source}"
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"cannot read {name}: no such file.") from None
    except UnicodeDecodeError:
        raise InputError(f"cannot read {name}: it is not UTF-8 text.") from None
    except OSError as exc:
        raise InputError(f"cannot read {name}: {exc.strerror or exc}.") from None
    try:
        facts = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{name} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})."
        ) from None
    except RecursionError:
        raise InputError(f"{name} is nested too deeply to read.") from None
    if not isinstance(facts, dict):
        raise InputError(
            f'{name} must hold a JSON object such as {{"task": {{"kind": "code"}}}}, '
            f"not {type(facts).__name__ if facts is not None else 'null'}."
        )
    return facts


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


@rules.command("eval")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--facts", "facts_path", required=True, help="JSON file of facts, or - for stdin.")
@click.option("--json", "as_json", is_flag=True, help="Print the decision as one JSON object.")
def eval_command(paths: tuple[Path, ...], facts_path: str, as_json: bool) -> None:
    """Decide for the facts in FILE with the policy at PATHS."""
    from arbiter.lang.api import load_policy

    try:
        policy = load_policy(paths)
    except PolicyError as exc:
        _print_problems(exc, carets=not as_json)
        sys.exit(1)
    facts = _read_facts(facts_path)
    decision = policy.decide(facts)
    if as_json:
        click.echo(decision.to_json())
        return
    head = decision.verdict
    if decision.decided_by is not None:
        head += f" (decided by {decision.decided_by}: {decision.reason})"
    if decision.retry_after_s is not None and decision.verdict == "throttle":
        from tasks.broker import human_duration

        head += f", retry after {human_duration(decision.retry_after_s)}"
    click.echo(f"verdict:  {head}")
    if decision.route is None:
        click.echo("route:    none (no routing strategy)")
    else:
        params = " ".join(f"{k}={_value(v)}" for k, v in decision.route.items())
        rerouted = " (rerouted)" if any(f.action == "Reroute" for f in decision.fired) else ""
        click.echo(f"route:    {decision.candidate}: {params}{rerouted}")
    click.echo("fired:" + ("    nothing" if not decision.fired else ""))
    for f in decision.fired:
        params = ", ".join(f"{k}: {_value(v)}" for k, v in f.params.items())
        click.echo(f"  {f.rule} -> {f.action} {{{params}}}")
    click.echo("trace:")
    width = max((len(t.check) for t in decision.trace), default=0)
    for t in decision.trace:
        mark = "yes" if t.result else "no "
        click.echo(f"  {mark} {t.check.ljust(width)}  {t.detail}")
