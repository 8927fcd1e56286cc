"""`sovereign enqueue --wait` on a terminal follows the task's state in the ledger."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

from arbiter import load_policy_from_sources
from arbiter.gate import Gate
from arbiter.ledger import Ledger, PriceTable
from sovereign import output
from sovereign.commands import run
from tests.ledger.test_gate import host, request
from tests.ledger.test_prices import SEED

POLICY = """
strategy Routing returns Route {
    when { task.kind == "code" } then Local { model: "qwen2.5:14b" }
    else Local { model: "qwen2.5:14b" }
}
"""


class StubHandle:
    """A submitted task whose worker is the test: done after a few polls."""

    def __init__(self, ledger: Ledger, task_id: str) -> None:
        self.ledger, self.task_id, self.polls = ledger, task_id, 0

    def done(self) -> bool:
        self.polls += 1
        if self.polls == 2:
            self.ledger.begin_attempt(self.task_id, 1, worker="local@box")
        return self.polls > 3

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        return {"text": "answer"}


def test_the_spinner_follows_queued_then_running(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger(url)
    ledger.upgrade()
    policy = load_policy_from_sources({"p.arb": POLICY})
    Gate(ledger, lambda: policy, PriceTable.load(SEED), host).admit(request("t1"))
    shown: list[str] = []

    @contextlib.contextmanager
    def activity(text: str) -> Iterator[Callable[[str], None]]:
        shown.append(text)
        yield shown.append

    env = {"SOVEREIGN_DATABASE_URL": url, "SOVEREIGN_HOME": str(tmp_path)}
    with (
        mock.patch.dict(os.environ, env),
        mock.patch.object(output, "interactive", return_value=True),
        mock.patch.object(output, "activity", activity),
        mock.patch("time.sleep"),
    ):
        result = run._wait(StubHandle(ledger, "t1"), 30, show=True)
    assert result == {"text": "answer"}
    assert shown[1] == "task t1: queued (attempt 1)"
    assert shown[-1] == "task t1: running (attempt 1) on local@box"


def test_off_a_terminal_it_just_waits(tmp_path: Path) -> None:
    handle = mock.Mock()
    handle.result.return_value = {"text": "answer"}
    with mock.patch.object(output, "interactive", return_value=False):
        assert run._wait(handle, 5, show=True) == {"text": "answer"}
    handle.result.assert_called_once_with(timeout=5)
    handle.done.assert_not_called()
