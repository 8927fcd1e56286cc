"""Operating it, end to end: approvals, commits with real git, and a cloud halt under load."""

from __future__ import annotations

import getpass
import hashlib
import json
import subprocess
from collections.abc import Callable
from datetime import UTC
from pathlib import Path

import pytest

from arbiter.errors import TaskBlocked
from tasks import submit
from tests.pipeline.conftest import CLOUD_MODEL, Stack, wait_for

pytestmark = pytest.mark.e2e

README = "# Logo\nThe studio's logo.\nColour: blue\n"
PATCH = """\
diff --git a/README.md b/README.md
--- a/README.md
+++ b/README.md
@@ -1,3 +1,3 @@
 # Logo
 The studio's logo.
-Colour: blue
+Colour: green
"""


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def make_repo(path: Path) -> Path:
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Ann")
    git(path, "config", "user.email", "ann@studio.test")
    (path / "README.md").write_text(README)
    git(path, "add", "README.md")
    git(path, "commit", "-q", "-m", "first")
    return path


def fingerprint(repo: Path) -> dict[str, str]:
    return {
        str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(repo.rglob("*"))
        if p.is_file()
    }


def status(stack: Stack, task_id: str) -> str | None:
    return (stack.ledger.task(task_id) or {}).get("status")


def test_approve_runs_the_task_and_records_who_when_and_the_note(
    redis_url: str, make_stack: Callable[..., Stack]
) -> None:
    stack = make_stack(redis_url)
    stack.start_worker("local")
    prompt = "Refactor the invoice module.\nKeep the public API.\nline 3\nline 4\nline 5\nline 6"
    handle = submit("code", prompt, tags=["commit"], app=stack.app)
    assert handle.parked

    listed = stack.sovereign("pending", "--json")
    assert listed.returncode == 0, listed.stderr
    (item,) = json.loads(listed.stdout)
    assert item["task_id"] == handle.task_id and item["kind"] == "code"
    assert item["submitted_by"] == getpass.getuser() and item["submitted_at"]
    assert item["reason"] == "commits need a person" and item["status"] == "pending"
    assert item["preview"]["prompt"][:2] == ["Refactor the invoice module.", "Keep the public API."]
    assert item["preview"]["prompt"][-1] == "… 1 more lines"
    plain = stack.sovereign("pending")
    assert handle.task_id in plain.stdout and "| Keep the public API." in plain.stdout

    approved = stack.sovereign("approve", handle.task_id, "--note", "reviewed the plan")
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.startswith(f"approved {handle.task_id} (code); queued on local")
    wait_for(lambda: status(stack, handle.task_id) == "succeeded", 60, "the approved task to run")
    assert sum("Refactor the invoice module." in p for p in stack.fake.prompts()) == 1

    (record,) = stack.ledger.approvals(status=None)
    assert (record.status, record.decided_by) == ("granted", getpass.getuser())
    assert record.note == "reviewed the plan", "the note has its own column"
    assert record.reason == "commits need a person", "the policy's reason is kept"
    assert record.decided_at is not None and record.decided_at >= record.requested_at
    decisions = stack.ledger.decisions(handle.task_id)
    assert [d.verdict for d in decisions] == ["approval", "proceed"]
    assert [d.facts["task"]["approved"] for d in decisions] == [False, True]


