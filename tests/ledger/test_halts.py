"""The scoped kill switch: what the gate refuses, what workers set aside, what resumes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import text

from arbiter import load_policy_from_sources, migrations
from arbiter.errors import InputError
from arbiter.gate import Gate
from arbiter.ledger import Ledger, PriceTable
from tests.ledger.helpers import ManualClock
from tests.ledger.policies import CAP_POLICY, cap_policy
from tests.ledger.test_gate import host, request
from tests.ledger.test_prices import SEED

KILL_SWITCH_RULE = """
rule KillSwitch priority 0 {
    when { system.halted == true } then Halt { reason: "policy says halt" }
}
rule CloudHalted priority 1 {
    when { "cloud" in system.halted_scopes and route.tier == "cloud" }
        then Deny { reason: "the policy saw the cloud halt" }
}
"""


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 3, 10, 13, 30, tzinfo=UTC))


@pytest.fixture
def ledger(database_url: str, clock: ManualClock) -> Iterator[Ledger]:
    ledger = Ledger(database_url, timezone="UTC", clock=clock, reservation_ttl_s=600)
    ledger.upgrade()
    yield ledger
    ledger.close()


@pytest.fixture
def gate(ledger: Ledger) -> Gate:
    policy = cap_policy(1.0)
    return Gate(ledger, lambda: policy, PriceTable.load(SEED), host, queues={"cloud": "cloud"})


def test_a_cloud_halt_refuses_cloud_routes_and_lets_local_work_through(
    gate: Gate, ledger: Ledger
) -> None:
    assert ledger.set_halt("cloud", True, "provider incident", by="ann") == []
    cloud = gate.admit(request("c1"))
    assert cloud.verdict == "halt" and not cloud.admitted
    assert cloud.decision.decided_by == "system.halted_scopes"
    assert cloud.decision.reason == "cloud work is halted: provider incident"
    assert not ledger.reservation_held("c1", 1)
    local = gate.admit(request("l1", confidential=True))
    assert local.verdict == "proceed" and local.tier == "local"
    system = ledger.decisions("l1")[0].facts["system"]
    assert (system["halted"], system["halted_scopes"]) == (False, ["cloud"])

    ledger.set_halt("cloud", False)
    assert gate.admit(request("c2")).verdict == "proceed"


def test_scope_all_is_system_halted_and_stops_every_tier(gate: Gate, ledger: Ledger) -> None:
    ledger.set_halt("all", True, "audit", by="bob")
    for task_id, changes in (("a1", {}), ("a2", {"confidential": True})):
        admission = gate.admit(request(task_id, **changes))
        assert admission.verdict == "halt"
        assert admission.decision.decided_by == "system.halted"
        assert ledger.decisions(task_id)[0].facts["system"]["halted"] is True
    state = ledger.halt_state()
    assert state.halted and state.names == ["all"] and state.reason == "audit"
    (line,) = state.sentences()
    assert line.startswith("all work is halted since 2026-03-10 13:30 UTC by bob: audit")


def test_policies_see_the_scopes(ledger: Ledger) -> None:
    policy = load_policy_from_sources(
        {"p.arb": "const CAP = 1.0\n" + KILL_SWITCH_RULE + CAP_POLICY}
    )
    gate = Gate(ledger, lambda: policy, PriceTable.load(SEED), host)
    ledger.set_halt("local", True, "GPU swap")
    # A local halt: the policy's cloud rule does not fire, cloud work proceeds.
    assert gate.admit(request("p1")).verdict == "proceed"
    ledger.set_halt("cloud", True, "incident")
    decision = gate.admit(request("p2")).decision
    # The policy's own deny fired, and the gate's halt, more severe, stands over it.
    assert [f.rule for f in decision.fired] == ["CloudHalted"]
    assert decision.verdict == "halt"


def test_the_halt_persists_across_restarts(ledger: Ledger, database_url: str) -> None:
    ledger.set_halt("cloud", True, "incident 7", by="ann")
    again = Ledger(database_url)
    try:
        state = again.halt_state()
        assert state.names == ["cloud"]
        assert (state.scopes[0].reason, state.scopes[0].halted_by) == ("incident 7", "ann")
    finally:
        again.close()


def test_an_unknown_scope_is_one_sentence(ledger: Ledger) -> None:
    with pytest.raises(InputError, match="unknown halt scope 'gpu'; use one of: all, cloud, local"):
        ledger.set_halt("gpu", True, "x")


def test_a_worker_meets_only_the_halt_of_its_tier(gate: Gate, ledger: Ledger) -> None:
    gate.admit(request("c1"))
    gate.admit(request("l1", confidential=True))
    ledger.set_halt("cloud", True, "incident")
    cloud = ledger.begin_attempt("c1", 1)
    assert cloud.halted and cloud.tier == "cloud" and cloud.halt_reason == "incident"
    assert ledger.task("c1")["status"] == "queued"  # type: ignore[index]
    local = ledger.begin_attempt("l1", 1)
    assert not local.halted and ledger.task("l1")["status"] == "running"  # type: ignore[index]


def test_a_halt_reports_the_calls_already_in_flight(gate: Gate, ledger: Ledger) -> None:
    gate.admit(request("c1"))
    gate.admit(request("c2"))
    gate.admit(request("l1", confidential=True))
    for task_id in ("c1", "l1"):
        assert not ledger.begin_attempt(task_id, 1).halted
    assert ledger.set_halt("cloud", True, "x") == [("c1", 1, "cloud")]
    assert ledger.set_halt("all", True, "y") == [("c1", 1, "cloud"), ("l1", 1, "local")]


def test_a_set_aside_task_is_claimed_once_after_its_scope_resumes(
    gate: Gate, ledger: Ledger
) -> None:
    gate.admit(request("c1"))
    ledger.set_halt("cloud", True, "incident")
    assert ledger.begin_attempt("c1", 1).halted
    ledger.set_aside("c1", 1, "cloud", "waits for `sovereign resume`: incident")
    assert not ledger.reservation_held("c1", 1), "no budget is held while it waits"
    assert ledger.task("c1")["status"] == "queued"  # type: ignore[index]
    assert ledger.halted_tasks() == [("c1", 1, "cloud")]
    ledger.set_halt("all", True, "and everything")
    ledger.set_halt("cloud", False)
    assert ledger.claim_resumable() == [], "scope all still covers it"
    ledger.set_halt("all", False)
    (claimed,) = ledger.claim_resumable()
    assert claimed[:3] == ("c1", 1, "cloud")
    assert claimed[3]["kwargs"]["job"] == {"id": "c1"}
    assert ledger.claim_resumable() == [] and ledger.halted_tasks() == []
    # Admitted again as the same attempt: a new reservation, no attempt used up.
    assert gate.admit(request("c1")).verdict == "proceed"
    assert ledger.reservation_held("c1", 1)


def test_a_system_halted_before_the_upgrade_stays_halted(sqlite_url: str) -> None:
    ledger = Ledger(sqlite_url)
    try:
        with ledger.engine.begin() as conn:
            config = migrations.alembic_config(conn)
            command.upgrade(config, "0011")
            conn.execute(
                text(
                    "INSERT INTO system_state (id, halted, reason, updated_at) "
                    "VALUES (1, 1, 'old incident', '2026-01-02 03:04:05')"
                )
            )
        ledger.upgrade()
        state = ledger.halt_state()
        assert state.names == ["all"] and state.reason == "old incident"
        with ledger.engine.begin() as conn:
            command.downgrade(migrations.alembic_config(conn), "0011")
            row = conn.execute(text("SELECT halted, reason FROM system_state")).one()
        assert (bool(row[0]), row[1]) == (True, "old incident")
    finally:
        ledger.close()
