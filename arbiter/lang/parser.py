"""The parser front-end: `.arb` text to a syntax tree, lark's errors to diagnostics.

The tree is built by a transformer handed to lark itself, so no parse tree is made.
A file with a syntax error is parsed again one declaration at a time, so one run
reports an error in every broken declaration, not only the first.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path as FilePath
from typing import Any, cast

from lark import Lark, Token, Transformer
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from arbiter.errors import PolicyError
from arbiter.lang.diagnostics import Diagnostic
from arbiter.lang.lexer import ArbLexer
from arbiter.lang.nodes import (
    Action,
    Between,
    Binary,
    Block,
    Call,
    Candidate,
    Compare,
    Cond,
    Const,
    Decl,
    Expr,
    Include,
    IsNull,
    Let,
    ListExpr,
    Literal,
    Modifier,
    Name,
    Param,
    Path,
    Quantifier,
    Rule,
    Segment,
    Strategy,
    Unary,
)
from arbiter.lang.vocabulary import KEYWORDS

_GRAMMAR = FilePath(__file__).with_name("grammar.lark")
_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}
_ESCAPE_RE = re.compile(r"\\(.)")


def _unescape(body: str) -> str:
    # Any other backslash pair stands for itself, so "\d+" stays a regex.
    return _ESCAPE_RE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(0)), body)


def _literal_value(tok: Token) -> Any:
    kind, text = tok.type, str(tok)
    if kind == "NUMBER":
        return float(text) if "." in text else int(text.replace("_", ""))
    if kind == "DURATION":
        return int(text[:-1].replace("_", "")) * _DURATION[text[-1]]
    if kind == "STRING":
        return _unescape(text[1:-1])
    return {"TRUE": True, "FALSE": False, "NULL": None}[kind]


_TIGHT = frozenset({"*", "/", "%"})


def _prefixed(children: list[Any], prefix: str) -> list[Any]:
    """Apply prefix operators (`not`, unary `-`) to the operand after them; return the
    operands with the infix operator tokens between them."""
    out: list[Any] = []
    pending: list[Token] = []
    expect_operand = True
    for child in children:
        if isinstance(child, Token) and expect_operand and child == prefix:
            pending.append(child)
            continue
        if isinstance(child, Token):
            out.append(child)
            expect_operand = True
            continue
        for tok in reversed(pending):
            child = Unary(tok.line or 1, tok.column or 1, prefix, child)
        pending.clear()
        out.append(child)
        expect_operand = False
    return out


def _fold_binary(op: str, operands: list[Expr]) -> Expr:
    left = operands[0]
    for right in operands[1:]:
        left = Binary(left.line, left.col, op, left, right)
    return left


class _Builder(Transformer[Token, Any]):
    """Builds nodes from lark's callbacks; stateless, so one instance serves all threads."""

    # --- declarations
    def start(self, children: list[Decl]) -> list[Decl]:
        return children

    def expr_only(self, children: list[Expr]) -> Expr:
        return children[0]

    def const_decl(self, c: list[Any]) -> Const:
        return Const(c[0].line, c[0].column, str(c[0]), c[1])

    def segment_decl(self, c: list[Any]) -> Segment:
        return Segment(c[0].line, c[0].column, str(c[0]), c[1])

    def rule_decl(self, c: list[Any]) -> Rule:
        name, priority, *mods, cond, then, otherwise = c
        return Rule(name.line, name.column, str(name), priority, tuple(mods), cond, then, otherwise)

    def priority(self, c: list[Any]) -> Literal:
        _, minus, number = c
        value = _literal_value(number)
        return Literal(number.line, number.column, -value if minus is not None else value)

    def otherwise(self, c: list[Any]) -> Action:
        return c[0]  # type: ignore[no-any-return]

    def kill_switch(self, c: list[Any]) -> Modifier:
        return Modifier(c[0].line, c[0].column, "kill_switch", None)

    def requires(self, c: list[Any]) -> Modifier:
        return Modifier(c[1].line, c[1].column, "requires", str(c[1]))

    def excludes(self, c: list[Any]) -> Modifier:
        return Modifier(c[1].line, c[1].column, "excludes", str(c[1]))

    def strategy_decl(self, c: list[Any]) -> Strategy:
        name, returns, *cands, _else, action = c
        return Strategy(
            name.line, name.column, str(name), str(returns), returns.line, returns.column,
            tuple(cands), action,
        )  # fmt: skip

    def candidate(self, c: list[Any]) -> Candidate:
        return Candidate(c[0].line, c[0].column, c[1], c[2])

    def include_decl(self, c: list[Any]) -> Include:
        return Include(c[1].line, c[1].column, _literal_value(c[1]))

    def cond_block(self, c: list[Any]) -> Cond:
        return Cond(c[0].line, c[0].col, None, c[0])

    def cond_segment(self, c: list[Any]) -> Cond:
        return Cond(c[1].line, c[1].column, str(c[1]), c[2])

    def action(self, c: list[Any]) -> Action:
        name = c[0]
        params = tuple(p for p in c[1:] if p is not None)
        return Action(name.line, name.column, str(name), params)

    def param(self, c: list[Any]) -> Param:
        return Param(c[0].line, c[0].column, str(c[0]), c[1])

    def block(self, c: list[Any]) -> Block:
        return Block(c[0].line, c[0].column, tuple(c[1:-1]), c[-1])

    def let(self, c: list[Any]) -> Let:
        return Let(c[0].line, c[0].column, str(c[0]), c[1])

    # --- expressions
    def expr(self, c: list[Any]) -> Expr:
        # `not` binds tighter than `and`, which binds tighter than `or`.
        groups: list[Expr] = []
        joiner = "or"
        for operand in _prefixed(c, "not"):
            if isinstance(operand, Token):
                joiner = str(operand)
            elif joiner == "and":
                left = groups[-1]
                groups[-1] = Binary(left.line, left.col, "and", left, operand)
            else:
                groups.append(operand)
        return _fold_binary("or", groups)

    def compare(self, c: list[Any]) -> Compare:
        return Compare(c[0].line, c[0].col, str(c[1]), c[0], c[2])

    def compare_not(self, c: list[Any]) -> Compare:
        return Compare(c[0].line, c[0].col, "not " + str(c[2]), c[0], c[3])

    def is_null(self, c: list[Any]) -> IsNull:
        return IsNull(c[0].line, c[0].col, c[0], False)

    def is_not_null(self, c: list[Any]) -> IsNull:
        return IsNull(c[0].line, c[0].col, c[0], True)

    def between(self, c: list[Any]) -> Between:
        return Between(c[0].line, c[0].col, c[0], c[2], c[3])

    def arith(self, c: list[Any]) -> Expr:
        # Unary `-` binds tightest, then `* / %`, then `+ -`; all left-associative.
        terms: list[Expr] = []
        ops: list[str] = []
        op = "+"
        for operand in _prefixed(c, "-"):
            if isinstance(operand, Token):
                op = str(operand)
            elif not terms:
                terms.append(operand)
            elif op in _TIGHT:
                left = terms[-1]
                terms[-1] = Binary(left.line, left.col, op, left, operand)
            else:
                ops.append(op)
                terms.append(operand)
        result = terms[0]
        for op, term in zip(ops, terms[1:], strict=True):
            result = Binary(result.line, result.col, op, result, term)
        return result

    def name(self, c: list[Any]) -> Name:
        return Name(c[0].line, c[0].column, str(c[0]))

    def path(self, c: list[Any]) -> Path:
        root, first = c[0], c[1]
        fields = tuple(str(t) for t in c[1:])
        return Path(root.line, root.column, str(root), fields, first.line, first.column)

    def list_expr(self, c: list[Any]) -> ListExpr:
        return ListExpr(c[0].line, c[0].column, tuple(i for i in c[1:] if i is not None))

    def call(self, c: list[Any]) -> Call:
        return Call(c[0].line, c[0].column, str(c[0]), c[1])

    def quantifier(self, c: list[Any]) -> Quantifier:
        kind, var, iterable, body = c
        return Quantifier(
            kind.line, kind.column, str(kind), str(var), var.line, var.column, iterable, body
        )

    def literal(self, c: list[Any]) -> Literal:
        return Literal(c[0].line, c[0].column, _literal_value(c[0]))


