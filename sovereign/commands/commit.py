"""`sovereign commit`: submit a patch to be committed on a branch of a local repository.

The patch comes from a file (or standard input) or from an earlier task's answer (a
`code` task's diff). The repository, the branch name and the patch are checked here;
the gate then decides (the default policy parks every commit for a person's approval),
and a local worker applies and commits it with git (``tasks/commit.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from arbiter.errors import InputError, TaskBlocked
from sovereign import output


def register(group: click.Group) -> None:
    group.add_command(commit)


def _read_patch(path: str) -> str:
    data = sys.stdin.buffer.read() if path == "-" else _read_file(Path(path))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"the patch {path} is not UTF-8 text; convert it to UTF-8") from None


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the patch {path} ({exc.strerror}); check the path") from None


def _patch_of_task(ledger: Any, task_id: str) -> tuple[str, bool]:
    """The diff in an earlier task's answer, and whether that task was confidential."""
    from tasks.patch import extract_patch

    row = ledger.task(task_id)
    if row is None:
        raise InputError(f"no task {task_id} in the ledger; check the id given to --from-task")
    text = str((row.get("result") or {}).get("text") or "")
    if row.get("status") != "succeeded" or not text:
        raise InputError(
            f"task {task_id} has no answer yet (it is {row.get('status')}); wait for it to "
            "succeed, or give the patch with --patch"
        )
    patch = extract_patch(text)
    if patch is None:
        raise InputError(
            f"the answer of task {task_id} holds no unified diff; ask the code task for "
            "its change as a diff, or give the patch with --patch"
        )
    return patch, bool(row.get("confidential"))


@click.command()
@click.option("--repo", required=True, help="The local git repository (its top folder).")
@click.option("--branch", required=True, help="The branch to commit on (made from HEAD if new).")
@click.option("--patch", "patch_file", help="The patch file (`-` reads standard input).")
@click.option("--from-task", help="Commit the diff in this earlier task's answer.")
@click.option("-m", "--message", help="The commit message.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def commit(
    repo: str,
    branch: str,
    patch_file: str | None,
    from_task: str | None,
    message: str | None,
    as_json: bool,
) -> None:
    """Submit a patch to commit on a branch; it waits for approval under the default policy."""
    from tasks import get_app, submit
    from tasks.broker import ping
    from tasks.commit import branch_problem, check_repo

    if (patch_file is None) == (from_task is None):
        raise InputError("give the patch with exactly one of --patch FILE and --from-task ID")
    where = str(Path(repo).expanduser().resolve())
    check_repo(where)
    problem = branch_problem(branch)
    if problem:
        raise InputError(problem)
    app = get_app()
    ping(app.conf.broker_url)
    confidential = False
    if from_task is not None:
        patch, confidential = _patch_of_task(app.sovereign_runtime.get().ledger, from_task)  # type: ignore[attr-defined]
    else:
        patch = _read_patch(str(patch_file))
    extra: dict[str, Any] = {"repo": where, "branch": branch}
    extra["message"] = message or (
        f"Apply the patch of task {from_task}"
        if from_task
        else f"Apply {Path(str(patch_file)).name}"
    )
    if from_task:
        extra["from_task"] = from_task
    try:
        # Work derived from confidential work is confidential.
        handle = submit(
            "commit", patch, app=app, source="cli", tags=["commit"],
            confidential=confidential, extra=extra,
        )  # fmt: skip
    except TaskBlocked as exc:
        if as_json:
            decision = exc.decision.to_dict() if exc.decision is not None else None
            output.emit_json({"task_id": exc.task_id, "decision": decision, "error": str(exc)})
        else:
            output.say(f"blocked: {exc}", colour="red")
        raise SystemExit(1) from None
    decision = handle.decision.to_dict() if handle.decision is not None else None
    if as_json:
        output.emit_json({"task_id": handle.task_id, "queue": handle.queue, "decision": decision})
        return
    verdict = handle.verdict
    output.say(f"commit {handle.task_id}: {verdict}", colour=output.COLOURS.get(verdict))
    if handle.parked:
        reason = handle.decision.reason if handle.decision is not None else None
        output.say(f"  waits for approval: {reason}")
        output.say(
            f"  see it with `sovereign pending`; approve with `sovereign approve {handle.task_id}`"
        )
    else:
        output.say(
            f"  queued on {handle.queue}; `sovereign status {handle.task_id}` shows the commit id"
        )
