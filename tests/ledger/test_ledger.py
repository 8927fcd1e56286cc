"""The ledger on SQLite and PostgreSQL: schema, settle once, release, expiry, shared state."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from arbiter import migrations
from arbiter.errors import InputError, LedgerUnavailable
from arbiter.ledger import Ledger, PriceTable
from arbiter.ledger.models import Base
from arbiter.ledger.notes import include_object
from arbiter.ledger.reservations import insert_reservation
from arbiter.ledger.windows import to_db
from arbiter.usage import Usage
from tests.ledger.helpers import ManualClock
from tests.ledger.test_prices import SEED

SONNET = ("anthropic", "claude-sonnet-4-5")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def ledger(database_url: str, clock: ManualClock) -> Iterator[Ledger]:
    ledger = Ledger(database_url, clock=clock, prices=PriceTable.load(SEED), reservation_ttl_s=600)
    ledger.upgrade()
    yield ledger
    ledger.close()


def hold(ledger: Ledger, task_id: str, usd: float, attempt: int = 1, tokens: int = 100) -> None:
    """A reservation as the gate would take it."""
    now = ledger.clock()
    with ledger.serialized() as conn:
        insert_reservation(
            conn,
            task_id=task_id,
            attempt=attempt,
            amount_nusd=round(usd * 1e9),
            tokens=tokens,
            tier="cloud",
            provider=SONNET[0],
            model=SONNET[1],
            now=to_db(now),
            expires_at=to_db(now + ledger.reservation_ttl),
        )


def test_migrations_match_the_models_and_rerun_cleanly(ledger: Ledger) -> None:
    assert ledger.upgrade() == migrations.head_revision() == ledger.revision()
    with ledger.engine.connect() as conn:
        # The notes' full-text index is not a model (arbiter.ledger.notes.include_object).
        opts = {"compare_type": True, "include_object": include_object}
        context = MigrationContext.configure(conn, opts=opts)
        assert compare_metadata(context, Base.metadata) == []


def test_held_reservations_count_in_every_window(ledger: Ledger) -> None:
    hold(ledger, "t1", 0.25, tokens=1500)
    facts = ledger.budget_facts()
    assert facts == {
        "daily_spend_usd": 0.25,
        "monthly_spend_usd": 0.25,
        "hourly_tokens": 1500,
        "daily_tokens": 1500,
        "daily_cloud_calls": 1,
    }


def test_settle_replaces_the_reservation_with_the_real_cost(ledger: Ledger) -> None:
    hold(ledger, "t1", 0.25)
    usage = Usage(1000, 200, convention="separate")
    record = ledger.settle("t1", 1, usage, *SONNET, result={"text": "hi"})
    assert record.charged and record.cost_usd == pytest.approx(0.006)
    assert not ledger.reservation_held("t1", 1)
    assert ledger.budget_facts()["daily_spend_usd"] == pytest.approx(0.006)
    assert ledger.budget_facts()["daily_tokens"] == 1200


def test_redelivery_settles_once(ledger: Ledger) -> None:
    hold(ledger, "t1", 0.25)
    usage = Usage(1000, 200, convention="separate")
    first = ledger.settle("t1", 1, usage, *SONNET, result={"text": "answer"})
    again = ledger.settle("t1", 1, usage, *SONNET, result={"text": "answer"})
    assert first.charged and not again.charged
    assert again.cost_usd == first.cost_usd
    report = ledger.spend_report()
    assert report.total.calls == 1 and report.total.cost_usd == pytest.approx(0.006)
    assert ledger.succeeded_call("t1", 1) == {"text": "answer"}
    assert ledger.succeeded_call("t1", 2) is None
    # A new attempt is a new call and is billed.
    assert ledger.settle("t1", 2, usage, *SONNET).charged
    assert ledger.spend_report().total.calls == 2


def test_release_frees_the_budget(ledger: Ledger) -> None:
    hold(ledger, "t1", 0.25)
    assert ledger.release("t1", 1, "the backend refused") == 1
    assert ledger.budget_facts()["daily_spend_usd"] == 0.0
    assert ledger.release("t1", 1, "twice") == 0


def test_dead_worker_reservation_expires(ledger: Ledger, clock: ManualClock) -> None:
    hold(ledger, "dead", 0.40)
    hold(ledger, "alive", 0.10)
    clock.advance(seconds=300)
    hold(ledger, "young", 0.05)
    clock.advance(seconds=301)  # "dead" and "alive" are past the 600 s TTL
    ledger.settle("alive", 1, Usage(10, 10), *SONNET)  # settled in time: untouched by expiry
    assert ledger.expire_reservations() == 1
    assert not ledger.reservation_held("dead", 1)
    assert ledger.reservation_held("young", 1)
    assert ledger.budget_facts()["daily_spend_usd"] == pytest.approx(0.05 + 0.00018)
    assert ledger.expire_reservations() == 0
    # A shorter TTL given by the caller applies to every held reservation.
    assert ledger.expire_reservations(ttl_s=200) == 1


def test_fail_task_releases_and_marks(ledger: Ledger) -> None:
    hold(ledger, "t1", 0.25)
    ledger.fail_task("t1", 1, "the prompt was refused")
    assert not ledger.reservation_held("t1", 1)


def test_halt_flag(ledger: Ledger) -> None:
    assert not ledger.is_halted()
    ledger.set_halted(True, "runaway spend")
    assert ledger.halt_state().reason == "runaway spend"
    ledger.set_halted(False)
    assert not ledger.halt_state().halted and ledger.halt_state().reason is None


def test_research_topics_are_claimed_once(ledger: Ledger, clock: ManualClock) -> None:
    root = ledger.add_topic("solid-state batteries")
    child = ledger.add_topic("sodium anodes", depth=1, parent_id=root)
    urgent = ledger.add_topic("lithium prices", priority=5, tags=["client-a"])
    assert ledger.research_facts() == {
        "cycles_today": 0,
        "followups_today": 1,
        "backlog": 3,
        "escalations_today": 0,
    }
    first = ledger.claim_topic()
    assert first is not None and first.id == urgent and first.tags == ("client-a",)
    ledger.unclaim_topic(urgent)
    assert [t.id for t in ledger.claim_topics(2)] == [urgent, root], "priority, then age"
    assert [t.id for t in ledger.claim_topics(5)] == [child]
    assert ledger.claim_topics(5) == []
    assert {t.status for t in ledger.topics()} == {"running"}
    # A topic a daily cap refused waits, and is not claimed before its wait ends.
    ledger.hold_topic(root, "waiting", "deny by DailyCap", ledger.now() + timedelta(hours=1))
    ledger.unclaim_topic(root)  # only a running topic goes back to the queue
    assert ledger.claim_topics(5) == []
    clock.advance(hours=2)
    assert [t.id for t in ledger.claim_topics(5)] == [root]
    ledger.save_brief(child, "task-9", "sodium is cheap")
    assert ledger.briefs(child) == ["sodium is cheap"]
    assert ledger.topic(child).status == "done"  # type: ignore[union-attr]
    clock.advance(days=1)
    assert ledger.research_facts()["followups_today"] == 0


def test_published_policies_keep_one_active(ledger: Ledger) -> None:
    assert ledger.active_policy() is None
    ledger.publish_policy("v1", {"main.arb": "rule A { when { true } then Allow {} }"}, "ann")
    ledger.publish_policy("v2", {"main.arb": "# v2"}, "bob")
    active = ledger.active_policy()
    assert active is not None and (active.version, active.sources) == ("v2", {"main.arb": "# v2"})
    assert [p.active for p in ledger.policy_history()] == [True, False]


def test_grant_of_unknown_task_is_one_sentence(ledger: Ledger) -> None:
    with pytest.raises(InputError, match="has no pending approval"):
        ledger.grant("nope", "ann")


def test_spend_report_groups(ledger: Ledger, clock: ManualClock) -> None:
    ledger.settle("a", 1, Usage(1000, 100, convention="separate"), *SONNET)
    ledger.settle("b", 1, Usage(1000, 100), "openai", "gpt-5.4-nano")
    clock.advance(days=1)
    ledger.settle("c", 1, Usage(500, 50), "ollama", "qwen2.5:14b")
    by_provider = {r.key: r for r in ledger.spend_report(days=2, by="provider").rows}
    assert set(by_provider) == {"anthropic", "openai", "ollama"}
    assert by_provider["ollama"].cost_usd == 0.0
    assert by_provider["anthropic"].cost_usd == pytest.approx(0.0045)
    days = ledger.spend_report(days=2, by="day").rows
    assert [r.calls for r in days] == [2, 1]
    assert [r.key for r in ledger.spend_report(days=1, by="kind").rows] == ["unknown"]
    assert ledger.spend_report(days=1).total.calls == 1
    assert ledger.spend_report(days=1).since == clock().replace(hour=0) - timedelta(0)


def test_unreachable_database_is_one_sentence() -> None:
    ledger = Ledger("postgresql://postgres@127.0.0.1:1/nothing")
    with pytest.raises(LedgerUnavailable) as caught:
        ledger.budget_facts()
    message = str(caught.value)
    assert "SOVEREIGN_DATABASE_URL" in message and "127.0.0.1:1" in message
    assert "\n" not in message


def test_unsupported_database_is_one_sentence() -> None:
    with pytest.raises(LedgerUnavailable, match="SOVEREIGN_DATABASE_URL"):
        Ledger("mysql://localhost/x")


def test_sqlite_default_creates_its_folder(tmp_path: object) -> None:
    from pathlib import Path

    from arbiter.errors import ConfigError

    home = Path(str(tmp_path))
    (home / "rules").mkdir()
    (home / "rules" / "x.arb").write_text("")
    with pytest.raises(ConfigError, match="does not exist"):
        Ledger(f"sqlite:///{home / 'elsewhere' / 'x.db'}")
    target = home / "var" / "sovereign.db"  # the home's own var/ is created
    ledger = Ledger(f"sqlite:///{target}")
    ledger.upgrade()
    assert target.exists()
    with ledger.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    ledger.close()
