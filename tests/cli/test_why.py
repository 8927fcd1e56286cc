"""`sovereign why TASK_ID` and `sovereign status TASK_ID` on tasks the real gate decided.

The gate admits in this process against a real ledger (SQLite and PostgreSQL) and a
published policy; calls are settled as a worker settles them. What is asserted is the
content: the verdict, the rule that fired and its source line, the policy version, the
cost against the reservation, and the attempts and approvals.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from arbiter.gate import Gate, TaskRequest
from arbiter.ledger import Ledger, PriceTable
from arbiter.policy_store import PolicyStore
from arbiter.usage import Usage
from sovereign.cli import cli
from tests.conftest import ROOT

PRICES = ROOT / "rules" / "prices.toml"
POLICY = """\
strategy Routing returns Route {
    when { task.kind == "strategy" } then Cloud { provider: "openai", model: "gpt-5.4-nano" }
    else Local { model: "qwen2.5:14b" }
}

rule Forbidden priority 10 {
    when { "forbidden" in task.tags }
    then Deny { reason: "the forbidden tag is never run" }
}

rule CommitNeedsApproval priority 40 {
    when { "commit" in task.tags }
    then RequireApproval { reason: "commits need a person" }
}

rule NoteCloud priority 50 {
    when { route.tier == "cloud" }
    then Alert { reason: "a cloud call" }
    otherwise Allow {}
}
"""


def line_of(text: str) -> int:
    return POLICY.splitlines().index(text) + 1


class World:
    """A published policy, a gate over a real ledger, and the command line."""

    def __init__(self, database_url: str, home: Path, *, publish: bool = True) -> None:
        rules = home / "rules"
        rules.mkdir()
        (rules / "policy.arb").write_text(POLICY, encoding="utf-8")
        self.prices = PriceTable.load(PRICES)
        self.ledger = Ledger(database_url, prices=self.prices)
        self.ledger.upgrade()
        self.store = PolicyStore(rules, self.ledger, prices=self.prices)
        self.version = self.store.publish_files("ann") if publish else None
        self.gate = Gate(self.ledger, self.store.current, self.prices)
        self.env = {
            "SOVEREIGN_DATABASE_URL": database_url,
            "SOVEREIGN_PRICES_PATH": str(PRICES),
            "SOVEREIGN_POLICY_PATH": str(rules),
            "SOVEREIGN_VAR_DIR": str(home / "var"),
        }

    def admit(self, task_id: str, kind: str = "classify", **changes: Any) -> Any:
        fields: dict[str, Any] = {
            "task_id": task_id,
            "kind": kind,
            "estimated_tokens": 2000,
            "max_tokens": 1000,
            "payload": {"task": "sovereign.complete", "kwargs": {}},
        }
        fields.update(changes)
        return self.gate.admit(TaskRequest(**fields))

    def why(self, task_id: str) -> tuple[str, dict[str, Any]]:
        code, out, err = self.cli("why", task_id)
        assert code == 0, err
        code, raw, err = self.cli("why", task_id, "--json")
        assert code == 0, err
        return out, json.loads(raw)

    def cli(self, *args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(cli, list(args), env=self.env)
        return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[World]:
    found = World(database_url, tmp_path)
    yield found
    found.ledger.close()


def test_why_a_task_that_proceeded_after_a_retry(world: World) -> None:
    first = world.admit("t-cloud", "strategy")
    assert first.verdict == "proceed"
    world.ledger.release("t-cloud", 1, "the model call failed")
    second = world.admit("t-cloud", "strategy", attempt=2)
    answer = {"text": "Plan: three steps.\nOne.\nTwo.\nThree.\nFour.\nFive.\nSix."}
    began = datetime.now(UTC)
    call = world.ledger.settle(
        "t-cloud",
        2,
        Usage(1200, 300),
        "openai",
        "gpt-5.4-nano",
        result=answer,
        started_at=began,
        finished_at=began + timedelta(seconds=2),
    )
    assert 0 < call.cost_usd < second.reserved_usd

    out, found = world.why("t-cloud")
    assert found["verdict"] == "proceed" and found["policy_version"] == world.version
    assert found["route"] == {"tier": "cloud", "provider": "openai", "model": "gpt-5.4-nano"}
    assert [d["attempt"] for d in found["decisions"]] == [1, 2]
    fired = found["decisions"][1]["fired"]
    assert [(f["rule"], f["action"], f["via"]) for f in fired] == [("NoteCloud", "Alert", "then")]
    assert fired[0]["file"] == "policy.arb"
    assert fired[0]["line"] == line_of("rule NoteCloud priority 50 {")
    assert fired[0]["source"].splitlines()[0] == "rule NoteCloud priority 50 {"
    assert fired[0]["source"].splitlines()[-1] == "}" and "otherwise Allow {}" in fired[0]["source"]
    assert found["decisions"][1]["facts"]["task"]["kind"] == "strategy"
    assert found["cost"]["cost_usd"] == pytest.approx(call.cost_usd)
    assert found["cost"]["reserved_usd"] == pytest.approx(first.reserved_usd + second.reserved_usd)
    assert found["cost"]["held_usd"] == 0
    attempts = found["attempts"]
    assert [a["attempt"] for a in attempts] == [1, 2]
    assert attempts[0]["call"] is None
    assert attempts[0]["reservations"][-1]["status"] == "released"
    assert attempts[1]["call"]["cost_usd"] == pytest.approx(call.cost_usd)
    assert attempts[1]["call"]["reserved_usd"] == pytest.approx(second.reserved_usd)

    line = line_of("rule NoteCloud priority 50 {")
    assert f"fired: NoteCloud -> Alert (then), policy.arb:{line}" in out
    assert f"  {line:>4} | rule NoteCloud priority 50 {{" in out
    assert f"policy     {world.version}" in out and "by ann" in out
    assert f"${call.cost_usd:.6f} of ${found['cost']['reserved_usd']:.6f} reserved" in out
    assert "released: the model call failed" in out and "1,200 in, 300 out" in out

    code, out, err = world.cli("status", "t-cloud")
    assert code == 0, err
    assert "route      cloud openai/gpt-5.4-nano" in out
    assert f"${call.cost_usd:.6f} of ${found['cost']['reserved_usd']:.6f} reserved" in out
    for name in ("submitted", "started", "finished"):
        assert any(
            line.startswith(name) and line.split()[1][:2] == "20" for line in out.splitlines()
        )
    assert "  Plan: three steps." in out and "  Four." in out and "Five." not in out
    code, raw, _ = world.cli("status", "t-cloud", "--json")
    short = json.loads(raw)
    assert short["task"]["id"] == "t-cloud" and len(short["decisions"]) == 2
    assert short["decisions"][0]["policy_version"] == world.version
    assert (short["model"], short["cost_usd"]) == ("gpt-5.4-nano", pytest.approx(call.cost_usd))
    assert short["answer"].splitlines()[0] == "Plan: three steps."
    assert short["started_at"] and short["finished_at"] >= short["started_at"]


def test_why_a_denied_task(world: World) -> None:
    assert world.admit("t-no", tags=["forbidden"]).verdict == "deny"
    out, found = world.why("t-no")
    assert found["verdict"] == "deny" and found["task"]["status"] == "blocked"
    (decision,) = found["decisions"]
    assert decision["decided_by"] == "Forbidden"
    assert decision["reason"] == "the forbidden tag is never run"
    assert decision["policy_version"] == world.version
    # The local route: NoteCloud was evaluated, did not match, and fired its otherwise.
    assert [(f["rule"], f["action"], f["via"]) for f in decision["fired"]] == [
        ("Forbidden", "Deny", "then"),
        ("NoteCloud", "Allow", "otherwise"),
    ]
    assert decision["fired"][0]["line"] == line_of("rule Forbidden priority 10 {")
    assert found["cost"] == {"cost_usd": 0, "reserved_usd": 0, "held_usd": 0, "calls": 0}
    assert "deny by Forbidden: the forbidden tag is never run" in out
    line = line_of('    then Deny { reason: "the forbidden tag is never run" }')
    assert f'  {line:>4} |     then Deny {{ reason: "the forbidden tag is never run" }}' in out
    trace = [row for row in out.splitlines() if "rule Forbidden" in row and row.split()[0] == "yes"]
    assert trace, "the trace shows the rule that matched"


def test_why_a_task_parked_then_approved(world: World) -> None:
    assert world.admit("t-commit", tags=["commit"]).verdict == "approval"
    world.ledger.grant("t-commit", "bob", "patch reviewed")
    admitted = world.admit("t-commit", tags=["commit"], approved=True)
    assert admitted.verdict == "proceed"
    world.ledger.settle(
        "t-commit", 1, Usage(800, 100), "ollama", "qwen2.5:14b", result={"text": "ok"}
    )

    out, found = world.why("t-commit")
    assert [d["verdict"] for d in found["decisions"]] == ["approval", "proceed"]
    parked = found["decisions"][0]
    assert parked["fired"][0]["rule"] == "CommitNeedsApproval"
    assert parked["fired"][0]["line"] == line_of("rule CommitNeedsApproval priority 40 {")
    (approval,) = found["approvals"]
    assert (approval["status"], approval["decided_by"]) == ("granted", "bob")
    assert "patch reviewed" in (approval.get("note"), approval["reason"])
    assert approval["decided_at"] >= approval["requested_at"]
    assert found["task"]["status"] == "succeeded" and found["cost"]["cost_usd"] == 0
    assert "approval by CommitNeedsApproval: commits need a person" in out
    granted = [row for row in out.splitlines() if row.split()[2:4] == ["granted", "bob"]]
    assert granted and "patch reviewed" in granted[0]


def test_why_an_unknown_task_is_one_sentence(world: World) -> None:
    code, out, err = world.cli("why", "no-such-task")
    assert (code, out) == (1, "")
    assert err.strip() == (
        "error: no task no-such-task in the ledger; check the id `sovereign enqueue` printed"
    )


def test_why_under_policy_files_that_were_never_published(tmp_path: Path) -> None:
    world = World(f"sqlite:///{tmp_path / 'ledger.db'}", tmp_path, publish=False)
    try:
        assert world.ledger.active_policy() is None
        assert world.admit("t-files", tags=["forbidden"]).verdict == "deny"
        out, found = world.why("t-files")
        (decision,) = found["decisions"]
        version = decision["policy_version"]
        assert found["policies"][version]["published"] is False
        assert found["policies"][version]["sources"] == "files"
        assert decision["fired"][0]["line"] == line_of("rule Forbidden priority 10 {")
        assert f"{version} (never published; the policy files hold it)" in out
    finally:
        world.ledger.close()
