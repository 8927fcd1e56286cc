"""`sovereign db upgrade` and `sovereign spend` through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from arbiter.ledger import Ledger
from arbiter.usage import Usage
from sovereign.cli import cli


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    prices = Path(__file__).resolve().parents[2] / "rules" / "prices.toml"
    return {"SOVEREIGN_DATABASE_URL": database_url, "SOVEREIGN_PRICES_PATH": str(prices)}


def invoke(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_db_upgrade_then_up_to_date(env: dict[str, str]) -> None:
    code, out, _ = invoke(env, "db", "upgrade")
    assert code == 0 and "from empty to revision" in out
    code, out, _ = invoke(env, "db", "upgrade")
    assert code == 0 and "up to date" in out


def test_spend_table_and_json(env: dict[str, str], database_url: str) -> None:
    ledger = Ledger(database_url)
    ledger.upgrade()
    ledger.settle(
        "a",
        1,
        Usage(1000, 100, convention="separate"),
        "anthropic",
        "claude-sonnet-4-5",
        cost_usd=0.0045,
    )
    ledger.settle("b", 1, Usage(2000, 10), "openai", "gpt-5.4-nano", cost_usd=0.0004125)
    ledger.close()
    code, out, _ = invoke(env, "spend", "--by", "provider")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("spend today")
    assert any(line.split()[:2] == ["anthropic", "1"] for line in lines)
    total = next(line for line in lines if line.startswith("total"))
    assert total.split()[1:] == ["2", "3,000", "0", "110", "0.0049"]
    code, out, _ = invoke(env, "spend", "--days", "7", "--by", "model", "--json")
    data = json.loads(out)
    assert data["by"] == "model" and data["total"]["calls"] == 2
    assert {r["key"] for r in data["rows"]} == {
        "anthropic/claude-sonnet-4-5",
        "openai/gpt-5.4-nano",
    }


def test_spend_with_unreachable_database_is_one_sentence() -> None:
    env = {"SOVEREIGN_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x"}
    code, out, err = invoke(env, "spend")
    assert code == 1 and out == ""
    assert err.startswith("error: cannot reach the ledger database")
    assert "SOVEREIGN_DATABASE_URL" in err and len(err.strip().splitlines()) == 1


def test_spend_rejects_unknown_grouping(env: dict[str, str]) -> None:
    code, _, err = invoke(env, "spend", "--by", "colour")
    assert code == 2 and "colour" in err
