"""When admissions reach the disk, and the connections and checkpoints they run on.

By default (``admission_flush="before_call"``) the gate's commit does not wait for the disk;
the worker's commit just before the model call does, and flushes the admission with it.
PostgreSQL's own statistics count the WAL flushes, so the PostgreSQL tests are black-box.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from arbiter.gate import Gate
from arbiter.ledger import Ledger, PriceTable
from arbiter.ledger.checkpoint import CHECKPOINT_EVERY, FLUSH_WITHIN_S
from arbiter.settings import AdmissionFlush
from tests.ledger.policies import cap_policy
from tests.ledger.test_gate import host, request
from tests.ledger.test_prices import SEED

ADMISSIONS = 120


def make_gate(ledger: Ledger) -> Gate:
    policy = cap_policy(1000.0)
    return Gate(ledger, lambda: policy, PriceTable.load(SEED), host, queues={"cloud": "cloud"})


def wal_syncs(url: str) -> int:
    """WAL flushes of the whole PostgreSQL cluster so far, once the counts stop moving
    (a backend reports its counts when it ends, a moment after its connection closes)."""
    engine = sa.create_engine(url)
    try:
        last = -1
        for _ in range(40):
            with engine.connect() as conn:
                now = int(conn.execute(sa.text("SELECT wal_sync FROM pg_stat_wal")).scalar_one())
            if now == last:
                return now
            last = now
            time.sleep(0.3)
        return last
    finally:
        engine.dispose()


def admit_and_count(url: str, mode: AdmissionFlush, prefix: str) -> tuple[int, int]:
    """WAL flushes caused by ADMISSIONS admissions, then by the workers' pre-call commits
    of ADMISSIONS // 4 of them."""
    warm = Ledger(url, admission_flush=mode)
    warm.upgrade()
    make_gate(warm).admit(request(f"{prefix}-warm"))
    warm.close()
    start = wal_syncs(url)
    ledger = Ledger(url, admission_flush=mode)
    gate = make_gate(ledger)
    for n in range(ADMISSIONS):
        assert gate.admit(request(f"{prefix}-{n}")).verdict == "proceed"
    ledger.close()
    admitted = wal_syncs(url)
    ledger = Ledger(url, admission_flush=mode)
    for n in range(ADMISSIONS // 4):
        assert ledger.begin_attempt(f"{prefix}-{n}", 1).held
    ledger.close()
    return admitted - start, wal_syncs(url) - admitted


def test_postgres_admissions_wait_for_the_disk_only_when_asked(postgres_url: str) -> None:
    admissions, calls = admit_and_count(postgres_url, "before_call", "call")
    # The WAL writer flushes the unflushed commits a few times a second, not once each.
    assert admissions < ADMISSIONS // 4
    # Every pre-call commit flushes (and takes the admissions logged before it along).
    assert calls >= ADMISSIONS // 4
    admissions, _ = admit_and_count(postgres_url, "before_publish", "publish")
    assert admissions >= ADMISSIONS


@pytest.fixture
def sqlite_ledger(sqlite_url: str) -> Iterator[Ledger]:
    ledger = Ledger(sqlite_url)
    ledger.upgrade()
    yield ledger
    ledger.close()


def pragma(connection: object, name: str) -> int:
    return int(connection.execute(f"PRAGMA {name}").fetchone()[0])  # type: ignore[attr-defined]


@pytest.mark.parametrize(("mode", "level"), [("before_call", 1), ("before_publish", 2)])
def test_sqlite_only_the_admission_connection_skips_the_flush(
    sqlite_url: str, mode: AdmissionFlush, level: int
) -> None:
    ledger = Ledger(sqlite_url, admission_flush=mode)
    ledger.upgrade()
    try:
        make_gate(ledger).admit(request("t1"))
        admitting = ledger._admissions.get()
        assert pragma(admitting, "synchronous") == level  # 1 NORMAL, 2 FULL
        assert pragma(admitting, "wal_autocheckpoint") == 0  # the checkpoint thread's job
        # Workers' commits (settle, the pre-call check) run on pooled connections: FULL.
        with ledger.engine.connect() as conn:
            driver = conn.connection.driver_connection
            assert pragma(driver, "synchronous") == 2
            assert pragma(driver, "wal_autocheckpoint") == 1000
        assert ledger.begin_attempt("t1", 1).held
    finally:
        ledger.close()


def test_sqlite_checkpoints_run_on_their_own_thread(sqlite_ledger: Ledger) -> None:
    gate = make_gate(sqlite_ledger)
    for n in range(CHECKPOINT_EVERY * 2 + 1):
        gate.admit(request(f"c{n}"))
    checkpointer = sqlite_ledger._admissions.checkpointer
    assert checkpointer is not None
    deadline = time.monotonic() + 10
    while checkpointer.checkpoints < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert checkpointer.checkpoints >= 1
    thread = checkpointer._thread
    assert thread is not None and thread.is_alive()
    sqlite_ledger.close()
    assert not thread.is_alive()
    # Everything committed is still there after the log was copied back.
    reopened = Ledger(sqlite_ledger.url.render_as_string(hide_password=False))
    try:
        assert len(reopened.decisions()) == CHECKPOINT_EVERY * 2 + 1
    finally:
        reopened.close()


def test_sqlite_a_lone_admission_reaches_the_disk_within_about_a_second(
    sqlite_ledger: Ledger,
) -> None:
    gate = make_gate(sqlite_ledger)
    started = time.monotonic()
    gate.admit(request("alone"))
    checkpointer = sqlite_ledger._admissions.checkpointer
    assert checkpointer is not None
    while checkpointer.checkpoints < 1 and time.monotonic() - started < 10:
        time.sleep(0.02)
    # A checkpoint syncs the log (and every admission in it) before copying it back.
    assert checkpointer.checkpoints == 1
    assert FLUSH_WITHIN_S * 0.9 <= time.monotonic() - started < FLUSH_WITHIN_S + 2
    time.sleep(FLUSH_WITHIN_S * 1.5)
    assert checkpointer.checkpoints == 1  # nothing new, nothing to do


def test_each_thread_admits_on_a_connection_of_its_own(database_url: str) -> None:
    ledger = Ledger(database_url)
    ledger.upgrade()
    gate = make_gate(ledger)
    seen: dict[str, object] = {}  # the connections themselves: ids of dead ones get reused

    def admit(name: str) -> None:
        for n in range(3):
            gate.admit(request(f"{name}-{n}"))
        seen[name] = ledger._admissions.get()

    try:
        threads = [threading.Thread(target=admit, args=(f"w{i}",)) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        admit("main")
        assert len({id(conn) for conn in seen.values()}) == 4
        assert len(ledger.decisions()) == 12
        # Kept out of the pool: the pool has every slot for everything else.
        assert ledger.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        first = ledger._admissions.get()
        ledger._admissions.discard()  # an error left it unusable: the next is a new one
        assert ledger._admissions.get() is not first
        gate.admit(request("after-discard"))
        assert ledger.reservation_held("after-discard", 1)
    finally:
        ledger.close()
