"""Approvals: `pending`, `approve` and `reject`.

`pending` shows what a person is asked to approve: the kind, who submitted it and when,
why the policy parked it, and a preview (the prompt's first lines, or a commit's
diffstat and first hunks). An approved task goes through the gate again with
``task.approved = true``, so budgets and halts still apply; it keeps its confidentiality.
"""

from __future__ import annotations

import getpass
from typing import Any

import click

from arbiter.errors import TaskBlocked, TaskParked
from arbiter.ledger import ApprovalRecord
from arbiter.settings import load_settings
from sovereign import output

PROMPT_LINES = 5
HUNK_LINES = 12
LINE_CHARS = 160


def register(group: click.Group) -> None:
    for command in (pending, approve, reject):
        group.add_command(command)


def _ledger() -> Any:
    from arbiter.ledger import Ledger

    return Ledger.from_settings(load_settings())


def user() -> str:
    """Who is at the keyboard (recorded as who decided)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def preview(record: ApprovalRecord) -> dict[str, Any]:
    """What the person approving sees of the parked task."""
    from tasks.patch import diffstat, first_hunks

    job = record.job
    text = str(job.get("prompt") or "")
    if record.kind == "commit":
        extra = job.get("extra") or {}
        return {
            "repo": extra.get("repo"),
            "branch": extra.get("branch"),
            "message": extra.get("message"),
            "from_task": extra.get("from_task"),
            "diffstat": diffstat(text),
            "hunks": first_hunks(text, HUNK_LINES),
        }
    lines = text.splitlines()
    shown = [line[:LINE_CHARS] + ("…" if len(line) > LINE_CHARS else "") for line in lines]
    more = len(lines) - PROMPT_LINES
    return {"prompt": shown[:PROMPT_LINES] + ([f"… {more} more lines"] if more > 0 else [])}


def _as_json(r: ApprovalRecord) -> dict[str, Any]:
    return {
        "task_id": r.task_id,
        "kind": r.kind,
        "status": r.status,
        "confidential": r.confidential,
        "submitted_by": r.submitted_by,
        "submitted_at": r.submitted_at.isoformat() if r.submitted_at else None,
        "requested_at": r.requested_at.isoformat(),
        "reason": r.reason,
        "decided_by": r.decided_by,
        "decided_at": r.decided_at.isoformat() if r.decided_at else None,
        "note": r.note,
        "preview": preview(r),
    }


@click.command()
@click.option("--all", "show_all", is_flag=True, help="Include approved and rejected tasks.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def pending(show_all: bool, as_json: bool) -> None:
    """List the tasks waiting for a person's approval, with a preview of each."""
    records = _ledger().approvals(None if show_all else "pending")
    if as_json:
        output.emit_json([_as_json(r) for r in records])
        return
    if not records:
        output.say("no tasks wait for approval")
        return
    output.table(
        ["task", "kind", "status", "submitted by", "parked at", "why"],
        [
            (
                r.task_id,
                r.kind + (" (confidential)" if r.confidential else ""),
                r.status,
                r.submitted_by,
                f"{r.requested_at:%Y-%m-%d %H:%M}",
                r.reason,
            )
            for r in records
        ],
        title="waiting for approval" if not show_all else "approvals",
        colour_column=2,
    )
    for r in records:
        _print_preview(r)
    if any(r.status == "pending" for r in records):
        output.say("approve with `sovereign approve ID`, or refuse with `sovereign reject ID`")


def _print_preview(r: ApprovalRecord) -> None:
    shown = preview(r)
    output.say("")
    output.say(f"{r.task_id} ({r.kind})", colour="bold")
    if r.status != "pending":
        note = f": {r.note}" if r.note else ""
        when = f" at {r.decided_at:%Y-%m-%d %H:%M}" if r.decided_at else ""
        output.say(f"  {r.status} by {r.decided_by}{when}{note}")
    if r.kind == "commit":
        origin = f" (the patch of task {shown['from_task']})" if shown.get("from_task") else ""
        output.say(f"  on branch {shown['branch']} of {shown['repo']}{origin}")
        if shown.get("message"):
            output.say(f"  message: {shown['message']}")
        for line in [*shown["diffstat"], "", *shown["hunks"]]:
            output.say(f"  {line}" if line else "")
        return
    for line in shown["prompt"]:
        output.say(f"  | {line}")


@click.command()
@click.argument("task_id")
@click.option("--note", help="Why you approve it (kept with the approval).")
def approve(task_id: str, note: str | None) -> None:
    """Approve a parked task: it passes the gate again (budgets and halts still apply)."""
    from tasks import get_app
    from tasks.broker import ping

    app = get_app()
    # A broker that does not answer is reported before anything is recorded.
    ping(app.conf.broker_url)
    ledger = app.sovereign_runtime.get().ledger  # type: ignore[attr-defined]
    payload = ledger.grant(task_id, user(), note)
    kwargs = dict(payload.get("kwargs") or {})
    kwargs["approved"] = True
    kind = str((kwargs.get("job") or {}).get("kind") or "task")
    try:
        app.send_task(str(payload["task"]), kwargs=kwargs, task_id=task_id, shadow=kind)
    except TaskBlocked as exc:
        output.say(f"approved, but the gate now refuses it: {exc}", colour="red")
        raise SystemExit(1) from None
    except TaskParked as exc:
        output.say(f"approved, but it is parked again: {exc}", colour="yellow")
        raise SystemExit(1) from None
    admission = app.sovereign_router.last_admission()  # type: ignore[attr-defined]
    queue = admission.queue if admission is not None else None
    output.say(f"approved {task_id} ({kind}); queued on {queue}", colour="green")


@click.command()
@click.argument("task_id")
@click.option("--note", help="Why you refuse it (kept with the approval).")
def reject(task_id: str, note: str | None) -> None:
    """Reject a parked task; it never runs."""
    _ledger().reject(task_id, user(), note)
    output.say(f"rejected {task_id}; it will not run")