_lark: Lark | None = None
_lark_lock = threading.Lock()


def _parser() -> Lark:
    global _lark
    if _lark is None:
        with _lark_lock:
            if _lark is None:
                _lark = Lark(
                    _GRAMMAR.read_text(encoding="utf-8"),
                    parser="lalr",
                    lexer=ArbLexer,
                    start=["start", "expr_only"],
                    maybe_placeholders=True,
                    transformer=_Builder(),
                )
    return _lark


# --- error messages ------------------------------------------------------------------

_TERMINAL_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "DURATION": "a duration",
    "STRING": "a string",
    "CMP": "a comparison",
    "$END": "the end of the file",
}


def _terminal_text(name: str) -> str:
    if name in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[name]
    try:
        pattern = _parser().get_terminal(name).pattern
    except KeyError:
        return name.lower()
    return f"`{pattern.value}`"


def _token_text(tok: Token, end: str = "end of file") -> str:
    if tok.type == "$END":
        return end
    text = str(tok)
    if len(text) > 30:
        text = text[:27] + "..."
    return f"`{text}`"


def _expected_text(expected: set[str]) -> str:
    if {"NAME", "NUMBER", "STRING"} <= expected:
        return "an expression"
    words = sorted({_terminal_text(n) for n in expected})
    if len(words) > 6:
        return "something else"
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _end_position(text: str) -> tuple[int, int]:
    line = text.count("\n") + 1
    return line, len(text) - (text.rfind("\n") + 1) + 1


