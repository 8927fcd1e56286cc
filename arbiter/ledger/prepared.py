"""Statements compiled once and run on the driver's own connection.

The gate runs the same few statements for every task, and SQLAlchemy's execution path
(cache lookup, parameter processing, result wrapping) costs more than SQLite's whole
statement. ``Prepared`` keeps SQLAlchemy as the author of the SQL and of the value
conversions (its dialect compiles the text, its types' bind processors convert the values,
as ``Connection.execute`` would) and hands the result to the DBAPI cursor directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

Processor = Callable[[Any], Any]


class Prepared:
    """One statement, compiled for one dialect: its SQL and a function from values to params."""

    __slots__ = ("_positional", "_steps", "columns", "sql")

    def __init__(
        self, statement: ClauseElement, dialect: Dialect, column_keys: Iterable[str] | None = None
    ) -> None:
        keys = list(column_keys) if column_keys is not None else None
        compiled = statement.compile(dialect=dialect, column_keys=keys)
        assert isinstance(compiled, SQLCompiler)
        self.sql = str(compiled)
        self._positional = bool(compiled.positional)
        names = list(compiled.positiontup or ()) if self._positional else list(compiled.binds)
        # Name, converter (None: as is), and whether the caller must give it (else the
        # statement carries its value, a constant it compares against).
        self._steps: tuple[tuple[str, Processor | None, bool, Any], ...] = tuple(
            (
                name,
                compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect),
                compiled.binds[name].required,
                compiled.binds[name].effective_value,
            )
            for name in names
        )
        selected = getattr(statement, "selected_columns", None)
        self.columns: tuple[str, ...] = tuple(selected.keys()) if selected is not None else ()

    def params(self, values: Mapping[str, Any]) -> Any:
        """The DBAPI parameters for ``values`` (keyed by bind name), converted by type."""
        converted = []
        for name, convert, required, fixed in self._steps:
            value = values[name] if required else values.get(name, fixed)
            converted.append(value if convert is None else convert(value))
        if self._positional:
            return converted
        return dict(zip((step[0] for step in self._steps), converted, strict=True))
