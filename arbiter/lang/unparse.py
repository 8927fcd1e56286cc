"""Turns expressions back into `.arb` text, for traces and for tests that round-trip."""

from __future__ import annotations

import math

from arbiter.lang.nodes import (
    Between,
    Binary,
    Block,
    Call,
    Compare,
    Cond,
    Expr,
    IsNull,
    ListExpr,
    Literal,
    Name,
    Path,
    Quantifier,
    Unary,
    Value,
)

# Binding strength, loosest first; a child looser than its slot gets parentheses.
_OR, _AND, _NOT, _CMP, _SUM, _PRODUCT, _UNARY, _PRIMARY = range(1, 9)
_BINARY_LEVEL = {
    "or": _OR,
    "and": _AND,
    "+": _SUM,
    "-": _SUM,
    "*": _PRODUCT,
    "/": _PRODUCT,
    "%": _PRODUCT,
}


def unparse(expr: Expr) -> str:
    """Return the text of ``expr``, parenthesised only where precedence needs it."""
    return _text(expr)[0]


def unparse_block(block: Block) -> str:
    """Return the inside of a block: its lets, then its expression."""
    body = unparse(block.expr)
    if block.lets and body.startswith(("not ", "-")):
        body = f"({body})"  # else it would continue the last let: `let x = a not in b`
    parts = []
    for i, let in enumerate(block.lets):
        text = unparse(let.expr)
        following = "let" if i + 1 < len(block.lets) else body
        if following.startswith("(") and (text[-1:].isalnum() or text.endswith("_")):
            text = f"({text})"  # else `name (` reads as a function call
        parts.append(f"let {let.name} = {text} ")
    return "".join(parts) + body


def unparse_cond(cond: Cond) -> str:
    """Return a condition as written after ``when``, without the braces' spacing."""
    if cond.segment is None and cond.block is not None:
        return unparse_block(cond.block)
    parts = []
    if cond.segment is not None:
        parts.append(f"segment {cond.segment}")
    if cond.block is not None:
        parts.append("{ " + unparse_block(cond.block) + " }")
    return " ".join(parts)


def format_value(value: Value) -> str:
    """Return a value as an `.arb` literal (maps, which have no literal, as JSON-like text)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return '"' + escaped.replace("\n", "\\n").replace("\t", "\\t") + '"'
    if isinstance(value, float):
        if math.isfinite(value) and "e" not in repr(value):
            return repr(value)
        return repr(value) if not math.isfinite(value) else format(value, "f")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {format_value(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _wrap(child: Expr, minimum: int) -> str:
    text, level = _text(child)
    return f"({text})" if level < minimum else text


def _text(e: Expr) -> tuple[str, int]:
    if isinstance(e, Literal):
        return format_value(e.value), _PRIMARY
    if isinstance(e, Name):
        return e.name, _PRIMARY
    if isinstance(e, Path):
        return ".".join((e.root, *e.fields)), _PRIMARY
    if isinstance(e, ListExpr):
        return "[" + ", ".join(unparse(i) for i in e.items) + "]", _PRIMARY
    if isinstance(e, Call):
        return f"{e.func}({unparse(e.arg)})", _PRIMARY
    if isinstance(e, Quantifier):
        body = unparse_block(e.body)
        return f"{e.kind} {e.var} in {unparse(e.iterable)} {{ {body} }}", _PRIMARY
    if isinstance(e, Unary):
        if e.op == "not":
            return "not " + _wrap(e.operand, _NOT), _NOT
        return "-" + _wrap(e.operand, _UNARY), _UNARY
    if isinstance(e, Binary):
        level = _BINARY_LEVEL[e.op]
        # Left-associative: the right operand must bind strictly tighter.
        return f"{_wrap(e.left, level)} {e.op} {_wrap(e.right, level + 1)}", level
    if isinstance(e, Compare):
        return f"{_wrap(e.left, _SUM)} {e.op} {_wrap(e.right, _SUM)}", _CMP
    if isinstance(e, IsNull):
        op = "is not null" if e.negated else "is null"
        return f"{_wrap(e.operand, _SUM)} {op}", _CMP
    if isinstance(e, Between):
        return (
            f"{_wrap(e.operand, _SUM)} between [{unparse(e.low)}, {unparse(e.high)}]",
            _CMP,
        )
    raise TypeError(f"not an expression: {e!r}")
