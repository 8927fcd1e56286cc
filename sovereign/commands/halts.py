"""The kill switch: `halt [--scope all|cloud|local] --reason TEXT` and `resume [--scope]`.

A halt is stored in the ledger, so it survives restarts, and policies see it as
``system.halted`` (scope all) and ``system.halted_scopes``. The gate refuses what a halt
covers; workers set aside the tasks already queued for it, which run after `resume`.
"""

from __future__ import annotations

from typing import Any

import click

from arbiter.ledger.halts import SCOPES
from arbiter.settings import Settings, load_settings
from sovereign import output
from sovereign.commands.approvals import user


def register(group: click.Group) -> None:
    for command in (halt, resume):
        group.add_command(command)


def _ledger(settings: Settings | None = None) -> Any:
    from arbiter.ledger import Ledger

    return Ledger.from_settings(settings or load_settings())


def _work(scope: str) -> str:
    return "all work" if scope == "all" else f"{scope} work"


@click.command()
@click.option(
    "--scope",
    type=click.Choice(SCOPES),
    default="all",
    show_default=True,
    help="What stops: all work, or only the cloud or the local tier.",
)
@click.option("--reason", default="halted by an operator", show_default=True)
def halt(scope: str, reason: str) -> None:
    """Turn the kill switch on: nothing new starts in the scope until `resume`."""
    settings = load_settings()
    ledger = _ledger(settings)
    who = user()
    in_flight = ledger.set_halt(scope, True, reason, who)
    output.say(f"halted {_work(scope)}: {reason}", colour="red")
    if settings.alert_webhook is not None:
        _alert(settings.alert_webhook.get_secret_value(), ledger, scope, reason, who)
    if in_flight:
        ids = ", ".join(task_id for task_id, _, _ in in_flight)
        output.say(f"  {len(in_flight)} call(s) already in flight finish: {ids}")
    output.say(f"  queued tasks it covers wait, and run after `sovereign resume --scope {scope}`")


@click.command()
@click.option(
    "--scope",
    type=click.Choice(SCOPES),
    help="The scope to clear (default: every scope that is on).",
)
def resume(scope: str | None) -> None:
    """Turn the kill switch off, and send again the queued tasks it held back."""
    ledger = _ledger()
    on = ledger.halt_state().names
    cleared = [name for name in on if scope in (None, name)]
    for name in cleared:
        ledger.set_halt(name, False, None, user())
    if cleared:
        output.say(f"resumed {', '.join(cleared)}", colour="green")
    else:
        output.say(f"{_work(scope)} was not halted" if scope else "nothing was halted")
    waiting = ledger.halted_tasks()
    if waiting:
        _send_again(ledger, len(waiting))
    for line in ledger.halt_state().sentences():
        output.say(f"  still: {line}", colour="red")


def _alert(webhook: str, ledger: Any, scope: str, reason: str, who: str) -> None:
    """Tell the webhook that an operator halted work; waits a few seconds for the post, and
    says so when the webhook did not take it."""
    from arbiter.alerts import Alert, Outbox

    day = ledger.clock().astimezone(ledger.zone).date()
    text = (
        f"🛑 {who} halted {_work(scope)}: {reason}. `sovereign resume --scope {scope}` clears it."
    )
    outbox = Outbox(webhook, ledger)
    outbox.put(Alert(f"halt:{day}:operator:{scope}:{reason}", "halt", text))
    if not outbox.flush(outbox.exit_wait_s) or outbox.failed:
        output.say(f"  the alert to {outbox.where} is not sent yet (the webhook is slow or down)")


def _send_again(ledger: Any, count: int) -> None:
    from arbiter.errors import BrokerUnavailable
    from tasks import get_app
    from tasks.broker import ping
    from tasks.resume import publish_resumable

    app = get_app()
    try:
        ping(app.conf.broker_url)
    except BrokerUnavailable:
        output.say(
            f"  {count} queued task(s) wait; the broker does not answer, so the workers' "
            "maintenance sweep sends them once it does"
        )
        return
    done = publish_resumable(app, ledger)
    if done.sent:
        output.say(f"  {len(done.sent)} queued task(s) sent again")
    if done.refused:
        output.say(f"  {len(done.refused)} refused by the gate now (`sovereign why ID`)")
    if done.failed:
        output.say(f"  {len(done.failed)} could not be sent; the maintenance sweep retries")
