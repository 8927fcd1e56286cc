"""Facts kept from one admission to the next, on both databases.

PostgreSQL's one-round-trip admission decides from the facts read at the end of the
previous admission and writes only if nothing they come from has changed since. SQLite's
gate keeps the facts its previous admission left (that admission's snapshot plus its own
reservation) and reuses them when, under the lock, the fact counter shows that nothing
else has written since. Every test here makes something change the facts behind the gate's
back (another process's ledger, the clock) and checks that the next decision saw it; the
last ones check that kept facts always equal a fresh read.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from arbiter.errors import LedgerUnavailable
from arbiter.gate import Gate
from arbiter.ledger import Ledger, PriceTable
from arbiter.ledger.windows import windows
from arbiter.usage import Usage
from tests.ledger.helpers import ManualClock
from tests.ledger.policies import cap_policy
from tests.ledger.test_gate import CAP, NANO_ESTIMATE, host, request
from tests.ledger.test_prices import SEED

ZONE = "Europe/Paris"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 3, 10, 13, 30, tzinfo=UTC))  # 14:30 in Paris


@contextmanager
def two_ledgers(url: str, clock: ManualClock) -> Iterator[tuple[Ledger, Ledger]]:
    """The gate's ledger and another process's, on the same database."""
    mine = Ledger(url, timezone=ZONE, clock=clock, reservation_ttl_s=600)
    mine.upgrade()
    other = Ledger(url, timezone=ZONE, clock=clock, reservation_ttl_s=600)
    try:
        yield mine, other
    finally:
        mine.close()
        other.close()


@pytest.fixture
def ledgers(database_url: str, clock: ManualClock) -> Iterator[tuple[Ledger, Ledger]]:
    with two_ledgers(database_url, clock) as pair:
        yield pair


@pytest.fixture
def sqlite_ledgers(sqlite_url: str, clock: ManualClock) -> Iterator[tuple[Ledger, Ledger]]:
    with two_ledgers(sqlite_url, clock) as pair:
        yield pair


def kept(gate: Gate) -> int:
    """Admissions decided on kept facts (one round trip on PostgreSQL)."""
    return gate.paths["one_trip"] + gate.paths["kept_facts"] + gate.paths["kept_facts_quiet"]


def moved(gate: Gate) -> int:
    """Admissions that found the kept facts moved and decided on the facts read again."""
    return gate.paths["one_trip_refused"] + gate.paths["kept_facts_moved"]


def make_gate(ledger: Ledger, cap: float = CAP) -> Gate:
    policy = cap_policy(cap)
    return Gate(ledger, lambda: policy, PriceTable.load(SEED), host, queues={"cloud": "cloud"})


def facts_of(ledger: Ledger, task_id: str) -> dict[str, Any]:
    (record,) = ledger.decisions(task_id)
    return record.facts


def test_admissions_after_the_first_decide_on_kept_facts(
    ledgers: tuple[Ledger, Ledger],
) -> None:
    mine, _ = ledgers
    gate = make_gate(mine)
    for n in range(4):
        assert gate.admit(request(f"t{n}")).verdict == "proceed"
    if mine.dialect == "postgresql":
        assert gate.paths == {"locked": 1, "one_trip": 3}
    else:
        assert gate.paths == {"locked": 4, "kept_facts": 3}
    # Each decision saw the holds of the ones before it.
    spent = [facts_of(mine, f"t{n}")["budget"]["daily_spend_usd"] for n in range(4)]
    assert spent == pytest.approx([0, NANO_ESTIMATE, 2 * NANO_ESTIMATE, 3 * NANO_ESTIMATE])
    assert mine.budget_facts()["daily_spend_usd"] == pytest.approx(4 * NANO_ESTIMATE)


def test_a_halt_elsewhere_reaches_the_next_decision(ledgers: tuple[Ledger, Ledger]) -> None:
    mine, other = ledgers
    gate = make_gate(mine)
    gate.admit(request("before"))
    other.set_halted(True, "incident")
    admission = gate.admit(request("after"))
    assert admission.verdict == "halt" and "incident" in admission.decision.reason
    assert moved(gate) == 1
    assert gate.paths["one_trip"] == (1 if mine.dialect == "postgresql" else 0)
    assert not mine.reservation_held("after", 1)


def test_spend_settled_elsewhere_reaches_the_cap(ledgers: tuple[Ledger, Ledger]) -> None:
    mine, other = ledgers
    gate = make_gate(mine)
    assert gate.admit(request("first")).verdict == "proceed"
    # A worker elsewhere bills a call that leaves no room for another estimate.
    other.settle(
        "first", 1, Usage(0, 0), "openai", "gpt-5.4-nano", cost_usd=CAP - NANO_ESTIMATE / 2
    )
    admission = gate.admit(request("second"))
    assert admission.verdict == "deny"
    assert facts_of(mine, "second")["budget"]["daily_spend_usd"] == pytest.approx(
        CAP - NANO_ESTIMATE / 2
    )


def test_another_gate_admitting_moves_the_facts(ledgers: tuple[Ledger, Ledger]) -> None:
    mine, other = ledgers
    gate, rival = make_gate(mine), make_gate(other)
    gate.admit(request("a1"))
    rival.admit(request("b1"))
    gate.admit(request("a2"))
    assert facts_of(mine, "a2")["budget"]["daily_spend_usd"] == pytest.approx(2 * NANO_ESTIMATE)


def test_research_topics_and_tasks_move_the_research_facts(
    ledgers: tuple[Ledger, Ledger],
) -> None:
    mine, other = ledgers
    gate = make_gate(mine, cap=1.0)
    gate.admit(request("warm"))
    other.add_topic("pricing of rivals")
    gate.admit(request("after-topic"))
    assert facts_of(mine, "after-topic")["research"]["backlog"] == 1
    make_gate(other, cap=1.0).admit(request("r1", kind="research"))
    gate.admit(request("after-research"))
    assert facts_of(mine, "after-research")["research"]["cycles_today"] == 1


def test_the_rolling_hour_forgets_a_call_without_any_write(
    ledgers: tuple[Ledger, Ledger], clock: ManualClock
) -> None:
    mine, other = ledgers
    gate = make_gate(mine, cap=1.0)
    gate.admit(request("billed"))
    other.settle("billed", 1, Usage(5000, 1000), "openai", "gpt-5.4-nano")
    clock.advance(minutes=30)
    gate.admit(request("within"))
    assert facts_of(mine, "within")["budget"]["hourly_tokens"] == 6000  # the settled call
    clock.advance(minutes=31)  # the call is now 61 minutes old; nothing was written since
    gate.admit(request("outside"))
    # Only "within" is left: still held (2000 in + 1000 out); the call has dropped out.
    assert facts_of(mine, "outside")["budget"]["hourly_tokens"] == 2000 + 1000


def test_local_midnight_starts_a_new_day(
    ledgers: tuple[Ledger, Ledger], clock: ManualClock
) -> None:
    mine, other = ledgers
    clock.set(datetime(2026, 3, 10, 22, 58, tzinfo=UTC))  # 23:58 in Paris
    gate = make_gate(mine, cap=1.0)
    gate.admit(request("late"))
    other.settle("late", 1, Usage(2000, 300), "openai", "gpt-5.4-nano")
    gate.admit(request("later"))  # reads the settled call into the facts it keeps
    clock.advance(minutes=3)  # 00:01 in Paris: yesterday's settled spend no longer counts
    gate.admit(request("tomorrow"))
    budget = facts_of(mine, "tomorrow")["budget"]
    assert budget["daily_spend_usd"] == pytest.approx(NANO_ESTIMATE)  # only "later", held
    assert budget["monthly_spend_usd"] > budget["daily_spend_usd"]


def test_the_same_attempt_again_takes_the_locked_path(ledgers: tuple[Ledger, Ledger]) -> None:
    mine, _ = ledgers
    gate = make_gate(mine)
    gate.admit(request("again"))
    gate.admit(request("again"))
    with mine.engine.connect() as conn:
        held = conn.execute(
            text("SELECT count(*) FROM reservations WHERE task_id = 'again' AND status = 'held'")
        ).scalar()
    assert held == 1
    if mine.dialect == "postgresql":
        assert gate.paths["one_trip_refused"] == 2 and gate.paths["locked"] == 2
    else:
        assert gate.paths["kept_facts_moved"] == 1 and gate.paths["kept_facts"] == 0
    assert mine.budget_facts()["daily_spend_usd"] == pytest.approx(NANO_ESTIMATE)


def fresh_facts(ledger: Ledger) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Budget and research facts read now, and the fact counter."""
    budget, research = ledger.budget_facts(), ledger.research_facts()
    with ledger.engine.connect() as conn:
        version = conn.execute(text("SELECT version FROM ledger_version")).scalar_one()
    return budget, research, int(version)


