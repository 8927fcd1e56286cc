"""Diagnostics: one problem in a policy, located by file, line and column."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """A problem at ``file:line:col`` (1-based), printed the way compilers print them."""

    file: str
    line: int
    col: int
    message: str

    def format(self) -> str:
        """Return ``FILE:LINE:COL: error: MESSAGE``."""
        return f"{self.file}:{self.line}:{self.col}: error: {self.message}"

    def render(self, source: str | None) -> str:
        """Return the formatted line, then the source line with a caret under the column."""
        head = self.format()
        if source is None:
            return head
        lines = source.splitlines()
        if not 1 <= self.line <= len(lines):
            return head
        text = lines[self.line - 1].replace("\t", " ")
        caret = " " * (max(self.col, 1) - 1) + "^"
        return f"{head}\n    {text}\n    {caret}"

    def __str__(self) -> str:
        return self.format()
