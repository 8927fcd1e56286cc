"""8 processes x 250 decisions race against a cap written in a rule, on both databases."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

from arbiter.ledger import Ledger, PriceTable
from arbiter.ledger.models import NANO
from tests.ledger.race import MODEL, race, replay
from tests.ledger.test_prices import SEED

PROCESSES = 8
DECISIONS = 250
CAP = 2.5  # about a quarter of what the 2000 random tasks would cost


@pytest.mark.timeout(240)
def test_cap_holds_under_concurrency(database_url: str) -> None:
    Ledger(database_url).upgrade()
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        start = manager.Barrier(PROCESSES)
        with ProcessPoolExecutor(PROCESSES, mp_context=context) as pool:
            futures = [
                pool.submit(race, database_url, str(SEED), CAP, worker, DECISIONS, start)
                for worker in range(PROCESSES)
            ]
            results: list[dict[str, Any]] = [f.result() for f in futures]

    ledger = Ledger(database_url)
    price = PriceTable.load(SEED).price(*MODEL)
    replayed = replay(ledger, price, CAP)
    assert replayed["proceed"] + replayed["deny"] == PROCESSES * DECISIONS
    assert sum(r["verdicts"].get("proceed", 0) for r in results) == replayed["proceed"]
    # The race was real: many were admitted, many refused, by every process.
    assert replayed["proceed"] > 300 and replayed["deny"] > 300
    # Spend (settled + held) never exceeds the cap, and is what the decisions add up to.
    facts = ledger.budget_facts()
    assert round(facts["daily_spend_usd"] * NANO) == replayed["spent_nusd"] <= CAP * NANO
    # The cap is nearly used up: what is left is smaller than the smallest possible task.
    smallest = PriceTable.estimate_nusd(price, 500, 100)
    assert CAP * NANO - replayed["spent_nusd"] < 50 * smallest
    ledger.close()
