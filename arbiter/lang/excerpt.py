"""Where each rule of a policy is written: its file, first line and source lines.

``sovereign why`` shows the rules that fired as they were written in the version the
decision was made under. The parser's nodes know where a rule starts; its end is the
brace that closes its body, found by a scan that skips strings and comments.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from arbiter.lang.nodes import Rule
from arbiter.lang.parser import parse_source

# Only what can hide a brace matters: strings and comments (the lexer's own shapes).
_SCAN = re.compile(r'"(?:[^"\\\n]|\\[^\n])*"|#[^\n]*|//[^\n]*|[{}]')


@dataclass(frozen=True, slots=True)
class RuleSource:
    """One rule as written: ``file:line`` and its lines, from ``rule NAME`` to ``}``."""

    rule: str
    file: str
    line: int
    end_line: int
    text: str
    then_action: str
    otherwise_action: str | None

    def to_dict(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "file": self.file,
            "line": self.line,
            "end_line": self.end_line,
            "text": self.text,
        }


def rule_sources(sources: Mapping[str, str]) -> dict[str, RuleSource]:
    """Every rule declared in ``sources`` (``{relative path: text}``), by name.

    A file that no longer parses still yields the rules the parser could read.
    """
    found: dict[str, RuleSource] = {}
    for key in sorted(sources):
        text = sources[key]
        decls, _problems = parse_source(key, text)
        lines = text.split("\n")  # the lexer counts lines by "\n" alone
        for decl in decls:
            if isinstance(decl, Rule) and decl.name not in found:
                end = _closing_line(text, lines, decl.line, decl.col)
                found[decl.name] = RuleSource(
                    rule=decl.name,
                    file=key,
                    line=decl.line,
                    end_line=end,
                    text="\n".join(x.rstrip("\r") for x in lines[decl.line - 1 : end]),
                    then_action=decl.then.name,
                    otherwise_action=decl.otherwise.name if decl.otherwise else None,
                )
    return found


def _closing_line(text: str, lines: list[str], line: int, col: int) -> int:
    """The line of the brace that closes the body of the rule starting at ``line:col``."""
    start = sum(len(x) + 1 for x in lines[: line - 1]) + col - 1
    depth = 0
    for match in _SCAN.finditer(text, start):
        token = match.group()
        if token == "{":
            depth += 1
        elif token == "}":
            depth -= 1
            if depth == 0:
                return text.count("\n", 0, match.start()) + 1
    return len(lines)
