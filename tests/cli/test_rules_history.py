"""`sovereign rules publish`, `history`, `diff` and `rollback` through the real command line."""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from arbiter.lang.policy import policy_version
from arbiter.ledger import Ledger
from sovereign.cli import cli
from tests.conftest import ROOT

V1 = """
strategy Routing returns Route {
    when { task.kind == "strategy" } then Cloud { provider: "openai", model: "gpt-5.4-nano" }
    else Local { model: "qwen2.5:14b" }
}

rule DailyCap priority 10 {
    when { route.tier == "cloud" and budget.daily_spend_usd > 5 }
    then Deny { reason: "the daily cloud budget is spent" }
}
"""

V2_RULE = """
rule LaterIsDenied priority 12 {
    when { "later" in task.tags }
    then Deny { reason: "later work waits" }
}
"""


class Cli:
    """The command line against one ledger and one policy folder."""

    def __init__(self, database_url: str, home: Path) -> None:
        self.rules = home / "rules"
        self.rules.mkdir(parents=True)
        self.file = self.rules / "policy.arb"
        self.env = {
            "SOVEREIGN_DATABASE_URL": database_url,
            "SOVEREIGN_PRICES_PATH": str(ROOT / "rules" / "prices.toml"),
            "SOVEREIGN_POLICY_PATH": str(self.rules),
            "SOVEREIGN_VAR_DIR": str(home / "var"),
        }
        self.ledger = Ledger(database_url)
        self.ledger.upgrade()

    def __call__(self, *args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(cli, list(args), env=self.env)
        return result.exit_code, result.stdout, result.stderr

    def publish(self, text: str) -> str:
        self.file.write_text(text, encoding="utf-8")
        code, out, err = self("rules", "publish")
        assert code == 0, err
        active = self.ledger.active_policy()
        assert active is not None and f"policy {active.version} is active" in out
        return active.version

    def active(self) -> str:
        record = self.ledger.active_policy()
        assert record is not None
        return record.version


@pytest.fixture
def run(database_url: str, tmp_path: Path) -> Iterator[Cli]:
    runner = Cli(database_url, tmp_path)
    yield runner
    runner.ledger.close()


def test_history_diff_and_rollback(run: Cli) -> None:
    v1 = run.publish(V1)
    v2 = run.publish(V1 + V2_RULE)
    assert v1 != v2

    code, out, _ = run("rules", "history")
    assert code == 0
    lines = out.splitlines()
    assert lines[1].split()[:2] == ["version", "published"]
    assert lines[2].startswith(v2) and " active " in lines[2] and "2 rules in 1 file" in lines[2]
    assert lines[3].startswith(v1) and " active " not in lines[3] and "1 rule in 1 file" in lines[3]

    # The default diff: the version before the active one, against the active one.
    code, out, _ = run("rules", "diff")
    assert code == 0
    assert f"--- {v1}/policy.arb" in out and f"+++ {v2}/policy.arb" in out
    assert "+rule LaterIsDenied priority 12 {" in out.splitlines()
    assert not any(line.startswith("-rule") for line in out.splitlines())

    code, out, err = run("rules", "rollback")
    assert code == 0, err
    assert f"policy {v1} is active again (was {v2})" in out
    assert out.splitlines()[1] == (
        f"note: the files under {run.rules} still hold policy {v2}, which `sovereign up` "
        f"publishes when it starts; put them back as well (`sovereign rules diff {v2} {v1}` "
        "shows how)"
    )
    assert run.active() == v1

    code, out, _ = run("rules", "history", "--json")
    history = json.loads(out)
    assert [(h["version"], h["active"]) for h in history] == [(v1, True), (v2, False), (v1, False)]
    assert history[0]["published_by"] == getpass.getuser(), "a rollback records who did it"
    assert (
        history[0]["republished"] and history[0]["first_published_at"] == history[2]["published_at"]
    )
    assert not history[1]["republished"]
    assert history[0]["rules"] == 1 and history[1]["rules"] == 2
    assert history[0]["files"] == ["policy.arb"]

    # After the rollback, the default diff shows the rule going away.
    code, out, _ = run("rules", "diff")
    assert code == 0 and f"--- {v2}/policy.arb" in out and f"+++ {v1}/policy.arb" in out
    assert "-rule LaterIsDenied priority 12 {" in out.splitlines()

    # Versions by unique prefix; A alone is compared with the active one.
    code, out, _ = run("rules", "diff", v1[:6], v2[:7])
    assert code == 0 and "+rule LaterIsDenied priority 12 {" in out.splitlines()
    code, out, _ = run("rules", "diff", v1)
    assert code == 0 and out.strip() == f"policies {v1} and {v1} have the same sources"

    # Rolling forward again by prefix: the files hold that version, so no note.
    code, out, _ = run("rules", "rollback", v2[:5])
    assert code == 0 and run.active() == v2 and "note:" not in out


def test_unknown_ambiguous_and_missing_versions_are_one_sentence(run: Cli) -> None:
    code, out, err = run("rules", "rollback")
    assert (code, out) == (1, "")
    assert err.strip() == (
        "error: no policy has been published yet, so there is nothing to roll back; "
        "publish one with `sovereign rules publish`"
    )
    code, _, err = run("rules", "diff")
    assert code == 1 and "no policy has been published yet" in err

    v1 = run.publish(V1)
    code, _, err = run("rules", "rollback")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert f"policy {v1} is the only version published" in err
    code, _, err = run("rules", "diff")
    assert code == 1 and "nothing to compare it with" in err
    code, _, err = run("rules", "rollback", v1[:4])
    assert code == 1 and f"policy {v1} is already the active one" in err

    code, out, err = run("rules", "diff", "nope")
    assert (code, out) == (1, "")
    assert err.strip() == (
        "error: no published policy version starts with 'nope'; "
        "`sovereign rules history` lists them"
    )
    run.ledger.publish_policy("abc111", {"a.arb": V1}, "ann")
    run.ledger.publish_policy("abc222", {"a.arb": V1}, "ann")
    code, _, err = run("rules", "rollback", "abc")
    assert code == 1 and "'abc' could be any of 2 policy versions (abc111, abc222)" in err
    assert run.active() == "abc222"


def test_rollback_rechecks_against_todays_vocabulary_and_prices(run: Cli) -> None:
    # Versions published when the vocabulary and the price table were different.
    stale_fact = {"old.arb": V1.replace("budget.daily_spend_usd", "budget.weekly_spend_usd")}
    unpriced = {"old.arb": V1.replace("gpt-5.4-nano", "gpt-2-turbo")}
    for sources in (stale_fact, unpriced):
        run.ledger.publish_policy(policy_version(sources), sources, "ann")
    current = run.publish(V1)

    code, out, err = run("rules", "rollback", policy_version(stale_fact))
    assert (code, out) == (1, "")
    assert "Traceback" not in err
    problems = err.strip().splitlines()
    assert problems[0].startswith("old.arb:8:") and "weekly_spend_usd" in problems[0]
    assert problems[-1] == (
        f"error: policy {policy_version(stale_fact)} no longer checks against today's "
        f"vocabulary (1 problem above); policy {current} stays active"
    )
    assert run.active() == current

    code, out, err = run("rules", "rollback", policy_version(unpriced))
    assert (code, out) == (1, "")
    assert len(err.strip().splitlines()) == 1
    assert "openai/gpt-2-turbo with no price" in err
    assert err.strip().endswith(f"policy {current} stays active")
    assert run.active() == current
    assert len(run.ledger.policy_history(10)) == 3, "a refused rollback writes nothing"


def test_a_policy_that_does_not_check_is_not_published(run: Cli) -> None:
    current = run.publish(V1)
    run.file.write_text(V1.replace("budget.daily_spend_usd", "budget.daly_spend_usd"))
    code, out, err = run("rules", "publish")
    assert (code, out) == (1, "")
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in err
    assert lines[0].startswith(f"{run.file}:8:") and "did you mean `daily_spend_usd`" in lines[0]
    assert lines[1] == (
        f"error: the policy at {run.rules} does not check (1 problem above); "
        f"nothing was published and policy {current} stays active"
    )
    assert run.active() == current and len(run.ledger.policy_history(10)) == 1

    run.file.write_text(V1)
    code, out, _ = run("rules", "publish")
    assert code == 0 and out.strip() == f"policy {current} is already active; nothing changed"
