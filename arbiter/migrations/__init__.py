"""Alembic migrations of the ledger, run from package data (no alembic.ini needed).

``upgrade(engine)`` brings a database to the newest revision inside one serialized
transaction, so several processes starting at once do not race to create the tables.
To write a new revision during development::

    from alembic import command
    from arbiter.migrations import alembic_config
    command.revision(alembic_config(), message="...", rev_id="0002")
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

HERE = Path(__file__).resolve().parent


def _not_chatter(record: logging.LogRecord) -> bool:
    """Alembic says which dialect it talks to each time a process checks the revision;
    keep only what matters (the migrations it runs)."""
    return not record.getMessage().startswith(("Context impl ", "Will assume "))


logging.getLogger("alembic.runtime.migration").addFilter(_not_chatter)


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration pointing at this package."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(HERE / "versions"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision shipped with the code."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at, or None when it has never been migrated."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Connection) -> str:
    """Migrate to the newest revision on ``connection`` (already in a locked transaction)."""
    if current_revision(connection) != head_revision():
        command.upgrade(alembic_config(connection), "head")
    return head_revision()


def downgrade_all(engine: Engine) -> None:
    """Drop everything the migrations created (tests)."""
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")