def test_kept_facts_always_equal_a_fresh_read(
    ledgers: tuple[Ledger, Ledger], clock: ManualClock
) -> None:
    """Admissions of every verdict and tier, with writes elsewhere in between: whenever the
    gate keeps facts, they are what reading the ledger afresh gives."""
    mine, other = ledgers
    gate = make_gate(mine, cap=0.05)
    rng = random.Random(7)
    kinds = ["summarise"] * 6 + ["slow", "review", "unpriced", "research"]
    checked = 0
    for n in range(160):
        changes: dict[str, Any] = {"kind": rng.choice(kinds), "fresh_id": rng.random() < 0.5}
        if rng.random() < 0.2:
            changes["confidential"] = True  # a local route: held, but no cloud call
        if rng.random() < 0.1:
            changes["max_tokens"] = rng.randint(1, 40_000)
        gate.admit(request(f"r{n}", **changes))
        roll = rng.random()
        if roll < 0.1 and n:
            other.settle(f"r{n - 1}", 1, Usage(1500, 400), "openai", "gpt-5.4-nano")
        elif roll < 0.15:
            other.release(f"r{rng.randrange(n + 1)}", 1, "test")
        elif roll < 0.18:
            other.add_topic(f"topic {n}")
        elif roll < 0.2:
            other.set_halted(not other.is_halted(), "test")
        clock.advance(seconds=rng.randint(1, 90))
        known = gate._known
        if known is None or not known.valid_at(windows(clock(), mine.zone)):
            continue
        budget, research, version = fresh_facts(mine)
        if version != known.snapshot.version:
            continue  # moved by a write elsewhere: the next admission reads again
        assert known.snapshot.budget == pytest.approx(budget)
        assert known.snapshot.research == research
        checked += 1
    assert checked > 40
    assert kept(gate) > 40 and moved(gate) > 5


