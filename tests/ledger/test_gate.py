"""The gate: facts, decision, reservation, parking and the audit record, in one transaction."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from arbiter.errors import LedgerUnavailable
from arbiter.gate import Gate, TaskRequest
from arbiter.ledger import Ledger, PriceTable
from arbiter.usage import Usage
from tests.ledger.helpers import ManualClock
from tests.ledger.policies import cap_policy
from tests.ledger.test_prices import SEED

CAP = 0.01
NANO_ESTIMATE = (2000 * 0.20 + 1000 * 1.25) / 1e6  # gpt-5.4-nano, 2000 in + 1000 out


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 3, 10, 13, 30, tzinfo=UTC))  # a Tuesday, 14:30 in Paris


@pytest.fixture
def ledger(database_url: str, clock: ManualClock) -> Iterator[Ledger]:
    ledger = Ledger(database_url, timezone="Europe/Paris", clock=clock, reservation_ttl_s=600)
    ledger.upgrade()
    yield ledger
    ledger.close()


def host() -> dict[str, dict[str, Any]]:
    return {
        "local": {"available": True, "models": ["qwen2.5:14b"], "queue_depth": 0},
        "cloud": {"providers": ["openai"], "queue_depth": 2},
    }


@pytest.fixture
def gate(ledger: Ledger) -> Gate:
    policy = cap_policy(CAP)
    return Gate(ledger, lambda: policy, PriceTable.load(SEED), host, queues={"cloud": "cloud"})


def request(task_id: str, **changes: Any) -> TaskRequest:
    fields: dict[str, Any] = {
        "task_id": task_id,
        "kind": "summarise",
        "estimated_tokens": 2000,
        "max_tokens": 1000,
        "source": "test",
        "payload": {"task": "sovereign.complete", "kwargs": {"job": {"id": task_id}}},
    }
    fields.update(changes)
    return TaskRequest(**fields)


def test_proceed_holds_the_upper_bound_and_records_everything(gate: Gate, ledger: Ledger) -> None:
    admission = gate.admit(request("t1"))
    assert admission.verdict == "proceed" and admission.admitted
    assert admission.route is not None and admission.route["model"] == "gpt-5.4-nano"
    assert (admission.tier, admission.queue) == ("cloud", "cloud")
    assert admission.reserved_usd == pytest.approx(NANO_ESTIMATE)
    assert ledger.reservation_held("t1", 1)
    assert ledger.budget_facts()["daily_spend_usd"] == pytest.approx(NANO_ESTIMATE)
    (record,) = ledger.decisions("t1")
    assert record.verdict == "proceed" and record.policy_version == admission.policy_version
    facts = record.facts
    assert facts["time"] == {"hour": 14, "weekday": "tue", "date": "2026-03-10"}
    assert facts["system"] == {
        "halted": False,
        "halted_scopes": [],
        "policy_version": admission.policy_version,
    }
    assert facts["cloud"]["queue_depth"] == 2 and facts["task"]["estimated_tokens"] == 2000
    assert facts["route"]["estimated_cost_usd"] == pytest.approx(NANO_ESTIMATE)
    assert record.trace is not None
    task = ledger.task("t1")
    assert task is not None and task["status"] == "queued" and task["payload"]["task"]
    assert ledger.spend_report(by="kind").held_usd == pytest.approx(NANO_ESTIMATE)


def test_deny_over_the_cap_reserves_nothing(gate: Gate, ledger: Ledger) -> None:
    admitted = [gate.admit(request(f"t{i}")).verdict for i in range(8)]
    # Each holds 0.00165; the sixth would make 0.0099, the seventh 0.01155 > 0.01.
    assert admitted == ["proceed"] * 6 + ["deny"] * 2
    denied = ledger.decisions("t7")[0]
    assert (denied.verdict, denied.decided_by, denied.reason) == ("deny", "DailyCap", "daily cap")
    assert denied.reserved_usd == 0
    assert not ledger.reservation_held("t7", 1)
    assert ledger.task("t7")["status"] == "blocked"  # type: ignore[index]
    assert ledger.budget_facts()["daily_spend_usd"] == pytest.approx(6 * NANO_ESTIMATE)
    # A smaller task still fits in what is left.
    assert gate.admit(request("small", estimated_tokens=100, max_tokens=50)).verdict == "proceed"


def test_settle_frees_room_under_the_cap(gate: Gate, ledger: Ledger) -> None:
    from arbiter.usage import Usage

    for i in range(6):
        gate.admit(request(f"t{i}"))
    assert gate.admit(request("late")).verdict == "deny"
    ledger.settle("t0", 1, Usage(100, 10), "openai", "gpt-5.4-nano")
    assert gate.admit(request("late", attempt=2)).verdict == "proceed"


def test_throttle_reserves_now_for_later(gate: Gate, ledger: Ledger, clock: ManualClock) -> None:
    admission = gate.admit(request("slow1", kind="slow"))
    assert admission.verdict == "throttle" and admission.countdown_s == 90
    assert admission.reserved_usd > 0 and ledger.reservation_held("slow1", 1)
    # The deadline is the TTL plus the delay: the reservation outlives a plain one.
    clock.advance(seconds=650)
    assert ledger.expire_reservations() == 0
    clock.advance(seconds=50)
    assert ledger.expire_reservations() == 1


def test_approval_parks_then_passes_once_granted(gate: Gate, ledger: Ledger) -> None:
    parked = gate.admit(request("r1", kind="review"))
    assert parked.verdict == "approval" and parked.parked and parked.reserved_usd == 0
    assert not ledger.reservation_held("r1", 1)
    assert ledger.task("r1")["status"] == "parked"  # type: ignore[index]
    (pending,) = ledger.approvals()
    assert (pending.task_id, pending.reason) == ("r1", "a person reviews this")
    # Claiming approval without a grant parks it again, without a second request.
    assert gate.admit(request("r1", kind="review", approved=True)).verdict == "approval"
    assert len(ledger.approvals()) == 1
    payload = ledger.grant("r1", "ann", "fine")
    assert payload["kwargs"]["job"]["id"] == "r1"
    admission = gate.admit(request("r1", kind="review", approved=True))
    assert admission.verdict == "proceed" and ledger.reservation_held("r1", 1)
    facts = [d.facts["task"]["approved"] for d in ledger.decisions("r1")]
    assert facts == [False, False, True], "task.approved is true only once a person granted it"
    assert [d.verdict for d in ledger.decisions("r1")] == ["approval", "approval", "proceed"]


def test_rejected_approval_blocks_the_task(gate: Gate, ledger: Ledger) -> None:
    gate.admit(request("r2", kind="review"))
    ledger.reject("r2", "bob", "not now")
    assert ledger.task("r2")["status"] == "blocked"  # type: ignore[index]
    assert ledger.approvals(status="rejected")[0].decided_by == "bob"


def test_kill_switch_halts_whatever_the_policy_says(gate: Gate, ledger: Ledger) -> None:
    ledger.set_halted(True, "incident 42")
    admission = gate.admit(request("h1"))
    assert admission.verdict == "halt" and not admission.admitted
    assert "incident 42" in (admission.decision.reason or "")
    assert not ledger.reservation_held("h1", 1)
    assert ledger.decisions("h1")[0].facts["system"]["halted"] is True


def test_cloud_model_without_price_is_denied_and_recorded(ledger: Ledger) -> None:
    policy = cap_policy(CAP)
    gate = Gate(ledger, lambda: policy, PriceTable.empty("rules/prices.toml"), host)
    admission = gate.admit(request("p1"))
    assert admission.verdict == "deny" and admission.reserved_usd == 0
    reason = admission.decision.reason
    assert "openai/gpt-5.4-nano" in reason and "rules/prices.toml" in reason
    (record,) = ledger.decisions("p1")
    assert record.verdict == "deny" and record.reason == reason
    assert not ledger.reservation_held("p1", 1)


def test_confidential_goes_local_for_free(gate: Gate) -> None:
    admission = gate.admit(request("c1", confidential=True))
    assert (admission.verdict, admission.tier, admission.queue) == ("proceed", "local", "local")
    assert admission.reserved_usd == 0


def test_admitting_the_same_attempt_again_replaces_its_hold(gate: Gate, ledger: Ledger) -> None:
    gate.admit(request("t1"))
    gate.admit(request("t1"))
    assert ledger.budget_facts()["daily_spend_usd"] == pytest.approx(NANO_ESTIMATE)
    assert len(ledger.decisions("t1")) == 2


def test_unreachable_ledger_fails_closed() -> None:
    ledger = Ledger("postgresql+psycopg://postgres@127.0.0.1:1/x")
    policy = cap_policy(CAP)
    gate = Gate(ledger, lambda: policy, PriceTable.load(SEED), host)
    with pytest.raises(LedgerUnavailable) as caught:
        gate.admit(request("t1"))
    assert "SOVEREIGN_DATABASE_URL" in str(caught.value) and "\n" not in str(caught.value)


def test_unpriced_route_chosen_by_the_strategy_is_refused(gate: Gate, ledger: Ledger) -> None:
    admission = gate.admit(request("u1", kind="unpriced"))
    assert (admission.verdict, admission.decision.decided_by) == ("deny", "prices")
    assert "openai/gpt-9" in (admission.decision.reason or "")
    assert ledger.decisions("u1")[0].verdict == "deny"
    assert ledger.budget_facts()["daily_spend_usd"] == 0.0


def test_decision_record_carries_the_policy_trace(gate: Gate, ledger: Ledger) -> None:
    gate.admit(request("t1"))
    (record,) = ledger.decisions("t1")
    checks = [step["check"] for step in record.trace or []]
    assert any("DailyCap" in check for check in checks)
    assert record.candidate == "Cloud"


DIRECT = text(
    "SELECT COUNT(*), COALESCE(SUM(amount_nusd), 0), COALESCE(SUM(tokens), 0), "
    "COALESCE(SUM(CASE WHEN tier = 'cloud' THEN 1 ELSE 0 END), 0) "
    "FROM reservations WHERE status = 'held'"
)
KEPT = text("SELECT count, nusd, tokens, cloud FROM held_totals WHERE id = 1")


def held_totals(ledger: Ledger) -> tuple[tuple[int, ...], tuple[int, ...]]:
    with ledger.transaction() as conn:
        direct = tuple(int(v) for v in conn.execute(DIRECT).one())
        kept = tuple(int(v) for v in conn.execute(KEPT).one())
    return direct, kept


def test_held_totals_stay_exact_on_every_path(
    gate: Gate, ledger: Ledger, clock: ManualClock
) -> None:
    for i in range(6):
        assert gate.admit(request(f"t{i}", kind="code")).admitted
    gate.admit(request("local", confidential=True))
    direct, kept = held_totals(ledger)
    assert direct == kept and kept[0] == 7 and kept[3] == 6

    gate.admit(request("t0"))  # the same attempt again replaces its hold
    ledger.settle("t1", 1, Usage(100, 10), "openai", "gpt-5.4-nano")
    ledger.settle("t1", 1, Usage(100, 10), "openai", "gpt-5.4-nano")  # redelivered
    ledger.release("t2", 1, "the call failed")
    ledger.fail_task("t3", 1, "gave up")
    direct, kept = held_totals(ledger)
    assert direct == kept and kept[0] == 4

    clock.advance(hours=2)
    assert ledger.expire_reservations() == 4
    direct, kept = held_totals(ledger)
    assert direct == kept == (0, 0, 0, 0)
    assert ledger.budget_facts()["daily_tokens"] == 110, "only the settled call is left"
