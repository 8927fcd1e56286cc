"""`sovereign status` with no task id, against a running stack: every field, and values
that match the ledger."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

import pytest

from arbiter.errors import TaskBlocked
from sovereign.status_report import gather
from tasks import submit
from tests.alerts.webhook_server import SECRET
from tests.pipeline.conftest import Stack, wait_for
from workers.probe import LocalProbe

pytestmark = pytest.mark.e2e

FIELDS = {
    "generated_at", "health", "queues", "webhook", "policy", "caps", "budget", "spend",
    "tokens", "reservations", "approvals", "poisoned", "kill_switch", "blocked",
}  # fmt: skip


def test_status_json_matches_the_ledger(
    redis_url: str,
    make_stack: Callable[..., Stack],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stack = make_stack(redis_url, cap=2.5)
    stack.start_worker("local")
    done = submit("classify", "label this ticket", app=stack.app)
    done.result(timeout=60)
    with pytest.raises(TaskBlocked):
        submit("classify", "never run this", tags=["forbidden"], app=stack.app)
    parked = submit("code", "commit the fix", tags=["commit"], app=stack.app)
    # No cloud worker runs: the cloud task waits in its queue with its reservation held.
    waiting = submit("strategy", "where should the studio go next year", app=stack.app)
    poisoned = submit("classify", "a task that kills its worker", tags=["slowdown"], app=stack.app)
    stack.ledger.poison(poisoned.task_id, "killed its worker 3 times")
    wait_for(lambda: stack.ledger.task(poisoned.task_id), 10, "the poisoned row")

    for key, value in stack.env.items():
        if key.startswith("SOVEREIGN_"):
            monkeypatch.setenv(key, value)
    report = gather(stack.settings)
    assert set(report) == FIELDS

    health = report["health"]
    assert health["broker"]["ok"] and health["database"]["ok"]
    assert {w["name"] for w in health["workers"]} == {f"local@{socket.gethostname()}"}
    # The same answer the gate's probe gets (the fake server lists no models: down).
    probed = LocalProbe(stack.settings).facts()
    assert health["local_model"]["backend"] == "openai_compat"
    assert (health["local_model"]["ok"], health["local_model"]["detail"]) == (
        probed.available,
        probed.detail,
    )
    assert health["flower"]["ok"] is False  # not started in this test
    assert report["queues"]["cloud"] == 1

    ledger = stack.ledger
    budget = ledger.budget_facts()
    assert report["budget"] == budget
    today = report["spend"]["today_usd"]
    assert today["used"] == budget["daily_spend_usd"] > 0  # the held cloud reservation
    assert (today["cap"], today["rule"], today["tier"]) == (2.5, "CloudDailyCap", "cloud")
    assert report["spend"]["month_usd"]["used"] == budget["monthly_spend_usd"]
    assert report["spend"]["month_usd"]["cap"] is None  # this policy has no monthly cap
    assert report["tokens"]["last_hour"]["used"] == budget["hourly_tokens"]

    spend = ledger.spend_report()
    held = report["reservations"]
    assert (held["held"], held["held_usd"]) == (spend.held_count, spend.held_usd)
    assert held["held"] >= 1 and held["held_usd_by_tier"]["cloud"] > 0
    pending = ledger.approvals("pending")
    assert report["approvals"]["pending"] == len(pending) == 1
    assert report["approvals"]["tasks"][0]["task_id"] == parked.task_id
    assert report["poisoned"]["count"] == 1
    assert report["poisoned"]["tasks"][0]["task_id"] == poisoned.task_id
    assert report["kill_switch"]["halted"] is False
    (blocked,) = report["blocked"]
    assert blocked["verdict"] == "deny" and blocked["decided_by"] == "Forbidden"
    assert blocked["reason"] == "the forbidden tag is never run"
    assert waiting.task_id not in {b["task_id"] for b in report["blocked"]}

    # The command's JSON is the same mapping; its plain output names every section.
    from sovereign.commands import screen

    capsys.readouterr()
    screen.show(as_json=True)
    shown = json.loads(capsys.readouterr().out)
    assert set(shown) == FIELDS and shown["reservations"] == report["reservations"]
    ledger.set_halted(True, "the quarterly audit")
    screen.show(as_json=False)
    text = capsys.readouterr().out
    lines = text.splitlines()
    for heading in ("health", "budget", "work", "last refusals", "waiting for approval"):
        assert any(line.startswith(heading) for line in lines), heading
    assert "HALTED" in text and "the quarterly audit" in text
    assert "CloudDailyCap" in text and "\x1b[" not in text  # plain in a pipe

    # Through the command line, with a webhook configured: shown by its host only.
    stack.configure(alert_webhook=f"https://hooks.example.com/services/{SECRET}")
    result = stack.sovereign("status", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == FIELDS and data["kill_switch"]["halted"] is True
    assert data["webhook"] == {"configured": True, "where": "https://hooks.example.com/…"}
    assert SECRET not in result.stdout + result.stderr
    assert data["approvals"]["pending"] == 1 and data["poisoned"]["count"] == 1