def test_each_admission_leaves_the_counter_where_its_kept_facts_say(
    ledgers: tuple[Ledger, Ledger],
) -> None:
    mine, _ = ledgers
    gate = make_gate(mine, cap=1.0)
    for n, kind in enumerate(["summarise", "review", "unpriced", "slow", "summarise"]):
        gate.admit(request(f"v{n}", kind=kind))
        assert gate._known is not None
        assert gate._known.snapshot.version == fresh_facts(mine)[2]


def test_an_admission_that_does_not_commit_leaves_no_kept_facts(
    sqlite_ledgers: tuple[Ledger, Ledger], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: facts computed for a write that rolled back must not be reused, even once
    the counter has moved by as much as that write would have moved it. (PostgreSQL's
    one-round-trip write commits in its own pipeline and keeps nothing when that fails.)"""
    mine, other = sqlite_ledgers
    gate = make_gate(mine)
    gate.admit(request("first"))
    from arbiter.ledger.admission import AdmissionTx

    real_commit = AdmissionTx.commit

    def failing_commit(self: AdmissionTx) -> None:
        raise LedgerUnavailable("the disk is full")

    monkeypatch.setattr(AdmissionTx, "commit", failing_commit)
    with pytest.raises(LedgerUnavailable):
        gate.admit(request("lost"))
    monkeypatch.setattr(AdmissionTx, "commit", real_commit)
    assert not mine.reservation_held("lost", 1)
    # Another process moves the counter once, as the lost admission's hold would have.
    other.add_topic("a topic")
    gate.admit(request("next"))
    facts = facts_of(mine, "next")
    assert facts["research"]["backlog"] == 1
    assert facts["budget"]["daily_spend_usd"] == pytest.approx(NANO_ESTIMATE)  # "first" only


def test_sqlite_fresh_ids_skip_the_counter_while_no_other_connection_commits(
    sqlite_ledgers: tuple[Ledger, Ledger],
) -> None:
    """A burst of tasks whose ids `submit` has just drawn, with nothing else writing, is
    decided on kept facts without reading the counter; the first commit by anything else
    sends the next admission back to the counter (or a full read)."""
    mine, other = sqlite_ledgers
    gate = make_gate(mine, cap=1.0)
    for n in range(3):
        gate.admit(request(f"f{n}", fresh_id=True))
    assert gate.paths["kept_facts_quiet"] == 2
    other.add_topic("rivals' pricing")  # another connection commits
    gate.admit(request("f3", fresh_id=True))
    assert gate.paths["kept_facts_quiet"] == 2 and gate.paths["kept_facts_moved"] == 1
    facts = facts_of(mine, "f3")
    assert facts["research"]["backlog"] == 1
    assert facts["budget"]["daily_spend_usd"] == pytest.approx(3 * NANO_ESTIMATE)
    gate.admit(request("f4", fresh_id=True))
    assert gate.paths["kept_facts_quiet"] == 3
    # An id the caller chose may have been admitted before: the counter and the attempt's
    # own holds are read.
    gate.admit(request("f4"))
    assert gate.paths["kept_facts_quiet"] == 3 and gate.paths["kept_facts_moved"] == 2
    assert mine.budget_facts()["daily_spend_usd"] == pytest.approx(5 * NANO_ESTIMATE)


def test_sqlite_facts_kept_by_another_threads_connection_are_checked(
    sqlite_ledgers: tuple[Ledger, Ledger],
) -> None:
    mine, _ = sqlite_ledgers
    gate = make_gate(mine, cap=1.0)
    gate.admit(request("main-1", fresh_id=True))
    worker = threading.Thread(target=gate.admit, args=(request("thread-1", fresh_id=True),))
    worker.start()
    worker.join()
    gate.admit(request("main-2", fresh_id=True))
    # The thread's admission used its own connection: kept facts from the main thread's
    # were checked against the counter there, and the thread's against it here.
    assert gate.paths["kept_facts_quiet"] == 0 and gate.paths["kept_facts"] == 2
    assert facts_of(mine, "main-2")["budget"]["daily_spend_usd"] == pytest.approx(2 * NANO_ESTIMATE)
