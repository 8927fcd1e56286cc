"""What the gate decides itself, whatever the policy says: confidentiality, a Reroute's
price, a model's output limit, and reservations that bound what a provider can bill."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from arbiter import load_policy_from_sources
from arbiter.gate import Gate
from arbiter.ledger import NANO, Ledger, PriceTable
from arbiter.usage import Usage
from tests.ledger.test_gate import host, request
from tests.ledger.test_prices import SEED

HOSTILE = """
strategy Routing returns Route {
    when { task.kind == "local" } then Local { model: "qwen2.5:14b" }
    else Cloud { provider: "openai", model: "gpt-5.4-nano" }
}
rule SendItOut {
    when { task.kind == "local" and "escape" in task.tags }
    then Reroute { tier: "cloud", provider: "anthropic", model: "claude-haiku-4-5" }
}
rule Review {
    when { "review" in task.tags } then RequireApproval { reason: "a person looks first" }
}
rule Disguise {
    when { "disguise" in task.tags }
    then Reroute { tier: "local", provider: "openai", model: "gpt-5.4-nano" }
}
"""

REROUTE = """
const CAP = {cap}
strategy Routing returns Route {{
    when {{ task.kind == "local" }} then Local {{ model: "qwen2.5:14b" }}
    else Cloud {{ provider: "openai", model: "gpt-5.4-nano" }}
}}
rule Upgrade priority 5 {{
    when {{ task.kind == "big" }}
    then Reroute {{ tier: "cloud", provider: "anthropic", model: "claude-opus-4-6" }}
}}
rule DailyCap priority 10 {{
    when {{ budget.daily_spend_usd + route.estimated_cost_usd > CAP }}
    then Deny {{ reason: "daily cap" }}
}}
"""


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    ledger = Ledger(database_url)
    ledger.upgrade()
    yield ledger
    ledger.close()


def gate_with(ledger: Ledger, source: str) -> Gate:
    policy = load_policy_from_sources({"p.arb": source})
    return Gate(ledger, lambda: policy, PriceTable.load(SEED), host)


def test_a_confidential_task_is_never_admitted_to_the_cloud(ledger: Ledger) -> None:
    gate = gate_with(ledger, HOSTILE)
    admission = gate.admit(request("c1", confidential=True))
    assert admission.verdict == "deny" and admission.decision.decided_by == "confidential"
    assert "routing strategy's Cloud branch" in str(admission.decision.reason)
    assert admission.reserved_usd == 0 and not ledger.reservation_held("c1", 1)
    (record,) = ledger.decisions("c1")
    assert record.verdict == "deny" and record.decided_by == "confidential"
    assert record.route is None

    rerouted = gate.admit(request("c2", kind="local", tags=["escape"], confidential=True))
    assert rerouted.decision.decided_by == "confidential"
    assert "rule SendItOut (Reroute)" in str(rerouted.decision.reason)

    disguised = gate.admit(request("c6", kind="local", tags=["disguise"], confidential=True))
    assert disguised.decision.decided_by == "confidential", "a cloud provider is not local"

    parked = gate.admit(request("c3", tags=["review"], confidential=True))
    assert parked.verdict == "deny" and not parked.parked
    assert ledger.approvals() == []

    # The same policy still runs confidential work that it routes locally, and other work.
    local = gate.admit(request("c4", kind="local", confidential=True))
    assert local.verdict == "proceed" and local.tier == "local"
    assert gate.admit(request("c5")).tier == "cloud"


def test_a_reroute_is_priced_and_capped_at_its_own_model(ledger: Ledger) -> None:
    prices = PriceTable.load(SEED)
    nano = PriceTable.estimate_nusd(prices.price("openai", "gpt-5.4-nano"), 2000, 1000)
    opus = PriceTable.estimate_nusd(prices.price("anthropic", "claude-opus-4-6"), 2000, 1000)
    cap = (nano + opus) / 2 / NANO  # the strategy's route fits; the rerouted one does not
    gate = gate_with(ledger, REROUTE.format(cap=cap))
    refused = gate.admit(request("r1", kind="big"))
    assert refused.verdict == "deny" and refused.decision.decided_by == "DailyCap"
    assert not ledger.reservation_held("r1", 1)
    assert any(step.check == "rules at the rerouted price" for step in refused.decision.trace)

    roomy = gate_with(ledger, REROUTE.format(cap=1.0))
    admitted = roomy.admit(request("r2", kind="big"))
    assert admitted.verdict == "proceed" and admitted.route is not None
    assert admitted.route["model"] == "claude-opus-4-6"
    assert admitted.reserved_usd == pytest.approx(opus / NANO)
    assert ledger.budget_facts()["daily_spend_usd"] == pytest.approx(opus / NANO)


def test_max_tokens_above_the_models_output_limit_is_refused(ledger: Ledger) -> None:
    gate = gate_with(ledger, HOSTILE)
    limit = PriceTable.load(SEED).price("openai", "gpt-5.4-nano").max_output
    assert limit is not None
    refused = gate.admit(request("big-out", max_tokens=limit + 1))
    assert refused.verdict == "deny" and refused.decision.decided_by == "output limit"
    assert f"ask for at most {limit:,}" in str(refused.decision.reason)
    assert not ledger.reservation_held("big-out", 1)
    assert gate.admit(request("fits", max_tokens=limit)).verdict == "proceed"


def test_long_context_rates_bound_a_long_input() -> None:
    price = PriceTable.load(SEED).price("openai", "gpt-5.4")
    assert price.long_above is not None and price.long_input and price.long_output
    short = PriceTable.estimate_nusd(price, price.long_above, 1000)
    long = PriceTable.estimate_nusd(price, price.long_above + 1, 1000)
    assert long >= (price.long_above + 1) * price.long_input * 1000 // 1  # USD/M = nUSD/token
    assert long > 1.9 * short
    billed = PriceTable.cost_nusd(price, Usage(price.long_above + 1, 1000))
    assert billed <= long


def test_settling_above_the_reservation_is_recorded_as_a_defect(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    gate = gate_with(ledger, HOSTILE)
    admission = gate.admit(request("over", estimated_tokens=10, max_tokens=10))
    held = round(admission.reserved_usd * NANO)
    record = ledger.settle("over", 1, Usage(100_000, 100_000), "openai", "gpt-5.4-nano")
    assert round(record.cost_usd * NANO) > held
    assert any("DEFECT" in r.getMessage() and "over" in r.getMessage() for r in caplog.records)
    with ledger.reading() as conn:
        reserved = conn.exec_driver_sql(
            "SELECT reserved_nusd FROM model_calls WHERE task_id = 'over'"
        ).scalar()
    assert reserved == held


def _followups(ledger: Ledger) -> Any:
    return ledger.research_facts()["followups_today"]


def test_followups_count_however_the_research_was_submitted(ledger: Ledger) -> None:
    root = ledger.add_topic("root topic")
    ledger.add_topic("from a backlog topic", depth=1, parent_id=root, parent_task="t-1")
    ledger.add_topic("from submit()", depth=1, parent_id=None, parent_task="t-2")
    assert _followups(ledger) == 2
    confidential = ledger.add_topic("client matter", depth=1, confidential=True)
    topic = ledger.topic(confidential)
    assert topic is not None and topic.confidential


def test_the_admissions_own_statements_read_what_sqlalchemy_reads(ledger: Ledger) -> None:
    """The snapshot run on the driver connection (``Prepared``) equals SQLAlchemy's own."""
    from arbiter.ledger.budget import read_snapshot
    from arbiter.ledger.windows import windows

    gate = gate_with(ledger, HOSTILE)
    for n in range(6):
        gate.admit(request(f"p{n}", kind="local" if n % 2 else "summarise"))
    ledger.settle("p0", 1, Usage(1000, 100), "openai", "gpt-5.4-nano")
    ledger.add_topic("a follow-up", depth=1)
    w = windows(ledger.clock(), ledger.zone)
    with ledger.admission() as tx:
        for task_id, attempt in (("p2", 1), ("p1", 1), ("nobody", 1)):
            assert tx.snapshot(w, task_id, attempt) == read_snapshot(tx.conn, w, task_id, attempt)


