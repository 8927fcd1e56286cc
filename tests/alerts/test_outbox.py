"""The outbox: posts from its own thread, retries, sends a key once, never writes the URL."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from arbiter.alerts import Alert, Outbox, from_decision, where
from arbiter.alerts.webhook import body
from arbiter.lang.caps import policy_caps
from arbiter.lang.decision import Decision, Fired
from arbiter.ledger import Ledger
from tests.alerts.webhook_server import SECRET, WebhookServer


@pytest.fixture
def hook() -> Iterator[WebhookServer]:
    server = WebhookServer().start()
    yield server
    server.stop()


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    led.upgrade()
    yield led
    led.close()


def test_the_body_suits_discord_and_slack() -> None:
    data = json.loads(body("x" * 5000))
    assert data["content"] == data["text"]
    assert len(data["content"]) <= 2000  # Discord's limit


def test_an_alert_reaches_the_webhook_and_is_recorded(hook: WebhookServer, ledger: Ledger) -> None:
    outbox = Outbox(hook.url, ledger)
    assert outbox.put(Alert("k1", "alert", "hello studio"))
    assert outbox.flush(10)
    assert hook.texts() == ["hello studio"]
    (record,) = ledger.recent_alerts()
    assert (record.key, record.status, record.attempts) == ("k1", "sent", 1)
    outbox.close()


def test_a_key_goes_out_once_across_processes(hook: WebhookServer, ledger: Ledger) -> None:
    first, second = Outbox(hook.url, ledger), Outbox(hook.url, ledger)  # two processes' outboxes
    assert first.deliver(Alert("cap:2026-03-10:DailyCap", "cap", "cap reached"))
    assert not first.deliver(Alert("cap:2026-03-10:DailyCap", "cap", "cap reached"))
    assert not second.deliver(Alert("cap:2026-03-10:DailyCap", "cap", "cap reached again"))
    assert hook.texts() == ["cap reached"]


def test_a_failing_webhook_is_retried_with_backoff_then_given_up(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    hook = WebhookServer("fail").start()
    slept: list[float] = []
    try:
        outbox = Outbox(hook.url, ledger, attempts=4, backoff_s=0.5, sleep=slept.append)
        with caplog.at_level(logging.DEBUG):
            assert not outbox.deliver(Alert("k", "halt", "stop"))
    finally:
        hook.stop()
    assert hook.requests == 4 and slept == [0.5, 1.0, 2.0]
    (record,) = ledger.recent_alerts()
    assert (
        record.status == "failed"
        and record.error == f"the webhook at {where(hook.url)} answered HTTP 500"
    )
    assert "answered HTTP 500" in caplog.text


def test_the_webhook_url_never_appears_in_logs(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    failing = WebhookServer("fail").start()
    hanging = WebhookServer("hang").start()
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{s.getsockname()[1]}/hooks/{SECRET}"
    try:
        with caplog.at_level(logging.DEBUG):
            for url in (failing.url, hanging.url, refused, f"https://{SECRET}.invalid/x/{SECRET}"):
                outbox = Outbox(url, ledger, attempts=2, timeout_s=0.3, sleep=lambda _: None)
                assert not outbox.deliver(Alert(f"k-{url}", "alert", "text"))
                outbox.put(lambda: 1 / 0)  # type: ignore[arg-type,return-value]
                outbox.put(Alert(f"q-{url}", "alert", "text"))
                assert outbox.flush(10)
                assert SECRET not in repr(outbox)
    finally:
        failing.stop()
        hanging.stop()
    assert "answered HTTP 500" in caplog.text and "did not answer within" in caplog.text
    assert "could not be reached" in caplog.text
    assert SECRET not in caplog.text
    assert all(SECRET not in (r.error or "") for r in ledger.recent_alerts(50))


def test_a_full_queue_drops_with_a_log_line_and_never_blocks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hanging = WebhookServer("hang").start()
    try:
        outbox = Outbox(hanging.url, None, maxsize=2, timeout_s=30)
        results = [outbox.put(Alert(f"k{i}", "alert", "x")) for i in range(10)]
        # One is being sent (and hangs), two wait; the rest are dropped at once.
        assert results.count(True) <= 3 and outbox.dropped == results.count(False) >= 7
        assert "alert queue is full" in caplog.text
        assert hanging.requests <= 1
    finally:
        hanging.stop()


def _decision(verdict: str, decided_by: str | None, *fired: Fired) -> Decision:
    return Decision(verdict, None, None, decided_by, "why", None, fired, ())


CAP_POLICY = """
rule DailyCap { when { budget.daily_spend_usd > 5 } then Deny { reason: "the day is spent" } }
rule Depth { when { task.depth > 2 } then Deny { reason: "deep enough" } }
"""


def test_what_a_decision_alerts() -> None:
    caps = policy_caps({"p.arb": CAP_POLICY})
    day = date(2026, 3, 10)
    cap = _decision("deny", "DailyCap", Fired("DailyCap", "Deny", {"reason": "the day is spent"}))
    (alert,) = from_decision("t1", "draft", 1, cap, caps, day)
    assert alert.key == "cap:2026-03-10:DailyCap" and "budget.daily_spend_usd > 5" in alert.text
    # The next task refused by the same cap is the same news; the next day it is news again.
    assert from_decision("t2", "draft", 1, cap, caps, day)[0].key == alert.key
    assert from_decision("t2", "draft", 1, cap, caps, date(2026, 3, 11))[0].key != alert.key
    depth = _decision("deny", "Depth", Fired("Depth", "Deny", {"reason": "deep enough"}))
    assert from_decision("t3", "research", 1, depth, caps, day) == []  # not a budget cap
    noted = _decision("proceed", None, Fired("Esc", "Alert", {"message": "escalated"}))
    (alert,) = from_decision("t4", "code", 2, noted, caps, day)
    assert alert.kind == "alert" and "escalated" in alert.text and alert.key == "alert:Esc:t4:2"
    halted = _decision("halt", "Red", Fired("Red", "Halt", {"reason": "red", "scope": "cloud"}))
    (alert,) = from_decision("t5", "code", 1, halted, caps, day)
    assert alert.kind == "halt" and "scope cloud" in alert.text and "red" in alert.text
    quiet = _decision("halt", "Red", Fired("Red", "Halt", {"reason": "red", "alert": False}))
    assert from_decision("t6", "code", 1, quiet, caps, day) == []
    switch = _decision("halt", "system.halted", Fired("X", "Alert", {"message": "m"}))
    kinds = sorted(a.kind for a in from_decision("t7", "code", 1, switch, caps, day))
    assert kinds == ["alert", "halt"]


def test_a_long_key_in_any_script_is_claimed_once(hook: WebhookServer, database_url: str) -> None:
    # A halt's key carries its reason, which a person or a policy writes at any length.
    led = Ledger(database_url)
    led.upgrade()
    try:
        key = "halt:2026-03-10:operator:all:" + "供应商事故、所有云端工作暂停 🛑" * 20
        other = key[:-1] + "!"  # the same long prefix, another reason
        first, second = Outbox(hook.url, led), Outbox(hook.url, led)
        assert first.deliver(Alert(key, "halt", "halted"))
        assert not second.deliver(Alert(key, "halt", "halted again"))
        assert second.deliver(Alert(other, "halt", "halted otherwise"))
        assert hook.texts() == ["halted", "halted otherwise"]
        records = led.recent_alerts()
        assert sorted(r.status for r in records) == ["sent", "sent"]
        assert all(len(r.key) <= 255 for r in records)
    finally:
        led.close()
