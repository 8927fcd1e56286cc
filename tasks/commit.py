"""The `commit` task: apply a patch to a local git repository on a branch, with real git.

No model is called. The patch is applied to a temporary index built from the branch (or
from HEAD when the branch does not exist yet), never to the working tree, so a patch
that does not apply leaves the repository exactly as it was: nothing under ``.git`` is
written before the patch is known to apply (``git status`` runs without optional locks,
so it does not refresh the index either). The commit object is made with
``git commit-tree`` (no hooks run) and the branch moves last, in one ``update-ref``
that checks the branch's old value. When the branch is the one checked out, its index
and working tree are moved to the new commit first (``git read-tree -m -u``, which
refuses rather than overwrite a file).

A repository with uncommitted changes to tracked files, or in the middle of a merge or
rebase, is refused. Every commit carries a ``Sovereign-Task:`` trailer; a redelivered
task whose commit is already the branch's tip answers with that commit.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from arbiter.errors import InputError
from tasks.patch import changes, looks_like_patch

GIT_TIMEOUT_S = 120.0
TRAILER = "Sovereign-Task"
# `git check-ref-format --branch` rules, checked without running git.
_BAD_REF = re.compile(
    r"(^[-/.])|(/\.)|(\.\.)|(//)|(@\{)|([\x00-\x20\x7f~^:?*\[\\])|([/.]$)|(\.lock$)|(\.lock/)"
)
IN_PROGRESS = ("MERGE_HEAD", "CHERRY_PICK_HEAD", "REVERT_HEAD", "rebase-merge", "rebase-apply")


class CommitRefused(Exception):
    """The commit cannot be made; the message is one sentence saying why and what to do."""


def branch_problem(branch: str) -> str | None:
    """Why ``branch`` is not a valid branch name, or None."""
    if not branch or branch == "@" or _BAD_REF.search(branch):
        return (
            f"{branch!r} is not a valid git branch name (no spaces, '..', '~^:?*[\\\\', "
            "leading '-' or trailing '/', '.' or '.lock'); choose another --branch"
        )
    return None


def validate(extra: Mapping[str, Any], patch: str) -> dict[str, Any]:
    """Check a commit job's options (``repo``, ``branch``, ``message``); one InputError
    sentence for the first mistake. Pure: the repository itself is checked by
    ``check_repo`` at submit and again when the commit runs."""
    repo, branch = extra.get("repo"), extra.get("branch")
    if not isinstance(repo, str) or not repo or not os.path.isabs(repo):
        raise InputError(
            "a commit needs the absolute path of a local git repository: use "
            "`sovereign commit --repo PATH --branch NAME --patch FILE`"
        )
    if not isinstance(branch, str):
        raise InputError("a commit needs a branch to commit on: give --branch NAME")
    problem = branch_problem(branch)
    if problem:
        raise InputError(problem)
    message = extra.get("message")
    if message is not None and (not isinstance(message, str) or not message.strip()):
        raise InputError("the commit message is empty; give one with -m")
    if not looks_like_patch(patch):
        raise InputError(
            "the patch is not a unified diff (no ---/+++ file header and @@ hunk); "
            "make one with `git diff` or `diff -u`"
        )
    return dict(extra)


def _git(
    repo: str, *args: str, env: Mapping[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    full_env.update(env or {})
    try:
        return subprocess.run(
            ["git", "-C", repo, *args],
            capture_output=True,
            text=True,
            env=full_env,
            input=input,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        raise CommitRefused("git is not installed on this worker; install git") from None
    except subprocess.TimeoutExpired:
        raise CommitRefused(f"git {args[0]} took over {GIT_TIMEOUT_S:.0f}s in {repo}") from None


def _first_error(done: subprocess.CompletedProcess[str]) -> str:
    for line in (done.stderr or done.stdout).splitlines():
        if line.strip():
            return line.strip().removeprefix("error: ").removeprefix("fatal: ")
    return f"git exited with status {done.returncode}"


def check_repo(repo: str) -> None:
    """Refuse (one InputError sentence) a path that is not the top of a git work tree
    with at least one commit."""
    path = Path(repo)
    if not path.is_dir():
        raise InputError(f"{repo} is not a folder; give --repo the path of a git repository")
    try:
        top = _git(repo, "rev-parse", "--show-toplevel")
        head = _git(repo, "rev-parse", "-q", "--verify", "HEAD^{commit}")
    except CommitRefused as exc:
        raise InputError(str(exc)) from None
    if top.returncode != 0:
        raise InputError(f"{repo} is not a git repository; give --repo the top folder of one")
    if Path(top.stdout.strip()).resolve() != path.resolve():
        raise InputError(
            f"{repo} is inside the git repository {top.stdout.strip()}; give that top folder"
        )
    if head.returncode != 0:
        raise InputError(f"the repository {repo} has no commit yet; make a first commit")


def _refuse_unclean(repo: str) -> None:
    status = _git(repo, "status", "--porcelain", "--untracked-files=no")
    if status.returncode != 0:
        raise CommitRefused(f"{repo} is not a usable git repository: {_first_error(status)}")
    dirty = [line for line in status.stdout.splitlines() if line.strip()]
    if dirty:
        raise CommitRefused(
            f"the repository {repo} has uncommitted changes ({len(dirty)} file"
            f"{'s' if len(dirty) != 1 else ''}, e.g. {dirty[0][3:]}); commit or stash them, "
            "then submit the commit again"
        )
    for name in IN_PROGRESS:
        where = _git(repo, "rev-parse", "--git-path", name).stdout.strip()
        if where and (Path(repo) / where).exists():
            raise CommitRefused(
                f"the repository {repo} is in the middle of a merge, rebase or cherry-pick "
                f"({name}); finish or abort it, then submit the commit again"
            )


def _rev(repo: str, ref: str) -> str | None:
    done = _git(repo, "rev-parse", "-q", "--verify", f"{ref}^{{commit}}")
    return done.stdout.strip() if done.returncode == 0 else None


def _identity(repo: str) -> dict[str, str]:
    """Author and committer for a repository with none configured."""
    if _git(repo, "var", "GIT_COMMITTER_IDENT").returncode == 0:
        return {}
    who = {"NAME": "sovereign", "EMAIL": "sovereign@localhost"}
    return {f"GIT_{role}_{k}": v for role in ("AUTHOR", "COMMITTER") for k, v in who.items()}


def apply_commit(repo: str, branch: str, patch: str, message: str, task_id: str) -> dict[str, Any]:
    """Apply ``patch`` on ``branch`` of ``repo`` and commit it; the commit's record.

    Raises CommitRefused, with the repository as it was, when the commit cannot be made.
    """
    try:
        check_repo(repo)
    except InputError as exc:
        raise CommitRefused(str(exc)) from None
    _refuse_unclean(repo)
    ref = f"refs/heads/{branch}"
    old = _rev(repo, ref)
    base = old or _rev(repo, "HEAD")
    if base is None:
        raise CommitRefused(f"the repository {repo} has no commit yet; make a first commit")
    if old is not None:
        tip = _git(repo, "log", "-1", "--format=%B", old).stdout
        if f"{TRAILER}: {task_id}" in tip:
            return _record(repo, branch, old, base, created=False, patch=patch, again=True)
    head_ref = _git(repo, "symbolic-ref", "-q", "HEAD").stdout.strip()
    with tempfile.TemporaryDirectory(prefix="sovereign-commit-") as tmp:
        index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        patch_file = Path(tmp) / "change.patch"
        patch_file.write_text(patch, encoding="utf-8")
        read = _git(repo, "read-tree", base, env=index)
        if read.returncode != 0:
            raise CommitRefused(f"git could not read {branch}: {_first_error(read)}")
        check = _git(repo, "apply", "--cached", "--check", str(patch_file), env=index)
        if check.returncode != 0:
            where = branch if old is not None else f"HEAD ({base[:12]}), where {branch} would start"
            raise CommitRefused(
                f"the patch does not apply to {where}: {_first_error(check)}; nothing was "
                "changed; make the patch against that commit and submit it again"
            )
        applied = _git(repo, "apply", "--cached", str(patch_file), env=index)
        tree = _git(repo, "write-tree", env=index)
        if applied.returncode != 0 or tree.returncode != 0:
            raise CommitRefused(f"git could not apply the patch: {_first_error(applied)}")
        if tree.stdout.strip() == _git(repo, "rev-parse", f"{base}^{{tree}}").stdout.strip():
            raise CommitRefused("the patch changes nothing on that branch; nothing to commit")
        text = f"{message.rstrip()}\n\n{TRAILER}: {task_id}\n"
        made = _git(
            repo, "commit-tree", tree.stdout.strip(), "-p", base, "-F", "-",
            env=_identity(repo), input=text,
        )  # fmt: skip
        if made.returncode != 0:
            raise CommitRefused(f"git could not make the commit: {_first_error(made)}")
    commit = made.stdout.strip()
    _move_branch(repo, ref, head_ref, base, commit, old)
    return _record(repo, branch, commit, base, created=old is None, patch=patch)


def _move_branch(
    repo: str, ref: str, head_ref: str, base: str, commit: str, old: str | None
) -> None:
    """Point ``ref`` at ``commit``; when it is checked out, its index and files first."""
    checked_out = head_ref == ref
    if checked_out:
        moved = _git(repo, "read-tree", "-m", "-u", base, commit)
        if moved.returncode != 0:
            raise CommitRefused(
                f"the commit would overwrite a file in {repo} ({_first_error(moved)}); "
                "nothing was changed; move that file away and submit the commit again"
            )
    command = f"update {ref} {commit} {old}\n" if old else f"create {ref} {commit}\n"
    updated = _git(repo, "update-ref", "-m", "sovereign commit", "--stdin", input=command)
    if updated.returncode != 0:
        if checked_out:
            _git(repo, "read-tree", "-m", "-u", commit, base)  # put the files back
        raise CommitRefused(
            f"the branch moved while the commit was made ({_first_error(updated)}); "
            "submit the commit again"
        )


def _record(
    repo: str,
    branch: str,
    commit: str,
    base: str,
    *,
    created: bool,
    patch: str,
    again: bool = False,
) -> dict[str, Any]:
    files = changes(patch)
    verb = "already committed" if again else "committed"
    return {
        "commit": commit,
        "branch": branch,
        "repo": repo,
        "base": base,
        "created_branch": created,
        "files": [f.path for f in files],
        "text": f"{verb} {commit[:12]} on {branch} in {repo} ({len(files)} files changed)",
    }
