"""``sovereign rules``: check a policy, evaluate it against facts (spec section 7), and
the published versions: history, diff and rollback (``publish`` is in ``control``)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from arbiter.errors import InputError, PolicyError, SovereignError


def register(group: click.Group) -> None:
    """Add the ``rules`` command group to ``group``."""
    group.add_command(rules)


@click.group()
def rules() -> None:
    """Check, evaluate, publish and roll back `.arb` policies."""


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


# --- published versions: history, diff, rollback -------------------------------------------


def _store() -> Any:
    from arbiter.ledger import Ledger
    from arbiter.ledger.prices import PriceTable
    from arbiter.policy_store import PolicyStore
    from arbiter.settings import load_settings

    settings = load_settings()
    ledger = Ledger.from_settings(settings)
    prices = PriceTable.load(settings.prices_path)
    return PolicyStore(settings.policy_path, ledger, prices=prices)


def _local(moment: datetime | None, zone: Any) -> str | None:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S") if moment else None


@rules.command("history")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print the history as JSON.")
def history_command(limit: int, as_json: bool) -> None:
    """Published policy versions, newest first: when, by whom, which is active."""
    from arbiter.policy_store import history
    from sovereign.output import emit_json, say, table

    ledger = _store().ledger
    entries = history(ledger, limit)
    if as_json:
        emit_json(
            [
                {
                    "version": e.record.version,
                    "published_at": e.record.published_at.isoformat(),
                    "published_by": e.record.published_by,
                    "active": e.record.active,
                    "rules": e.rules,
                    "files": sorted(e.record.sources),
                    "republished": e.first_published_at is not None,
                    "first_published_at": (
                        e.first_published_at.isoformat() if e.first_published_at else None
                    ),
                }
                for e in entries
            ]
        )
        return
    if not entries:
        say("no policy has been published yet; publish one with `sovereign rules publish`")
        return
    rows = [
        (
            e.record.version,
            _local(e.record.published_at, ledger.zone),
            e.record.published_by,
            "active" if e.record.active else "",
            f"{e.rules} rule{'s' if e.rules != 1 else ''} in {e.files} "
            f"file{'s' if e.files != 1 else ''}",
            (
                f"again (first published {_local(e.first_published_at, ledger.zone)})"
                if e.first_published_at
                else ""
            ),
        )
        for e in entries
    ]
    table(
        ["version", "published", "by", "active", "summary", "note"],
        rows,
        title=f"policy history, newest first ({ledger.zone.key} time)",
    )


_DIFF_COLOURS = (("+++", "bold"), ("---", "bold"), ("@@", "cyan"), ("+", "green"), ("-", "red"))


@rules.command("diff")
@click.argument("a", required=False)
@click.argument("b", required=False)
def diff_command(a: str | None, b: str | None) -> None:
    """A unified diff of two published versions' sources.

    A defaults to the version before the active one, B to the active one; a version may
    be given by a unique prefix.
    """
    from arbiter.policy_store import diff_lines, diff_pair
    from sovereign.output import say

    old, new = diff_pair(_store().ledger, a, b)
    lines = diff_lines(old, new)
    if not lines:
        say(f"policies {old.version} and {new.version} have the same sources")
        return
    for line in lines:
        colour = next((c for mark, c in _DIFF_COLOURS if line.startswith(mark)), None)
        say(line, colour=colour)


@rules.command("rollback")
@click.argument("version", required=False)
def rollback_command(version: str | None) -> None:
    """Make an earlier published VERSION active again (default: the one before).

    Its sources are checked against today's vocabulary and prices first; a version that
    no longer checks is refused, and the running one stays.
    """
    from sovereign.output import say

    store = _store()
    try:
        now, was = store.rollback(version)
    except PolicyError as exc:
        for d in exc.diagnostics:
            click.echo(d.format(), err=True)
        raise
    say(
        f"policy {now.version} is active again (was {was.version}), published by "
        f"{now.published_by}; running gates pick it up within seconds",
        colour="green",
    )
    try:
        files = store.load_files().version
    except SovereignError:
        return  # files that do not check are never published at start-up either
    if files != now.version:
        # `sovereign up` publishes the files when it starts: they would undo the rollback.
        how = (
            f" (`sovereign rules diff {files} {now.version}` shows how)"
            if files in store.ledger.policy_versions(files)
            else ""
        )
        say(
            f"note: the files under {store.path} still hold policy {files}, which "
            f"`sovereign up` publishes when it starts; put them back as well{how}",
            colour="yellow",
        )
