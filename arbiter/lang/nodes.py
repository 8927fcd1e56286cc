"""The syntax tree: plain dataclasses, each carrying the 1-based line and column of the
token it starts at (diagnostics point there)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

Value: TypeAlias = Any  # None, bool, int, float, str, list or mapping of those


@dataclass(slots=True)
class Node:
    line: int
    col: int


# --- expressions -------------------------------------------------------------------


@dataclass(slots=True)
class Literal(Node):
    value: Value


@dataclass(slots=True)
class ListExpr(Node):
    items: tuple[Expr, ...]


@dataclass(slots=True)
class Name(Node):
    name: str


@dataclass(slots=True)
class Path(Node):
    """``root.field.field``; ``field_line``/``field_col`` locate the first field."""

    root: str
    fields: tuple[str, ...]
    field_line: int
    field_col: int


@dataclass(slots=True)
class Unary(Node):
    op: str  # "not" or "-"
    operand: Expr


@dataclass(slots=True)
class Binary(Node):
    op: str  # "and", "or", "+", "-", "*", "/", "%"
    left: Expr
    right: Expr


@dataclass(slots=True)
class Compare(Node):
    """A comparison; ``op`` is one of the spec's operators, e.g. ``"not in"``."""

    op: str
    left: Expr
    right: Expr


@dataclass(slots=True)
class IsNull(Node):
    operand: Expr
    negated: bool


@dataclass(slots=True)
class Between(Node):
    operand: Expr
    low: Expr
    high: Expr


@dataclass(slots=True)
class Call(Node):
    func: str
    arg: Expr


@dataclass(slots=True)
class Let(Node):
    """``let name = expr``; the position is the name's."""

    name: str
    expr: Expr


@dataclass(slots=True)
class Block(Node):
    lets: tuple[Let, ...]
    expr: Expr


@dataclass(slots=True)
class Quantifier(Node):
    kind: str  # "any", "all" or "none"
    var: str
    var_line: int
    var_col: int
    iterable: Expr
    body: Block


Expr: TypeAlias = (
    Literal
    | ListExpr
    | Name
    | Path
    | Unary
    | Binary
    | Compare
    | IsNull
    | Between
    | Call
    | Quantifier
)


# --- declarations ------------------------------------------------------------------


@dataclass(slots=True)
class Param(Node):
    name: str
    expr: Expr


@dataclass(slots=True)
class Action(Node):
    name: str
    params: tuple[Param, ...]

    def param(self, name: str) -> Param | None:
        """Return the param called ``name``, if given."""
        for p in self.params:
            if p.name == name:
                return p
        return None


@dataclass(slots=True)
class Cond(Node):
    """``segment NAME`` and/or a block; the position is the segment name's or the block's."""

    segment: str | None
    block: Block | None


@dataclass(slots=True)
class Modifier(Node):
    kind: str  # "kill_switch", "requires" or "excludes"
    target: str | None


@dataclass(slots=True)
class Const(Node):
    name: str
    expr: Expr


@dataclass(slots=True)
class Segment(Node):
    name: str
    block: Block


@dataclass(slots=True)
class Rule(Node):
    name: str
    priority: Literal | None
    modifiers: tuple[Modifier, ...]
    cond: Cond
    then: Action
    otherwise: Action | None


@dataclass(slots=True)
class Candidate(Node):
    cond: Cond
    action: Action


@dataclass(slots=True)
class Strategy(Node):
    name: str
    returns: str
    returns_line: int
    returns_col: int
    candidates: tuple[Candidate, ...]
    otherwise: Action


@dataclass(slots=True)
class Include(Node):
    path: str


Decl: TypeAlias = Const | Segment | Rule | Strategy | Include
