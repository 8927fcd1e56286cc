"""Unified diffs as text: finding one in a model's answer, and previewing it for a person.

Pure functions: nothing here runs git. ``tasks.commit`` applies patches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A fenced block in a model's answer: ```diff, ```patch, or a bare ```.
_FENCE = re.compile(r"^```[ \t]*(?:diff|patch|udiff)?[^\n]*\n(.*?)^```", re.M | re.S)
_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+\d+(?:,\d+)? @@")


@dataclass(frozen=True, slots=True)
class FileChange:
    """One file a patch touches, with its added and removed line counts."""

    path: str
    added: int
    removed: int


def looks_like_patch(text: str) -> bool:
    """Whether ``text`` holds a unified diff: a ``---``/``+++`` pair and a hunk, or a
    git header with a file operation (a rename or mode change has no hunk)."""
    lines = text.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith("--- ") and lines[i + 1].startswith("+++ "):
            return any(_HUNK.match(rest) for rest in lines[i + 2 :]) or "GIT binary" in text
    return text.lstrip().startswith("diff --git ") and (
        "rename from " in text or "new mode " in text or "deleted file mode" in text
    )


def extract_patch(text: str) -> str | None:
    """The unified diff in ``text``: the first fenced block holding one, else the text
    itself when it is one; None when there is none. Ends with a newline, as git wants."""
    for block in _FENCE.findall(text):
        block = str(block)
        if looks_like_patch(block):
            return block if block.endswith("\n") else block + "\n"
    if looks_like_patch(text):
        body = text.strip("\n") + "\n"
        return body
    return None


def _path(line: str) -> str:
    name = line[4:].split("\t", 1)[0].strip()
    if name.startswith(("a/", "b/")):
        name = name[2:]
    return name


def changes(patch: str) -> list[FileChange]:
    """The files ``patch`` touches, in order, with line counts (a diffstat)."""
    found: list[FileChange] = []
    path: str | None = None
    added = removed = 0
    in_hunk = False
    lines = patch.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            if path is not None:
                found.append(FileChange(path, added, removed))
            old, new = _path(line), _path(lines[i + 1])
            path = old if new == "/dev/null" else new
            added = removed = 0
            in_hunk = False
            continue
        if line.startswith("+++ ") and not in_hunk:
            continue
        if _HUNK.match(line):
            in_hunk = True
        elif in_hunk and line.startswith("+"):
            added += 1
        elif in_hunk and line.startswith("-"):
            removed += 1
        elif line.startswith("diff --git "):
            in_hunk = False
    if path is not None:
        found.append(FileChange(path, added, removed))
    return found


def diffstat(patch: str) -> list[str]:
    """``git diff --stat``-like lines, with a summary line last."""
    files = changes(patch)
    width = max((len(f.path) for f in files), default=0)
    lines = [f" {f.path.ljust(width)} | +{f.added} -{f.removed}" for f in files]
    plural = "s" if len(files) != 1 else ""
    lines.append(
        f" {len(files)} file{plural} changed, {sum(f.added for f in files)} insertions(+), "
        f"{sum(f.removed for f in files)} deletions(-)"
    )
    return lines


def first_hunks(patch: str, max_lines: int = 12) -> list[str]:
    """The patch from its first file header on, without git's index lines, cut at
    ``max_lines`` (a last line says how many more there are)."""
    lines = patch.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("--- ")), len(lines))
    body = [line for line in lines[start:] if not line.startswith(("diff --git ", "index "))]
    if len(body) <= max_lines:
        return body
    return [*body[:max_lines], f"… {len(body) - max_lines} more lines"]
