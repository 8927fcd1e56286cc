"""Statements compiled once and run on the driver's own connection.

The gate runs the same handful of statements for every task. SQLAlchemy's execution path
(compiled-cache lookup, parameter processing, result wrapping) costs more than SQLite's
whole statement; ``Prepared`` keeps SQLAlchemy as the author of the SQL and of the value
conversions (its dialect compiles the text, its types' bind processors convert the values,
exactly as ``Connection.execute`` would) and hands the result to the DBAPI cursor directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

Processor = Callable[[Any], Any]


def _sqlite_datetime(slow: Processor) -> Processor:
    """SQLAlchemy's SQLite datetime text for the naive datetimes the ledger binds, made by
    ``isoformat`` (the same text, several times faster); anything else goes to ``slow``."""

    def convert(value: Any) -> Any:
        if type(value) is datetime and value.tzinfo is None:
            return value.isoformat(" ", "microseconds")
        return slow(value)

    return convert


class Prepared:
    """One statement, compiled for one dialect: its SQL and a function from values to params."""

    __slots__ = ("_fixed", "_order", "_positional", "_steps", "columns", "sql")

    def __init__(
        self,
        statement: ClauseElement,
        dialect: Dialect,
        column_keys: Iterable[str] | None = None,
    ) -> None:
        keys = list(column_keys) if column_keys is not None else None
        compiled = statement.compile(dialect=dialect, column_keys=keys)
        assert isinstance(compiled, SQLCompiler)
        self.sql = str(compiled)
        self._positional = bool(compiled.positional)
        names: Sequence[str] = (
            list(compiled.positiontup or ()) if self._positional else list(compiled.binds)
        )
        self._order = tuple(names)
        processors: dict[str, Processor] = {}
        # Values the statement carries itself (a LIMIT, a literal compared against).
        self._fixed: dict[str, Any] = {}
        for name in names:
            bind = compiled.binds[name]
            if not bind.required:
                self._fixed[name] = bind.effective_value
            processor: Processor | None = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is None:
                continue
            if dialect.name == "sqlite" and isinstance(bind.type, DateTime):
                processor = _sqlite_datetime(processor)
            processors[name] = processor
        # Name and converter (None: the value as is) of each parameter, in order.
        self._steps: tuple[tuple[str, Processor | None], ...] = tuple(
            (name, processors.get(name)) for name in names
        )
        selected = getattr(statement, "selected_columns", None)
        self.columns: tuple[str, ...] = tuple(selected.keys()) if selected is not None else ()

    def params(self, values: Mapping[str, Any]) -> Any:
        """The DBAPI parameters for ``values`` (keyed by bind name), converted by type."""
        if self._fixed:
            values = {**self._fixed, **values}
        converted = [
            values[name] if convert is None else convert(values[name])
            for name, convert in self._steps
        ]
        if self._positional:
            return converted
        return dict(zip(self._order, converted, strict=True))
