"""Explaining a task afterwards: everything the ledger holds about it, in one shape.

``read`` gathers the task's row, its decision records, its reservations and billed calls,
its approvals and the published policy versions its decisions were made under.
``explanation`` turns that into the plain mapping ``sovereign why`` prints (and emits as
JSON): the rules that fired are read from each decision's trace, and their source lines
from the sources of the version the decision names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from arbiter.ledger import control, decisions
from arbiter.ledger.control import PolicyRecord
from arbiter.ledger.decisions import StoredDecision
from arbiter.ledger.models import NANO, Approval, ModelCall, Reservation, table
from arbiter.ledger.windows import from_db

if TYPE_CHECKING:
    from arbiter.lang.excerpt import RuleSource

_res = table(Reservation)
_calls = table(ModelCall)
_approvals = table(Approval)


@dataclass(frozen=True, slots=True)
class TaskHistory:
    """A task's rows as the ledger holds them."""

    task: dict[str, Any]
    decisions: list[StoredDecision]
    reservations: list[dict[str, Any]]
    calls: list[dict[str, Any]]
    approvals: list[dict[str, Any]]
    policies: dict[str, PolicyRecord]  # the versions its decisions name that were published


def read(conn: Connection, task_id: str) -> TaskHistory | None:
    """The task's history, or None when the ledger has no such task."""
    task = decisions.task_row(conn, task_id)
    if task is None:
        return None
    made = decisions.listing(conn, task_id)
    held = conn.execute(select(_res).where(_res.c.task_id == task_id).order_by(_res.c.id))
    calls = conn.execute(select(_calls).where(_calls.c.task_id == task_id).order_by(_calls.c.id))
    asked = conn.execute(
        select(_approvals).where(_approvals.c.task_id == task_id).order_by(_approvals.c.id)
    )
    policies: dict[str, PolicyRecord] = {}
    for version in dict.fromkeys(d.policy_version for d in made if d.policy_version):
        record = control.policy_record(conn, version, first=True)
        if record is not None:
            policies[version] = record
    return TaskHistory(
        task=plain(task),
        decisions=made,
        reservations=[plain(row._mapping) for row in held],
        calls=[plain(row._mapping) for row in calls],
        approvals=[plain(row._mapping) for row in asked],
        policies=policies,
    )


