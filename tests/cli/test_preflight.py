"""What `sovereign up` does with the policy files before it starts anything."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import pytest

from arbiter.ledger import Ledger
from arbiter.settings import load_settings
from sovereign.commands.run import preflight
from tests.conftest import ROOT

POLICY = """
strategy Routing returns Route {{
    when {{ task.kind == "code" }} then Local {{ model: "qwen2.5:14b" }}
    else Local {{ model: "qwen2.5:14b" }}
}}
rule Cap {{ when {{ budget.daily_spend_usd > {cap} }} then Deny {{ reason: "cap" }} }}
"""


def start(home: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    """Run `up`'s preflight; returns the active version and what it printed."""
    env = {
        "SOVEREIGN_HOME": str(home),
        "SOVEREIGN_DATABASE_URL": f"sqlite:///{home / 'ledger.db'}",
        "SOVEREIGN_POLICY_PATH": str(home / "rules"),
        "SOVEREIGN_PRICES_PATH": str(ROOT / "rules" / "prices.toml"),
    }
    with mock.patch.dict(os.environ, env):
        settings = load_settings()
        preflight(settings)
        active = Ledger(settings.database_url).active_policy()
    assert active is not None
    return active.version, capsys.readouterr().out


def test_a_restart_keeps_a_rollback_and_publishes_new_edits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "p.arb").write_text(POLICY.format(cap=5))
    first, out = start(tmp_path, capsys)
    assert "checks and is active" in out
    (rules / "p.arb").write_text(POLICY.format(cap=9))  # edited while stopped
    second, out = start(tmp_path, capsys)
    assert second != first and "checks and is active" in out
    # An operator rolls back to the first version; the files still hold the second.
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    old = ledger.policy_record(first)
    assert old is not None
    ledger.publish_policy(first, dict(old.sources), "operator")
    again, out = start(tmp_path, capsys)
    assert again == first
    assert f"holds {second}, published before and since replaced" in out
    (rules / "p.arb").write_text(POLICY.format(cap=12))  # a new edit does go live
    third, _ = start(tmp_path, capsys)
    assert third not in (first, second)