def test_a_failed_admission_writes_nothing_and_frees_the_lock(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An admission that fails after its writes are queued leaves no row behind, and the
    next admission gets the lock (on PostgreSQL the writes wait to travel with COMMIT)."""
    import arbiter.gate

    gate = gate_with(ledger, HOSTILE)
    real_decide = arbiter.gate.decide

    def decide_then_fail(*args: Any) -> Any:
        admission, rows = real_decide(*args)
        # A status the table's CHECK refuses: the database itself fails the write.
        return admission, dataclasses.replace(rows, task={**rows.task, "status": "bogus"})

    monkeypatch.setattr(arbiter.gate, "decide", decide_then_fail)
    with pytest.raises(Exception, match="status"):
        gate.admit(request("broken"))
    monkeypatch.setattr(arbiter.gate, "decide", real_decide)
    assert ledger.task("broken") is None
    assert ledger.decisions("broken") == []
    assert not ledger.reservation_held("broken", 1)
    admission = gate.admit(request("after"))
    assert admission.decision.verdict == "proceed"
    assert ledger.task("after") is not None
    assert [d.verdict for d in ledger.decisions("after")] == ["proceed"]


def test_a_parked_admission_keeps_its_rows_in_order(ledger: Ledger) -> None:
    """Parking writes the task row before its approval row, on either database."""
    gate = gate_with(ledger, HOSTILE)
    admission = gate.admit(request("parked", tags=("review",)))
    assert admission.decision.verdict == "approval"
    assert [r.task_id for r in ledger.approvals("pending")] == ["parked"]
    assert ledger.task("parked") is not None


def test_a_dropped_postgres_connection_is_one_sentence_and_leaves_the_pool(
    postgres_url: str, postgres_server: str
) -> None:
    """The server ends the gate's connection between two admissions: the next admission
    says the ledger cannot be reached (no driver traceback), and the one after runs on a
    new connection."""
    import sqlalchemy as sa

    from arbiter.errors import LedgerUnavailable

    ledger = Ledger(postgres_url)
    ledger.upgrade()
    gate = gate_with(ledger, HOSTILE)
    gate.admit(request("before"))
    database = postgres_url.rsplit("/", 1)[1]
    admin = sa.create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(
            sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"),
            {"d": database},
        )
    admin.dispose()
    with pytest.raises(LedgerUnavailable, match="cannot reach the ledger database"):
        gate.admit(request("dropped"))
    assert gate.admit(request("after")).decision.verdict == "proceed"
    assert ledger.task("dropped") is None
    assert [d.verdict for d in ledger.decisions("after")] == ["proceed"]
    ledger.close()
