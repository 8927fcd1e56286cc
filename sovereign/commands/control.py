"""Operating a running deployment: publish, status."""

from __future__ import annotations

import getpass
from dataclasses import asdict
from typing import Any

import click

from arbiter.settings import load_settings


def register(group: click.Group) -> None:
    # halt/resume: sovereign/commands/halts.py; approvals: sovereign/commands/approvals.py
    for command in (status,):
        group.add_command(command)
    rules = group.commands.get("rules")
    if isinstance(rules, click.Group):
        rules.add_command(publish)


def _ledger() -> Any:
    from arbiter.ledger import Ledger

    return Ledger.from_settings(load_settings())


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@click.command()
@click.argument("path", required=False)
def publish(path: str | None) -> None:
    """Check the policy and make it active everywhere, with no restart.

    A policy that does not check is not published, and the running one stays.
    """
    from pathlib import Path

    from arbiter.errors import PolicyError, PriceMissing
    from arbiter.ledger import Ledger
    from arbiter.ledger.prices import PriceTable
    from arbiter.policy_store import PolicyStore

    settings = load_settings()
    ledger = Ledger.from_settings(settings)
    store = PolicyStore(
        Path(path) if path else settings.policy_path,
        ledger,
        prices=PriceTable.load(settings.prices_path),
    )
    active = ledger.active_policy()
    stays = f" and policy {active.version} stays active" if active else ""
    try:
        version = store.publish_files(published_by=_user())
    except PolicyError as exc:
        if not exc.diagnostics:
            raise PolicyError([], f"{exc}; nothing was published{stays}") from None
        for d in exc.diagnostics:
            click.echo(d.format(), err=True)
        count = len(exc.diagnostics)
        raise PolicyError(
            exc.diagnostics,
            f"the policy at {store.path} does not check ({count} problem"
            f"{'s' if count != 1 else ''} above); nothing was published{stays}",
        ) from None
    except PriceMissing as exc:
        raise PriceMissing(f"{exc}; nothing was published{stays}") from None
    if active is not None and active.version == version:
        click.echo(f"policy {version} is already active; nothing changed")
        return
    click.echo(f"policy {version} is active; running gates pick it up within seconds")


@click.command()
@click.argument("task_id", required=False)
@click.option("--json", "as_json", is_flag=True)
def status(task_id: str | None, as_json: bool) -> None:
    """The status screen, or with TASK_ID one task: verdict, route, model, cost, times and
    the answer's first lines (`sovereign why TASK_ID` explains it in full)."""
    from arbiter.errors import InputError
    from arbiter.ledger.explain import summary

    if task_id is None:
        # The screen is its own module; imported here so a task's status never needs it.
        import importlib

        importlib.import_module("sovereign.commands.screen").show(as_json)
        return
    ledger = _ledger()
    history = ledger.task_history(task_id)
    if history is None:
        raise InputError(
            f"no task {task_id} in the ledger; check the id `sovereign enqueue` printed"
        )
    row = ledger.task(task_id)
    short = summary(history)
    if as_json:
        from sovereign.output import emit_json

        decisions = [asdict(d) for d in history.decisions]
        emit_json({"task": row, "decisions": decisions, **short})
        return
    _print_status(task_id, short, history, ledger.zone)


def _print_status(task_id: str, short: dict[str, Any], history: Any, zone: Any) -> None:
    from datetime import datetime

    from sovereign.output import fields, say

    def when(text: str | None) -> str | None:
        if not text:
            return None
        return datetime.fromisoformat(text).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")

    route = short["route"] or {}
    where = (
        f"{route.get('tier')} {short['provider']}/{short['model']}"
        if route
        else "none (not routed)"
    )
    pairs: list[tuple[str, Any]] = [
        ("status", short["status"]),
        ("verdict", short["verdict"]),
        ("route", where),
        ("cost", f"${short['cost_usd']:.6f} of ${short['reserved_usd']:.6f} reserved"),
        ("submitted", when(short["submitted_at"])),
        ("started", when(short["started_at"])),
        ("finished", when(short["finished_at"])),
    ]
    error = history.task.get("error")
    if error:
        pairs.append(("error", error))
    fields(pairs, title=f"task {task_id} ({short['kind']})")
    for d in history.decisions:
        by = f" by {d.decided_by}" if d.decided_by else ""
        why = f": {d.reason}" if d.reason else ""
        say(f"  attempt {d.attempt}: {d.verdict}{by}{why} (policy {d.policy_version})")
    if short["answer"]:
        say("answer:")
        for line in str(short["answer"]).splitlines():
            say(f"  {line}")
