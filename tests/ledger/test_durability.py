"""Admissions wait for the disk before the task is published, and survive a killed process.

Nothing here counts a whole server's WAL flushes (other clients share the server) or times
anything: the tests read the settings the admission's own transaction runs with, and kill
a real process right after an admission returns.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from typing import Any

from arbiter.gate import Gate
from arbiter.ledger import Ledger, PriceTable
from tests.ledger.policies import cap_policy
from tests.ledger.test_gate import host, request
from tests.ledger.test_prices import SEED


def make_gate(ledger: Ledger) -> Gate:
    policy = cap_policy(1000.0)
    return Gate(ledger, lambda: policy, PriceTable.load(SEED), host, queues={"cloud": "cloud"})


def test_the_admission_commit_waits_for_the_disk(database_url: str) -> None:
    ledger = Ledger(database_url)
    ledger.upgrade()
    try:
        with ledger.admission() as tx:
            if ledger.dialect == "sqlite":
                # FULL: COMMIT syncs the write-ahead log before it returns.
                level = tx.conn.exec_driver_sql("PRAGMA synchronous").scalar()
                mode = tx.conn.exec_driver_sql("PRAGMA journal_mode").scalar()
                assert (level, mode) == (2, "wal")
            else:
                setting = tx.conn.exec_driver_sql("SHOW synchronous_commit").scalar()
                assert setting == "on"
    finally:
        ledger.close()


def _admit_then_die(url: str, task_id: str) -> None:
    ledger = Ledger(url)
    make_gate(ledger).admit(request(task_id))
    os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, no atexit: a power cut's cousin


def test_an_admission_outlives_the_process_that_made_it(database_url: str) -> None:
    Ledger(database_url).upgrade()
    context: Any = multiprocessing.get_context("spawn")
    child = context.Process(target=_admit_then_die, args=(database_url, "killed-after"))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    ledger = Ledger(database_url)
    try:
        (record,) = ledger.decisions("killed-after")
        assert record.verdict == "proceed"
        assert ledger.reservation_held("killed-after", 1)
    finally:
        ledger.close()