def plain(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A row as JSON-ready values: aware UTC times, nano-dollars as dollars."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        key = str(name)
        if isinstance(value, datetime):
            value = from_db(value).isoformat()
        if key.endswith("_nusd"):
            key, value = key[: -len("_nusd")] + "_usd", None if value is None else value / NANO
        out[key] = value
    return out


def fired_rules(
    trace: list[Any] | None, sources: Mapping[str, RuleSource] | None
) -> list[dict[str, Any]]:
    """The rules whose action fired, in evaluation order, with their source lines.

    A rule fired its ``then`` when its trace step is true, and its ``otherwise`` when it
    was evaluated (not skipped) and false. Without the sources only ``then`` is known.
    """
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for step in trace or []:
        check = str(step.get("check", "")) if isinstance(step, Mapping) else ""
        if not check.startswith("rule "):
            continue
        name = check[len("rule ") :]
        source = sources.get(name) if sources is not None else None
        detail = str(step.get("detail", ""))
        if step.get("result") is True:
            via, action = "then", source.then_action if source else None
        elif source and source.otherwise_action and not detail.startswith("skipped"):
            via, action = "otherwise", source.otherwise_action
        else:
            continue
        if (name, via) in seen:  # a Reroute's second pass repeats the rules
            continue
        seen.add((name, via))
        where = source.to_dict() if source else {}
        out.append(
            {
                "rule": name,
                "action": action,
                "via": via,
                "condition": detail,
                "file": where.get("file"),
                "line": where.get("line"),
                "end_line": where.get("end_line"),
                "source": where.get("text"),
            }
        )
    return out


def _decision(d: StoredDecision, sources: Mapping[str, RuleSource] | None) -> dict[str, Any]:
    return {
        "id": d.id,
        "attempt": d.attempt,
        "created_at": d.created_at.isoformat(),
        "verdict": d.verdict,
        "decided_by": d.decided_by,
        "reason": d.reason,
        "retry_after_s": d.retry_after_s,
        "policy_version": d.policy_version,
        "candidate": d.candidate,
        "route": d.route,
        "reserved_usd": d.reserved_usd,
        "fired": fired_rules(d.trace, sources),
        "facts": d.facts,
        "trace": d.trace or [],
    }


def explanation(
    history: TaskHistory, unpublished: Mapping[str, Mapping[str, str]] | None = None
) -> dict[str, Any]:
    """Everything ``sovereign why`` shows, as one JSON-ready mapping.

    ``unpublished`` gives the sources of versions the ledger lacks (a gate decides under
    the policy files while nothing is published), by version.
    """
    from arbiter.lang.excerpt import rule_sources  # lark: only when explaining

    texts = {**(unpublished or {}), **{v: p.sources for v, p in history.policies.items()}}
    rules = {v: rule_sources(sources) for v, sources in texts.items()}
    made = [_decision(d, rules.get(d.policy_version or "")) for d in history.decisions]
    numbers = sorted(
        {d["attempt"] for d in made}
        | {r["attempt"] for r in history.reservations}
        | {c["attempt"] for c in history.calls}
    )
    attempts = [
        {
            "attempt": n,
            "verdicts": [d["verdict"] for d in made if d["attempt"] == n],
            "reservations": [r for r in history.reservations if r["attempt"] == n],
            "call": next((c for c in history.calls if c["attempt"] == n), None),
        }
        for n in numbers
    ]
    cost = sum(c["cost_usd"] or 0 for c in history.calls)
    last = history.decisions[-1] if history.decisions else None
    return {
        "task": history.task,
        "verdict": last.verdict if last else None,
        "route": last.route if last else None,
        "policy_version": last.policy_version if last else None,
        "decisions": made,
        "policies": {
            version: {
                "version": version,
                "published": version in history.policies,
                "sources": "ledger"
                if version in history.policies
                else "files"
                if version in texts
                else None,
                "first_published_at": _when(history.policies.get(version)),
                "published_by": _by(history.policies.get(version)),
            }
            for version in dict.fromkeys(d["policy_version"] for d in made if d["policy_version"])
        },
        "attempts": attempts,
        "approvals": history.approvals,
        "cost": {
            "cost_usd": cost,
            # What the gate held for each attempt (a re-admission replaces its own hold).
            "reserved_usd": sum(
                a["reservations"][-1]["amount_usd"] or 0 for a in attempts if a["reservations"]
            ),
            "held_usd": sum(
                r["amount_usd"] or 0 for r in history.reservations if r["status"] == "held"
            ),
            "calls": len(history.calls),
        },
    }


def _when(record: PolicyRecord | None) -> str | None:
    return record.published_at.isoformat() if record is not None else None


def _by(record: PolicyRecord | None) -> str | None:
    return record.published_by if record is not None else None


ANSWER_LINES = 5
TERMINAL = frozenset({"succeeded", "failed", "blocked", "poisoned"})


def summary(history: TaskHistory, answer_lines: int = ANSWER_LINES) -> dict[str, Any]:
    """The short form ``sovereign status TASK_ID`` shows: route, model, cost, times and
    the answer's first lines."""
    task, calls = history.task, history.calls
    last = history.decisions[-1] if history.decisions else None
    route = dict(last.route) if last and last.route else None
    call = calls[-1] if calls else None
    started = min((c["started_at"] for c in calls if c["started_at"]), default=None)
    if started is None and task["status"] == "running":
        started = task["updated_at"]  # marked running when its worker began the call
    finished = call["finished_at"] if call else None
    if finished is None and task["status"] in TERMINAL:
        finished = task["updated_at"]
    held = {}
    for r in history.reservations:  # the last hold of each attempt
        held[r["attempt"]] = r["amount_usd"] or 0
    return {
        "status": task["status"],
        "kind": task["kind"],
        "verdict": last.verdict if last else None,
        "policy_version": last.policy_version if last else None,
        "route": route,
        "provider": call["provider"] if call else (route or {}).get("provider"),
        "model": call["model"] if call else (route or {}).get("model"),
        "cost_usd": sum(c["cost_usd"] or 0 for c in calls),
        "reserved_usd": sum(held.values()),
        "submitted_at": task["created_at"],
        "started_at": started,
        "finished_at": finished,
        "answer": _first_lines(task.get("result"), answer_lines),
    }


def _first_lines(result: Any, count: int) -> str | None:
    """The answer's first lines (its JSON for a structured answer with no text)."""
    if not isinstance(result, Mapping):
        return None
    text = result.get("text")
    if not text and result.get("json") is not None:
        text = json.dumps(result["json"], ensure_ascii=False, indent=1)
    if not isinstance(text, str) or not text.strip():
        return None
    lines = text.strip().splitlines()
    shown = "\n".join(lines[:count])
    return shown + ("\n…" if len(lines) > count else "")
