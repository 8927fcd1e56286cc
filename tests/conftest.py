"""Shared fixtures: real services on loopback, each test run in a namespace of its own.

A missing service skips the test on a laptop and fails it in CI (``CI=true``).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
PG_HOST, PG_PORT = "127.0.0.1", 5432


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def need(service: str, host: str, port: int) -> None:
    """Skip (laptop) or fail (CI) when a service does not answer."""
    if port_open(host, port):
        return
    message = f"{service} does not answer on {host}:{port}"
    if IN_CI:
        pytest.fail(message + " (CI=true: services are required)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_server() -> str:
    need("Redis", REDIS_HOST, REDIS_PORT)
    return f"redis://{REDIS_HOST}:{REDIS_PORT}"


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """A Redis database index of the tests' own, flushed before and after."""
    import redis

    db = int(os.environ.get("TEST_REDIS_DB", "11"))
    client = redis.Redis.from_url(f"{redis_server}/{db}")
    client.flushdb()
    yield f"{redis_server}/{db}"
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def postgres_server() -> str:
    need("PostgreSQL", PG_HOST, PG_PORT)
    return f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}"


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards."""
    import sqlalchemy as sa

    name = f"sovereign_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{postgres_server}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """The same test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgres_url"))