def test_reject_means_it_never_runs(redis_url: str, make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(redis_url)
    stack.start_worker("local")
    handle = submit("code", "drop the production tables", tags=["commit"], app=stack.app)
    rejected = stack.sovereign("reject", handle.task_id, "--note", "no, never")
    assert rejected.returncode == 0, rejected.stderr
    assert status(stack, handle.task_id) == "blocked"
    (record,) = stack.ledger.approvals(status="rejected")
    assert (record.decided_by, record.note) == (getpass.getuser(), "no, never")
    again = stack.sovereign("approve", handle.task_id)
    assert again.returncode == 1
    assert again.stderr.strip() == (
        f"error: task {handle.task_id} has no pending approval; list them with "
        "`sovereign pending` and use one of those ids"
    )
    assert stack.sovereign("pending").stdout.strip() == "no tasks wait for approval"
    assert "drop the production tables" not in " ".join(stack.fake.prompts())
    assert [d.verdict for d in stack.ledger.decisions(handle.task_id)] == ["approval"]


def test_commit_waits_for_approval_then_commits_on_the_branch(
    redis_url: str, make_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = make_stack(redis_url)
    stack.start_worker("local")
    repo = make_repo(tmp_path / "site")
    (tmp_path / "green.patch").write_text(PATCH)
    head = git(repo, "rev-parse", "HEAD")
    sent = stack.sovereign(
        "commit", "--repo", str(repo), "--branch", "logo/green",
        "--patch", str(tmp_path / "green.patch"), "-m", "Make the logo green",
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    task_id = sent.stdout.split()[1].rstrip(":")
    assert sent.stdout.startswith(f"commit {task_id}: approval")

    plain = stack.sovereign("pending")
    assert f"on branch logo/green of {repo}" in plain.stdout
    assert "README.md | +1 -1" in plain.stdout and "+Colour: green" in plain.stdout
    (item,) = json.loads(stack.sovereign("pending", "--json").stdout)
    assert item["preview"]["branch"] == "logo/green" and item["preview"]["repo"] == str(repo)

    assert stack.sovereign("approve", task_id).returncode == 0
    wait_for(lambda: status(stack, task_id) == "succeeded", 60, "the commit to be made")
    row = stack.ledger.task(task_id)
    assert row is not None
    commit = row["result"]["commit"]
    assert commit == git(repo, "rev-parse", "refs/heads/logo/green")
    assert git(repo, "log", "--format=%s", "logo/green") == "Make the logo green\nfirst"
    assert git(repo, "rev-parse", "HEAD") == head, "the checked-out branch did not move"
    assert stack.fake.calls == [], "a commit calls no model"
    call = stack.ledger.call_record(task_id, 1)
    assert call is not None and (call.provider, call.cost_usd) == ("git", 0.0)


def test_a_rejected_or_stale_commit_leaves_the_repository_as_it_was(
    redis_url: str, make_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = make_stack(redis_url)
    stack.start_worker("local")
    repo = make_repo(tmp_path / "site")
    (tmp_path / "green.patch").write_text(PATCH)
    (tmp_path / "stale.patch").write_text(PATCH.replace("-Colour: blue", "-Colour: red"))
    before = fingerprint(repo)

    def send(patch: str) -> str:
        sent = stack.sovereign(
            "commit", "--repo", str(repo), "--branch", "fix", "--patch", str(tmp_path / patch)
        )
        assert sent.returncode == 0, sent.stderr
        return sent.stdout.split()[1].rstrip(":")

    rejected = send("green.patch")
    assert stack.sovereign("reject", rejected).returncode == 0
    stale = send("stale.patch")
    assert stack.sovereign("approve", stale).returncode == 0
    wait_for(lambda: status(stack, stale) == "failed", 60, "the stale patch to fail")
    error = (stack.ledger.task(stale) or {}).get("error") or ""
    assert "the patch does not apply to HEAD" in error and "nothing was changed" in error
    assert fingerprint(repo) == before, "byte for byte, .git included"
    assert status(stack, rejected) == "blocked"

    bad = stack.sovereign("commit", "--repo", str(repo), "--branch", "a..b", "--patch", "x")
    assert bad.returncode == 1 and "is not a valid git branch name" in bad.stderr
    (repo / "README.md").write_text("edited, not committed\n")
    dirty = send("green.patch")
    assert stack.sovereign("approve", dirty).returncode == 0
    wait_for(lambda: status(stack, dirty) == "failed", 60, "the dirty repository to be refused")
    assert "has uncommitted changes" in ((stack.ledger.task(dirty) or {}).get("error") or "")


def test_a_cloud_halt_under_load_holds_cloud_work_and_lets_local_work_run(
    redis_url: str, make_stack: Callable[..., Stack]
) -> None:
    stack = make_stack(redis_url, cap=10.0)
    stack.start_worker("local")
    stack.start_worker("cloud")
    cloud = [submit("strategy", f"cloud {i} SLOW:0.6", app=stack.app) for i in range(8)]
    local = [submit("classify", f"local {i} SLOW:0.2", app=stack.app) for i in range(4)]
    markers = {f"cloud {i} SLOW:0.6": h.task_id for i, h in enumerate(cloud)}

    def task_of(prompt: str) -> str:
        return next((t for m, t in markers.items() if prompt.endswith(m)), prompt)

    wait_for(
        lambda: sum(c["model"] == CLOUD_MODEL for c in stack.fake.calls) >= 2,
        60,
        "the first cloud calls",
    )
    in_flight = stack.ledger.set_halt("cloud", True, "provider incident", by="test")
    since = stack.ledger.halt_state().scopes[0].since
    assert since is not None
    late = [submit("classify", f"late local {i}", app=stack.app) for i in range(3)]
    with pytest.raises(TaskBlocked, match="cloud work is halted: provider incident"):
        submit("strategy", "cloud after the halt", app=stack.app)

    for handle in local + late:
        assert handle.result(timeout=90)["text"], "local work goes on"

    def accounted() -> bool:
        waiting = {task_id for task_id, _, _ in stack.ledger.halted_tasks()}
        return all(h.task_id in waiting or status(stack, h.task_id) == "succeeded" for h in cloud)

    wait_for(accounted, 90, "every cloud task to finish its call or be set aside")
    waiting = {task_id for task_id, _, _ in stack.ledger.halted_tasks()}
    assert waiting, "some cloud tasks were still queued when the halt came"
    assert all(status(stack, t) == "queued" for t in waiting), "set aside, not failed"
    # No cloud call started after the halt, other than those already in flight.
    started = {task_id for task_id, _, tier in in_flight if tier == "cloud"}
    moment = since.astimezone(UTC).timestamp()
    cloud_after = {
        task_of(c["prompt"])
        for c in stack.fake.calls
        if c["model"] == CLOUD_MODEL and c["at"] >= moment
    }
    assert cloud_after <= started, (cloud_after, started)
    assert not waiting & {task_of(c["prompt"]) for c in stack.fake.calls}, "none reached it"
    local_after = [c for c in stack.fake.calls if c["model"] != CLOUD_MODEL and c["at"] > moment]
    assert len(local_after) >= 3, "local calls went on after the halt"

    resumed = stack.sovereign("resume", "--scope", "cloud")
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(waiting)} queued task(s) sent again" in resumed.stdout
    for handle in cloud:
        result = handle.result(timeout=120)
        assert result["attempt"] == 1, "no attempt was used up by waiting"
    assert stack.ledger.halted_tasks() == []
    for task_id in waiting:
        assert [d.verdict for d in stack.ledger.decisions(task_id)] == ["proceed", "proceed"]
