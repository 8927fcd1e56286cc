"""``sovereign why TASK_ID``: explain every decision about a task, afterwards.

It shows the verdicts, the facts each decision saw, the rules that fired with their
trace and their source lines in the policy version the decision was made under, the
route, what the task cost against what was reserved, and every attempt, retry and
approval. ``--json`` gives the same as one object (``arbiter.ledger.explain``).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click

from arbiter.errors import InputError


def register(group: click.Group) -> None:
    """Add ``why`` to ``group``."""
    group.add_command(why)


@click.command()
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="Print everything as one JSON object.")
def why(task_id: str, as_json: bool) -> None:
    """Explain why TASK_ID was decided as it was, and what came of it."""
    from arbiter.ledger import Ledger
    from arbiter.ledger.explain import explanation
    from arbiter.settings import load_settings
    from sovereign.output import emit_json

    settings = load_settings()
    ledger = Ledger.from_settings(settings)
    history = ledger.task_history(task_id)
    if history is None:
        raise InputError(
            f"no task {task_id} in the ledger; check the id `sovereign enqueue` printed"
        )
    found = explanation(history, _unpublished(history, settings.policy_path))
    if as_json:
        emit_json(found)
        return
    View(found, ledger.zone).show()


def _unpublished(history: Any, path: Path) -> dict[str, dict[str, str]]:
    """The policy files' sources, when a decision was made under them unpublished."""
    missing = {d.policy_version for d in history.decisions} - set(history.policies) - {None}
    if not missing:
        return {}
    from arbiter import load_policy
    from arbiter.errors import PolicyError

    try:
        policy = load_policy([path])
    except (PolicyError, OSError):
        return {}
    return {policy.version: dict(policy.sources)} if policy.version in missing else {}


def _money(value: float | None) -> str:
    return "" if value is None else f"${value:.6f}"


def _route(route: dict[str, Any] | None) -> str:
    if not route:
        return "none"
    head = f"{route.get('tier')} {route.get('provider')}/{route.get('model')}"
    rest = {k: v for k, v in route.items() if k not in ("tier", "provider", "model")}
    extra = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in rest.items())
    return f"{head} ({extra})" if extra else head


class View:
    """The human form of an explanation, section by section."""

    def __init__(self, found: dict[str, Any], zone: ZoneInfo) -> None:
        self.found = found
        self.zone = zone

    def when(self, text: str | None) -> str:
        if not text:
            return ""
        return datetime.fromisoformat(text).astimezone(self.zone).strftime("%Y-%m-%d %H:%M:%S")

    def show(self) -> None:
        self.overview()
        for number, decision in enumerate(self.found["decisions"], start=1):
            self.decision(number, decision)
        self.attempts()
        self.approvals()

    def overview(self) -> None:
        from sovereign.output import fields

        f = self.found
        task, cost = f["task"], f["cost"]
        policies = [
            f"{v} (first published {self.when(p['first_published_at'])} by {p['published_by']})"
            if p["published"]
            else f"{v} (never published; the policy files hold it)"
            if p["sources"] == "files"
            else f"{v} (never published, and not the policy files: no source lines)"
            for v, p in f["policies"].items()
        ]
        fields(
            [
                ("status", task["status"]),
                ("verdict", f["verdict"]),
                ("route", _route(f["route"])),
                (
                    "cost",
                    f"{_money(cost['cost_usd'])} of {_money(cost['reserved_usd'])} reserved "
                    f"({cost['calls']} billed call{'s' if cost['calls'] != 1 else ''}"
                    + (f"; {_money(cost['held_usd'])} still held" if cost["held_usd"] else "")
                    + ")",
                ),
                ("submitted", self.when(task["created_at"])),
                ("policy", "; ".join(policies) or "none recorded"),
                *([("error", task["error"])] if task.get("error") else []),
            ],
            title=f"task {task['id']} ({task['kind']}, attempt {task['attempt']})",
        )

    def decision(self, number: int, d: dict[str, Any]) -> None:
        from sovereign.output import fields, say, table

        say("")
        by = f" by {d['decided_by']}" if d["decided_by"] else ""
        why = f": {d['reason']}" if d["reason"] else ""
        retry = f", retry after {d['retry_after_s']:g} s" if d["retry_after_s"] else ""
        if d["verdict"] in ("proceed", "throttle") and any(
            f["action"] == "RequireApproval" for f in d["fired"]
        ):
            why += " (the approval a rule asks for was granted)"
        fields(
            [
                ("verdict", d["verdict"]),
                ("why", f"{d['verdict']}{by}{why}{retry}"),
                ("policy", d["policy_version"]),
                (
                    "route",
                    _route(d["route"])
                    + (f" (candidate {d['candidate']})" if d["candidate"] else ""),
                ),
                ("reserved", _money(d["reserved_usd"])),
            ],
            title=f"decision {number}: attempt {d['attempt']}, {self.when(d['created_at'])}",
        )
        if not d["fired"]:
            say("  no rule fired")
        for fired in d["fired"]:
            action = fired["action"] or "its action"
            where = f"{fired['file']}:{fired['line']}" if fired["file"] else "source not stored"
            say(f"  fired: {fired['rule']} -> {action} ({fired['via']}), {where}", colour="bold")
            if fired["source"]:
                for offset, line in enumerate(str(fired["source"]).splitlines()):
                    say(f"    {fired['line'] + offset:>4} | {line}")
        if d["trace"]:
            table(
                ["", "check", "detail"],
                [
                    ("yes" if t.get("result") else "no", t.get("check"), t.get("detail"))
                    for t in d["trace"]
                ],
                title="  trace",
            )
        say("  facts:")
        for root, value in (d["facts"] or {}).items():
            say(f"    {root}: {json.dumps(value, ensure_ascii=False, default=str)}")

    def attempts(self) -> None:
        from sovereign.output import say, table

        rows = []
        for a in self.found["attempts"]:
            held = a["reservations"][-1] if a["reservations"] else None
            call = a["call"] or {}
            rows.append(
                (
                    a["attempt"],
                    ", ".join(a["verdicts"]) or "(no decision)",
                    _money(held["amount_usd"]) if held else "",
                    (held["status"] + (f": {held['reason']}" if held.get("reason") else ""))
                    if held
                    else "",
                    f"{call['provider']}/{call['model']}" if call else "",
                    _money(call.get("cost_usd")) if call else "",
                    f"{call['input_tokens']:,} in, {call['output_tokens']:,} out" if call else "",
                    call.get("status", ""),
                    self.when(call.get("started_at")),
                    self.when(call.get("finished_at")),
                )
            )
        say("")
        table(
            ["attempt", "verdicts", "reserved", "hold", "model", "cost", "tokens", "call",
             "started", "finished"],
            rows,
            title="attempts (a retry is a new attempt through the gate)",
        )  # fmt: skip

    def approvals(self) -> None:
        from sovereign.output import say, table

        asked = self.found["approvals"]
        if not asked:
            return
        say("")
        table(
            ["requested", "status", "by", "when", "why parked", "note"],
            [
                (
                    self.when(a.get("requested_at")),
                    a.get("status"),
                    a.get("decided_by"),
                    self.when(a.get("decided_at")),
                    a.get("reason"),
                    a.get("note"),
                )
                for a in asked
            ],
            title="approvals",
            colour_column=1,
        )
