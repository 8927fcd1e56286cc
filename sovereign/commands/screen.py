"""The status screen: ``sovereign status`` with no task id.

The figures come from ``sovereign.status_report.gather``; this module only draws them,
through ``sovereign.output`` (rich tables on a terminal, plain columns in a pipe).
"""

from __future__ import annotations

from typing import Any

from arbiter.settings import load_settings
from sovereign import output


def show(as_json: bool) -> None:
    """Print the deployment's status: health, spend against caps, queues, refusals."""
    from sovereign.status_report import gather

    report = gather(load_settings())
    if as_json:
        output.emit_json(report)
        return
    render(report)


def render(report: dict[str, Any]) -> None:
    """Draw a report ``gather`` made."""
    policy = report.get("policy") or {}
    version = policy.get("version") or "none loaded"
    output.say(f"sovereign status at {report['generated_at'][:19]}Z, policy {version}")
    if policy.get("error"):
        output.say(f"the policy does not load: {policy['error']}", colour="red")
    _kill_switch(report.get("kill_switch"))
    output.say("")
    output.table(("part", "state", "detail"), _health_rows(report), title="health", colour_column=1)
    if "spend" not in report:
        output.say("the ledger does not answer: spend and work are unknown", colour="red")
        return
    output.say("")
    output.table(("measure", "used", "cap", "used %", "rule"), _limit_rows(report), title="budget")
    output.say("")
    output.table(("what", "count", "detail"), _work_rows(report), title="work")
    pending = report["approvals"]["tasks"]
    if pending:
        output.say("")
        output.table(
            ("requested", "task", "kind", "why"),
            [(a["requested_at"][:16], a["task_id"], a["kind"], a["reason"]) for a in pending],
            title="waiting for approval (`sovereign approve ID` or `sovereign reject ID`)",
        )
    blocked = report["blocked"]
    if blocked:
        output.say("")
        output.table(
            ("at", "task", "verdict", "by", "reason"),
            [
                (b["at"][:19], b["task_id"], b["verdict"], b["decided_by"], b["reason"])
                for b in blocked
            ],
            title="last refusals",
            colour_column=2,
        )


def _kill_switch(state: dict[str, Any] | None) -> None:
    if state is None:
        return
    if state["halted"]:
        for scope in state["scopes"]:
            who = f" by {scope['by']}" if scope["by"] else ""
            since = f" since {scope['since'][:16]}Z" if scope["since"] else ""
            why = scope["reason"] or "no reason given"
            output.say(
                f"HALTED ({scope['scope']}){since}{who}: {why}; "
                f"`sovereign resume --scope {scope['scope']}` clears it",
                colour="red",
            )
    else:
        output.say("kill switch: off", colour="green")


def _state(ok: bool) -> str:
    return "ok" if ok else "down"


def _health_rows(report: dict[str, Any]) -> list[tuple[Any, ...]]:
    health = report["health"]
    rows: list[tuple[Any, ...]] = []
    broker = health["broker"]
    rows.append(("broker", _state(broker["ok"]), f"{broker['url'] or ''} {broker['detail']}"))
    database = health.get("database")
    if database is not None:
        rows.append(("ledger", _state(database["ok"]), f"{database['url']} {database['detail']}"))
    workers = health["workers"]
    if workers:
        rows += [(f"worker {w['name']}", _state(w["ok"]), "answers ping") for w in workers]
    else:
        rows.append(("workers", "down", "no worker answers ping"))
    model = health["local_model"]
    rows.append(("local model", _state(model["ok"]), f"{model['backend']}: {model['detail']}"))
    flower = health["flower"]
    rows.append(("flower", _state(flower["ok"]), f"{flower['url']} {flower['detail']}"))
    webhook = report.get("webhook") or {}
    if webhook.get("configured"):
        rows.append(("alert webhook", "ok", f"configured ({webhook['where']})"))
    else:
        rows.append(("alert webhook", "off", "SOVEREIGN_ALERT_WEBHOOK is not set"))
    return rows


def _limit_row(name: str, figure: dict[str, Any]) -> tuple[Any, ...]:
    share = figure["share"]
    cap = figure["cap"]
    rule = figure["rule"]
    if rule and figure.get("tier"):
        rule = f"{rule} ({figure['tier']})"
    return (
        name,
        figure["used"],
        cap if cap is not None else "no cap",
        f"{share:.0%}" if share is not None else "",
        rule,
    )


def _limit_rows(report: dict[str, Any]) -> list[tuple[Any, ...]]:
    spend, tokens = report["spend"], report["tokens"]
    return [
        _limit_row("spend today (USD)", spend["today_usd"]),
        _limit_row("spend this month (USD)", spend["month_usd"]),
        _limit_row("cloud calls today", spend["today_cloud_calls"]),
        _limit_row("tokens, last hour", tokens["last_hour"]),
        _limit_row("tokens today", tokens["today"]),
    ]


def _work_rows(report: dict[str, Any]) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = [
        (f"queue {name}", depth, "messages waiting") for name, depth in report["queues"].items()
    ]
    held = report["reservations"]
    by_tier = ", ".join(f"{t} {usd:.4f}" for t, usd in held["held_usd_by_tier"].items())
    rows.append(
        ("held reservations", held["held"], f"{held['held_usd']:.4f} USD {by_tier}".strip())
    )
    rows.append(("pending approvals", report["approvals"]["pending"], ""))
    rows.append(("poisoned tasks", report["poisoned"]["count"], ""))
    return rows
