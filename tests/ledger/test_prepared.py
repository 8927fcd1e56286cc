"""Prepared statements convert values exactly as SQLAlchemy's own execution would."""

from __future__ import annotations

from datetime import UTC, date, datetime

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import DateTime
from sqlalchemy.dialects import sqlite

from arbiter.ledger.prepared import _sqlite_datetime

DIALECT = sqlite.dialect()
SLOW = DateTime().dialect_impl(DIALECT).bind_processor(DIALECT)
assert SLOW is not None
FAST = _sqlite_datetime(SLOW)


@given(st.datetimes())
def test_sqlite_datetimes_are_stored_as_sqlalchemy_writes_them(value: datetime) -> None:
    # Stored text is compared as text by every window query: it must be the very same.
    assert FAST(value) == SLOW(value)


def test_other_values_take_sqlalchemys_own_conversion() -> None:
    for value in (None, date(2026, 1, 1), datetime(2026, 1, 1, 12, tzinfo=UTC)):
        assert FAST(value) == SLOW(value)
