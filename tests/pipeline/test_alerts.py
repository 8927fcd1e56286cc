"""Webhook alerts from real decisions: halts, Alert actions, a reached cap once a day, a
poisoned task; and a webhook that hangs or fails never holds a decision up."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator

import pytest

from arbiter.errors import TaskBlocked
from arbiter.ledger.leases import Death
from tasks import submit
from tasks.alerts import outbox_for
from tasks.maintenance import rerun_or_poison
from tests.alerts.webhook_server import SECRET, WebhookServer
from tests.pipeline.conftest import Stack, wait_for

pytestmark = pytest.mark.e2e

ALERT_RULES = """
rule NoteDrafts priority 60 {
    when { task.kind == "draft" }
    then Alert { message: "a draft was queued" }
}

rule RedStops priority 5 {
    when { "red" in task.tags }
    then Halt { reason: "a red task stops the studio", scope: "all" }
}
"""


@pytest.fixture
def hook() -> Iterator[WebhookServer]:
    server = WebhookServer().start()
    yield server
    server.stop()


def _stack(make_stack: Callable[..., Stack], redis_url: str, url: str, cap: float) -> Stack:
    stack = make_stack(redis_url, cap=cap)
    (stack.home / "rules" / "alerts.arb").write_text(ALERT_RULES, encoding="utf-8")
    stack.configure(alert_webhook=url)
    return stack


def test_halts_alerts_caps_and_poisoned_tasks_reach_the_webhook(
    redis_url: str, make_stack: Callable[..., Stack], hook: WebhookServer
) -> None:
    stack = _stack(make_stack, redis_url, hook.url, cap=0.0)  # any cloud task hits the cap
    draft = submit("draft", "a poster for the spring show", app=stack.app)
    assert draft.verdict == "proceed"
    with pytest.raises(TaskBlocked, match="red task"):
        submit("classify", "this one is red", tags=["red"], app=stack.app)
    for n in range(3):  # the same cap, three tasks: one alert
        with pytest.raises(TaskBlocked, match="daily cloud budget"):
            submit("strategy", f"plan number {n}", app=stack.app)
    runtime = stack.app.sovereign_runtime.get()
    queued = submit("classify", "a task that keeps killing its worker", app=stack.app)
    payload = (stack.ledger.task(queued.task_id) or {})["payload"]
    death = Death(queued.task_id, 1, runtime.settings.poison_after, payload, 0, 0, False)
    assert rerun_or_poison(stack.app, runtime, death) is False
    stack.ledger.set_halted(True, "an audit")
    with pytest.raises(TaskBlocked):
        submit("classify", "during the audit", app=stack.app)
    with pytest.raises(TaskBlocked):
        submit("classify", "during the audit, again", app=stack.app)

    assert outbox_for(runtime).flush(30)  # type: ignore[union-attr]
    texts = hook.texts()
    assert len(texts) == 5, texts
    assert any("a draft was queued" in t and draft.task_id in t for t in texts)
    assert any("a red task stops the studio" in t and "scope all" in t for t in texts)
    (cap,) = [t for t in texts if "cap reached" in t]
    assert "CloudDailyCap" in cap and "budget.daily_spend_usd > 0" in cap
    assert any("is poisoned" in t and queued.task_id in t for t in texts)
    assert any("sovereign is halted" in t and "an audit" in t for t in texts)
    assert all(p.endswith(SECRET) for p in hook.paths)
    records = {r.kind: r for r in stack.ledger.recent_alerts()}
    assert set(records) == {"alert", "halt", "cap", "poisoned"}
    assert all(r.status == "sent" for r in stack.ledger.recent_alerts())


@pytest.mark.parametrize("mode", ["hang", "fail"])
def test_a_hanging_or_failing_webhook_does_not_hold_decisions(
    redis_url: str,
    make_stack: Callable[..., Stack],
    mode: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hook = WebhookServer(mode).start()
    try:
        stack = _stack(make_stack, redis_url, hook.url, cap=1.0)
        with caplog.at_level(logging.DEBUG):
            handles = [submit("draft", f"draft number {n}", app=stack.app) for n in range(40)]
            if mode == "hang":
                # Forty decisions done while the webhook still holds its first request.
                assert hook.requests <= 1
            else:
                wait_for(lambda: hook.requests >= 2, 30, "the failing webhook to be retried")
        assert [h.verdict for h in handles] == ["proceed"] * 40
        decisions = [stack.ledger.decisions(h.task_id) for h in handles]
        assert all(len(d) == 1 and d[0].verdict == "proceed" for d in decisions)
    finally:
        hook.stop()
    assert SECRET not in caplog.text
    if mode == "fail":
        assert "answered HTTP 500" in caplog.text


def test_the_webhook_is_a_secret_in_settings(
    redis_url: str, make_stack: Callable[..., Stack], hook: WebhookServer
) -> None:
    stack = _stack(make_stack, redis_url, hook.url, cap=1.0)
    assert SECRET not in repr(stack.settings) and SECRET not in str(stack.settings)
    stack.configure(alert_webhook="discord.com/api/webhooks/" + SECRET)
    result = stack.sovereign("spend")
    assert result.returncode == 1 and "SOVEREIGN_ALERT_WEBHOOK" in result.stderr
    assert SECRET not in result.stderr + result.stdout
    assert os.environ.get("SOVEREIGN_ALERT_WEBHOOK") is None


def test_beat_schedules_the_daily_summary_at_the_configured_hour(
    redis_url: str, make_stack: Callable[..., Stack], hook: WebhookServer
) -> None:
    from tasks.app import beat_schedule
    from tasks.names import DAILY_SUMMARY, SUMMARY_ENTRY

    stack = make_stack(redis_url)
    assert SUMMARY_ENTRY not in beat_schedule(stack.settings)  # no webhook, no summary
    stack.configure(alert_webhook=hook.url, summary_hour="7", timezone="Europe/Paris")
    entry = beat_schedule(stack.settings)[SUMMARY_ENTRY]
    assert entry["task"] == DAILY_SUMMARY and entry["schedule"].hour == {7}
    assert entry["schedule"].minute == {0}
    assert str(stack.app.conf.timezone) == "Europe/Paris"  # crontab hours are local


def test_the_daily_summary_task_runs_on_a_worker_and_is_sent_once(
    redis_url: str, make_stack: Callable[..., Stack], hook: WebhookServer
) -> None:
    from tasks.names import DAILY_SUMMARY

    stack = _stack(make_stack, redis_url, hook.url, cap=1.0)
    stack.start_worker("local")
    submit("draft", "a poster", app=stack.app).result(timeout=60)
    wait_for(lambda: any("a draft was queued" in t for t in hook.texts()), 30, "the Alert")
    for _ in range(2):  # beat fired twice (a restart): one summary
        queued = stack.app.send_task(DAILY_SUMMARY).get(timeout=30)
        assert queued["queued"].startswith("summary:")
    wait_for(lambda: any("daily summary" in t for t in hook.texts()), 30, "the summary")
    # The worker's one outbox thread handles the second right after the first.
    time.sleep(1.0)
    summaries = [t for t in hook.texts() if "daily summary" in t]
    assert [r.kind for r in stack.ledger.recent_alerts()].count("summary") == 1
    assert len(summaries) == 1
    assert "tasks today: 1 (1 succeeded)" in summaries[0]
    assert "of a $1.00 cap (rule CloudDailyCap" in summaries[0]


FAKE_LOCAL = """
strategy Routing returns Route {
    when { task.confidential == true } then Local { provider: "fake", model: "fake" }
    else Local { provider: "fake", model: "fake" }
}
"""


def test_a_worker_that_poisons_a_task_alerts_from_its_own_process(
    redis_url: str, make_stack: Callable[..., Stack], hook: WebhookServer
) -> None:
    from workers.fake import CRASH_MARKER

    stack = make_stack(redis_url)
    (stack.home / "rules" / "policy.arb").write_text(FAKE_LOCAL)
    stack.configure(local_backend="fake", alert_webhook=hook.url)
    stack.start_worker("local")
    poison = submit("classify", f"{CRASH_MARKER} this input crashes the model", app=stack.app)
    wait_for(lambda: any("is poisoned" in t for t in hook.texts()), 120, "the poisoned alert")
    (text,) = [t for t in hook.texts() if "is poisoned" in t]
    assert poison.task_id in text and "3 times" in text
    assert (stack.ledger.task(poison.task_id) or {}).get("status") == "poisoned"
    assert SECRET not in stack.log("local")