def _diagnostic(file: str, text: str, exc: UnexpectedInput, end: str = "end of file") -> Diagnostic:
    if isinstance(exc, UnexpectedToken):
        tok = exc.token
        if tok.type == "$END":
            line, col = _end_position(text.rstrip())
        else:
            line, col = tok.line, tok.column
        message = (
            f"unexpected {_token_text(tok, end)}, expected {_expected_text(set(exc.expected))}"
        )
        if str(tok) == "=":
            message = "unexpected `=` (to compare, write `==`)"
        elif tok.type == "CMP" and "CMP" not in exc.expected:
            message = f"unexpected {_token_text(tok)}: comparisons cannot be chained; join them with `and`"
        if str(tok) in KEYWORDS and "NAME" in exc.expected:
            message += f" (`{tok}` is a keyword and cannot be used as a name)"
        return Diagnostic(file, line or 1, col or 1, message)
    if isinstance(exc, UnexpectedCharacters):
        pos = exc.pos_in_stream or 0
        char = text[pos] if pos < len(text) else ""
        if char == '"':
            message = 'unterminated string (a string ends with `"` on the same line)'
        else:
            message = f"unexpected character {char!r}"
        return Diagnostic(file, exc.line, exc.column, message)
    line, col = _end_position(text)
    return Diagnostic(file, line, col, "unexpected end of file")


# --- recovery ------------------------------------------------------------------------

_DECL_WORDS = frozenset({"const", "segment", "rule", "strategy", "include"})
_RESYNC_WORDS = _DECL_WORDS - {"segment"}  # `segment` also starts a condition line
_SCAN = re.compile(r'"(?:[^"\\\n]|\\.)*"?|#[^\n]*|//[^\n]*|[{}\[\]()]|[A-Za-z_][A-Za-z0-9_]*')


def _chunk_starts(text: str) -> list[int]:
    """Offsets where a declaration seems to start: a declaration keyword outside any
    brackets, or one at the very start of a line (to resync after unbalanced braces)."""
    starts = [0]
    depth = 0
    for m in _SCAN.finditer(text):
        tok = m.group()
        if tok in "{[(":
            depth += 1
        elif tok in "}])":
            depth = max(depth - 1, 0)
        elif tok in _DECL_WORDS:
            at_line_start = m.start() == 0 or text[m.start() - 1] == "\n"
            if depth == 0 or (at_line_start and tok in _RESYNC_WORDS):
                depth = 0
                if m.start() > starts[-1]:
                    starts.append(m.start())
    return starts


def _parse_chunks(file: str, text: str) -> tuple[list[Decl], list[Diagnostic]]:
    decls: list[Decl] = []
    diags: list[Diagnostic] = []
    starts = _chunk_starts(text)
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(text)
        chunk = text[start:end]
        if not chunk.strip():
            continue
        # Pad with blank lines and spaces so lark reports positions in the whole file.
        line = text.count("\n", 0, start)
        col = start - (text.rfind("\n", 0, start) + 1)
        padded = "\n" * line + " " * col + chunk
        try:
            decls.extend(cast("list[Decl]", _parser().parse(padded, start="start")))
        except UnexpectedInput as exc:
            last = i + 1 == len(starts)
            diags.append(
                _diagnostic(file, padded, exc, "end of file" if last else "end of this declaration")
            )
        except LarkError as exc:  # pragma: no cover - lark's other errors are internal
            diags.append(Diagnostic(file, line + 1, col + 1, f"cannot parse: {exc}"))
    return decls, diags


def parse_source(file: str, text: str) -> tuple[list[Decl], list[Diagnostic]]:
    """Parse one file; return its declarations and a diagnostic per syntax error."""
    try:
        return list(cast("list[Decl]", _parser().parse(text, start="start"))), []
    except UnexpectedInput as exc:
        first = _diagnostic(file, text, exc)
    except LarkError as exc:  # pragma: no cover
        return [], [Diagnostic(file, 1, 1, f"cannot parse: {exc}")]
    decls, diags = _parse_chunks(file, text)
    return decls, diags or [first]


def parse_expression(text: str, file: str = "<expr>") -> Expr:
    """Parse one expression (for tools and tests); raise PolicyError when it does not."""
    try:
        return cast("Expr", _parser().parse(text, start="expr_only"))
    except UnexpectedInput as exc:
        raise PolicyError([_diagnostic(file, text, exc)]) from None
