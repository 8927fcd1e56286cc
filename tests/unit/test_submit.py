"""`submit()` against a broker that does not answer: one sentence, and no budget held."""

from __future__ import annotations

from pathlib import Path

import pytest

from arbiter.errors import BrokerUnavailable
from arbiter.settings import load_settings
from tasks import submit
from tasks.app import create_app
from tests.conftest import ROOT
from tests.unit.test_run_job import POLICY


def test_a_publish_that_fails_releases_its_reservation(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "p.arb").write_text(POLICY)
    settings = load_settings(
        {
            "SOVEREIGN_BROKER_URL": "redis://127.0.0.1:1/0",
            "SOVEREIGN_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
            "SOVEREIGN_POLICY_PATH": str(tmp_path / "rules"),
            "SOVEREIGN_PRICES_PATH": str(ROOT / "rules" / "prices.toml"),
            "SOVEREIGN_LOCAL_BACKEND": "fake",
        }
    )
    app = create_app(settings)
    with pytest.raises(BrokerUnavailable, match="nothing was queued; check that the broker runs"):
        submit("classify", "hello", app=app)
    ledger = app.sovereign_runtime.get().ledger  # type: ignore[attr-defined]
    assert ledger.budget_facts()["daily_tokens"] == 0
    [decision] = ledger.decisions()
    assert decision.verdict == "proceed", "the decision stays on record"
    assert (ledger.task(decision.task_id) or {}).get("status") == "failed"
