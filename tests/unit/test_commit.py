"""The commit tool against real git repositories in a temporary folder."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from arbiter.errors import InputError
from tasks.commit import CommitRefused, apply_commit, branch_problem, check_repo, validate
from tasks.patch import diffstat, extract_patch, first_hunks

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
diff --git a/NOTES.md b/NOTES.md
new file mode 100644
--- /dev/null
+++ b/NOTES.md
@@ -0,0 +1,2 @@
+Changed the colour.
+Asked by the client.
"""
STALE = PATCH.replace("-Colour: blue", "-Colour: red")


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "site"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Ann")
    git(path, "config", "user.email", "ann@studio.test")
    (path / "README.md").write_text(README)
    git(path, "add", "README.md")
    git(path, "commit", "-q", "-m", "first")
    return path


def fingerprint(repo: Path) -> dict[str, str]:
    """A hash of every file under the repository, .git (index, refs, objects) included."""
    return {
        str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(repo.rglob("*"))
        if p.is_file()
    }


def test_commits_on_a_new_branch_made_from_head(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    before = fingerprint(repo)
    done = apply_commit(str(repo), "logo/green", PATCH, "Make the logo green", "t1")
    assert done["created_branch"] and done["base"] == head
    assert git(repo, "rev-parse", "refs/heads/logo/green") == done["commit"]
    assert git(repo, "log", "--format=%s", "logo/green") == "Make the logo green\nfirst"
    assert "Sovereign-Task: t1" in git(repo, "log", "-1", "--format=%B", "logo/green")
    assert git(repo, "show", "logo/green:README.md").endswith("Colour: green")
    assert git(repo, "show", "logo/green:NOTES.md") == "Changed the colour.\nAsked by the client."
    assert done["files"] == ["README.md", "NOTES.md"]
    # The checked-out branch and the working tree are untouched.
    assert git(repo, "rev-parse", "HEAD") == head
    assert (repo / "README.md").read_text() == README
    assert not (repo / "NOTES.md").exists()
    after = fingerprint(repo)
    assert {k: v for k, v in after.items() if not k.startswith(".git/")} == {
        k: v for k, v in before.items() if not k.startswith(".git/")
    }


def test_commits_on_the_checked_out_branch_and_updates_its_files(repo: Path) -> None:
    done = apply_commit(str(repo), "main", PATCH, "Green", "t2")
    assert not done["created_branch"]
    assert git(repo, "rev-parse", "HEAD") == done["commit"]
    assert (repo / "README.md").read_text().endswith("Colour: green\n")
    assert (repo / "NOTES.md").exists()
    assert git(repo, "status", "--porcelain") == "", "index and files match the new commit"


def test_a_redelivered_commit_is_not_made_twice(repo: Path) -> None:
    first = apply_commit(str(repo), "fix", PATCH, "Green", "t3")
    again = apply_commit(str(repo), "fix", PATCH, "Green", "t3")
    assert again["commit"] == first["commit"]
    assert again["text"].startswith("already committed")
    assert git(repo, "rev-list", "--count", "fix") == "2"


@pytest.mark.parametrize("branch", ["main", "new-branch"])
def test_a_patch_that_does_not_apply_leaves_the_repository_byte_for_byte(
    repo: Path, branch: str
) -> None:
    before = fingerprint(repo)
    with pytest.raises(CommitRefused, match=r"the patch does not apply to .*nothing was changed"):
        apply_commit(str(repo), branch, STALE, "Stale", "t4")
    assert fingerprint(repo) == before
    assert git(repo, "branch", "--list", "new-branch") == "", "no branch left behind"


def test_a_repository_with_uncommitted_changes_is_refused(repo: Path) -> None:
    (repo / "README.md").write_text(README + "draft\n")
    before = fingerprint(repo)
    with pytest.raises(
        CommitRefused, match=r"has uncommitted changes .*README\.md.*commit or stash"
    ):
        apply_commit(str(repo), "fix", PATCH, "Green", "t5")
    assert fingerprint(repo) == before
    git(repo, "checkout", "README.md")
    (repo / "scratch.txt").write_text("not tracked")
    git(repo, "add", "scratch.txt")
    with pytest.raises(CommitRefused, match="uncommitted changes"):
        apply_commit(str(repo), "fix", PATCH, "Green", "t5")


def test_an_untracked_file_in_the_way_stops_it_before_anything_changes(repo: Path) -> None:
    (repo / "NOTES.md").write_text("mine, not tracked")
    before = fingerprint(repo)
    with pytest.raises(CommitRefused, match="would overwrite a file"):
        apply_commit(str(repo), "main", PATCH, "Green", "t6")
    after = fingerprint(repo)
    # Only unreferenced objects may have been written; refs, index and files are as before.
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert all(k.startswith(".git/objects/") for k in changed), changed


def test_submit_time_checks_are_one_sentence(repo: Path, tmp_path: Path) -> None:
    check_repo(str(repo))
    with pytest.raises(InputError, match="is not a git repository"):
        check_repo(str(tmp_path))
    with pytest.raises(InputError, match="is not a folder"):
        check_repo(str(tmp_path / "nowhere"))
    (repo / "sub").mkdir()
    with pytest.raises(InputError, match="is inside the git repository"):
        check_repo(str(repo / "sub"))
    for bad in ("", "a b", "x..y", "-x", "x.lock", "x/", "a~1", "@"):
        assert branch_problem(bad), bad
    for good in ("main", "logo/green", "fix-42", "feature/a.b"):
        assert branch_problem(good) is None, good
    with pytest.raises(InputError, match="not a unified diff"):
        validate({"repo": str(repo), "branch": "x"}, "please make it green")
    with pytest.raises(InputError, match="absolute path"):
        validate({"repo": "site", "branch": "x"}, PATCH)


def test_a_patch_is_found_in_a_models_answer_and_previewed() -> None:
    answer = f"Here is the change:\n\n```diff\n{PATCH}```\n\nIt makes the logo green."
    assert extract_patch(answer) == PATCH
    assert extract_patch("no diff here") is None
    assert diffstat(PATCH) == [
        " README.md | +1 -1",
        " NOTES.md  | +2 -0",
        " 2 files changed, 3 insertions(+), 1 deletions(-)",
    ]
    hunks = first_hunks(PATCH, max_lines=4)
    assert hunks[:2] == ["--- a/README.md", "+++ b/README.md"]
    assert hunks[-1].startswith("… ") and hunks[-1].endswith("more lines")
