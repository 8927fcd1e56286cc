"""Operating a running deployment: publish, halt/resume, approvals, topics, status."""

from __future__ import annotations

import getpass
import json
from dataclasses import asdict
from typing import Any

import click

from arbiter.errors import TaskBlocked, TaskParked
from arbiter.settings import load_settings


def register(group: click.Group) -> None:
    for command in (halt, resume, approvals, topics, status):
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
    """Check the policy and make it active everywhere, with no restart."""
    from pathlib import Path

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
    version = store.publish_files(published_by=_user())
    click.echo(f"policy {version} is active; running gates pick it up within seconds")


@click.command()
@click.option("--reason", default="halted by an operator", show_default=True)
def halt(reason: str) -> None:
    """Turn the kill switch on: `system.halted` becomes true for every decision."""
    _ledger().set_halted(True, reason)
    click.echo(f"halted: {reason}")


@click.command()
def resume() -> None:
    """Turn the kill switch off."""
    _ledger().set_halted(False, None)
    click.echo("resumed")


@click.group(invoke_without_command=True)
@click.option("--all", "show_all", is_flag=True, help="Include decided approvals.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def approvals(ctx: click.Context, show_all: bool, as_json: bool) -> None:
    """List tasks parked for approval (subcommands: grant, reject)."""
    if ctx.invoked_subcommand is not None:
        return
    records = _ledger().approvals(None if show_all else "pending")
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "task_id": r.task_id,
                        "kind": r.kind,
                        "status": r.status,
                        "reason": r.reason,
                        "requested_at": r.requested_at.isoformat(),
                    }
                    for r in records
                ]
            )
        )
        return
    if not records:
        click.echo("no approvals pending")
        return
    for r in records:
        click.echo(
            f"{r.task_id}  {r.kind:<13} {r.status:<8} {r.requested_at:%Y-%m-%d %H:%M}  {r.reason or ''}"
        )


@approvals.command()
@click.argument("task_id")
@click.option("--reason")
def grant(task_id: str, reason: str | None) -> None:
    """Grant a parked task and queue it (it passes the gate again; budgets still apply)."""
    from tasks import get_app

    payload = _ledger().grant(task_id, _user(), reason)
    kwargs = dict((payload or {}).get("kwargs") or {})
    kwargs["approved"] = True
    try:
        get_app().send_task(str(payload["task"]), kwargs=kwargs, task_id=task_id)
    except TaskBlocked as exc:
        click.echo(f"granted, but the gate now refuses it: {exc}")
        raise SystemExit(1) from None
    except TaskParked as exc:
        click.echo(f"granted, but it is parked again: {exc}")
        raise SystemExit(1) from None
    click.echo(f"granted {task_id}; queued")


@approvals.command()
@click.argument("task_id")
@click.option("--reason")
def reject(task_id: str, reason: str | None) -> None:
    """Reject a parked task; it never runs."""
    _ledger().reject(task_id, _user(), reason)
    click.echo(f"rejected {task_id}")


@click.group(invoke_without_command=True)
@click.pass_context
def topics(ctx: click.Context) -> None:
    """The research backlog that beat draws from (subcommand: add)."""
    if ctx.invoked_subcommand is not None:
        return
    ledger = _ledger()
    facts = ledger.research_facts()
    click.echo(
        f"backlog {facts.get('backlog', 0)}, research cycles today {facts.get('cycles_today', 0)}, "
        f"follow-ups today {facts.get('followups_today', 0)}"
    )


@topics.command("add")
@click.argument("text")
@click.option(
    "--confidential",
    is_flag=True,
    help="Client work: its research and follow-ups never leave the studio's machines.",
)
def add_topic(text: str, confidential: bool) -> None:
    """Add a research topic to the backlog."""
    if not text.strip():
        raise click.BadParameter("the topic is empty", param_hint="TEXT")
    topic_id = _ledger().add_topic(text.strip(), confidential=confidential)
    kind = "confidential topic" if confidential else "topic"
    click.echo(f"{kind} {topic_id} added; beat queues one topic per interval")


@click.command()
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True)
def status(task_id: str, as_json: bool) -> None:
    """Show a task's record and its decisions."""
    from arbiter.errors import InputError

    ledger = _ledger()
    row = ledger.task(task_id)
    if row is None:
        raise InputError(
            f"no task {task_id} in the ledger; check the id `sovereign enqueue` printed"
        )
    decisions = ledger.decisions(task_id)
    if as_json:
        click.echo(
            json.dumps({"task": row, "decisions": [asdict(d) for d in decisions]}, default=str)
        )
        return
    click.echo(f"task {task_id}: {row.get('status')} ({row.get('kind')})")
    if row.get("error"):
        click.echo(f"  error: {row['error']}")
    for d in decisions:
        by = f" by {d.decided_by}" if d.decided_by else ""
        why = f": {d.reason}" if d.reason else ""
        click.echo(f"  attempt {d.attempt}: {d.verdict}{by}{why}")
