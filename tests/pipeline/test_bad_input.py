"""Bad input gets one sentence naming the fix, and loses nothing already queued or recorded."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest
import redis

from tests.pipeline.conftest import Stack

pytestmark = pytest.mark.e2e


def one_sentence(result: object) -> str:
    """The error output: exactly one line, no traceback."""
    out = (result.stdout + result.stderr).strip()  # type: ignore[attr-defined]
    assert "Traceback" not in out, out
    assert len(out.splitlines()) == 1, out
    return out


def queued(url: str) -> dict[str, int]:
    client = redis.Redis.from_url(url)
    return {q: int(client.llen(q)) for q in ("local", "cloud", "control")}


@pytest.fixture
def stack(redis_url: str, make_stack: Callable[..., Stack]) -> Stack:
    """A stack with one task already queued (no worker runs, so it stays queued)."""
    stack = make_stack(redis_url)
    first = stack.sovereign("enqueue", "classify", "already queued work", "--json")
    assert first.returncode == 0, first.stderr
    assert queued(redis_url)["local"] == 1
    return stack


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (("enqueue", "translate", "hola"), "unknown task kind 'translate'; use one of:"),
        (("enqueue", "classify", "   "), "the prompt is empty"),
        (("enqueue", "classify", "x" * 50), "over the limit of 20"),
    ],
)
def test_refused_before_anything_is_queued(
    stack: Stack, redis_url: str, args: tuple[str, ...], expect: str
) -> None:
    stack.configure(max_prompt_chars="20")
    before = len(stack.ledger.decisions())
    result = stack.sovereign(*args)
    assert result.returncode == 1
    assert expect in one_sentence(result)
    assert queued(redis_url)["local"] == 1, "what was queued is still queued"
    assert len(stack.ledger.decisions()) == before, "nothing new was decided"


def test_broker_that_does_not_answer(stack: Stack, redis_url: str) -> None:
    held_before = stack.ledger.budget_facts()["daily_tokens"]
    recorded = len(stack.ledger.decisions())
    stack.configure(broker_url="redis://127.0.0.1:1/0")
    result = stack.sovereign("enqueue", "classify", "hello", timeout=120)
    assert result.returncode == 1
    assert "broker" in one_sentence(result)
    stack.configure(broker_url=redis_url)
    assert queued(redis_url)["local"] == 1, "what was queued is still queued"
    assert len(stack.ledger.decisions()) == recorded, "nothing was decided for it"
    # A publish that failed released its own reservation: the budget holds what it held.
    assert stack.ledger.budget_facts()["daily_tokens"] == held_before


def test_policy_that_does_not_check_stops_start_up(stack: Stack) -> None:
    policy = stack.home / "rules" / "policy.arb"
    policy.write_text(
        policy.read_text() + "\nrule Broken { when { budget.daly_spend_usd > 1 } then Deny {} }\n"
    )
    for command in (("up", "--no-flower"), ("worker", "local")):
        result = stack.sovereign(*command, timeout=60)
        assert result.returncode == 1, result.stdout
        out = result.stdout + result.stderr
        assert "Traceback" not in out
        assert f"{policy}:" in out or "policy.arb:" in out
        assert "daly_spend_usd" in out


def test_wait_that_times_out_is_one_sentence(stack: Stack, redis_url: str) -> None:
    # No worker runs: the task is queued and the wait gives up.
    result = stack.sovereign("enqueue", "classify", "nobody takes this", "--wait", "--timeout", "1")
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert len(result.stdout.strip().splitlines()) == 1, result.stdout  # the decision
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "did not finish within 1" in result.stderr
    assert queued(redis_url)["local"] == 2, "the task stays queued, as the sentence says"


def test_prompt_argument_that_is_not_utf8(stack: Stack, redis_url: str) -> None:
    before = len(stack.ledger.decisions())
    # Bytes that are not UTF-8 reach Python as surrogate escapes; subprocess sends the bytes.
    result = stack.sovereign("enqueue", "classify", os.fsdecode(b"caf\xe9 au lait"))
    assert result.returncode == 1
    out = one_sentence(result)
    assert "argument 3 of the command line is not UTF-8 text (byte 0xe9 at character 4)" in out
    assert queued(redis_url)["local"] == 1
    assert len(stack.ledger.decisions()) == before


def test_prompt_on_standard_input_that_is_not_utf8(stack: Stack, redis_url: str) -> None:
    before = len(stack.ledger.decisions())
    result = subprocess.run(
        [sys.executable, "-m", "sovereign", "enqueue", "classify", "-"],
        env=stack.env,
        cwd=stack.home,
        input=b"caf\xe9 au lait",
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 1
    out = (result.stdout + result.stderr).decode().strip()
    assert "Traceback" not in out
    assert out.splitlines() == [
        "error: standard input is not UTF-8 text (byte 0xe9 at offset 3); convert the prompt "
        "to UTF-8, e.g. with iconv, and try again"
    ]
    assert queued(redis_url)["local"] == 1
    assert len(stack.ledger.decisions()) == before


@pytest.mark.parametrize(
    "command", [("enqueue", "classify", "hello"), ("spend",), ("status", "0" * 32), ("halt",)]
)
def test_database_url_that_is_not_a_url(
    stack: Stack, redis_url: str, command: tuple[str, ...]
) -> None:
    before = len(stack.ledger.decisions())
    stack.configure(database_url="not a url")
    result = stack.sovereign(*command)
    assert result.returncode == 1
    assert one_sentence(result) == (
        "error: invalid settings: SOVEREIGN_DATABASE_URL: 'not a url' is not a database URL; "
        "use sqlite:///PATH (relative to SOVEREIGN_HOME) or postgresql://USER@HOST/DB"
    )
    stack.configure(database_url=f"sqlite:///{stack.home / 'var' / 'sovereign.db'}")
    assert queued(redis_url)["local"] == 1
    assert len(stack.ledger.decisions()) == before
    assert not stack.ledger.is_halted()


@pytest.mark.parametrize("where", ["relative", "absolute"])
@pytest.mark.parametrize("command", [("enqueue", "classify", "hello"), ("spend",)])
def test_sqlite_ledger_in_a_folder_that_does_not_exist(
    stack: Stack, redis_url: str, where: str, command: tuple[str, ...]
) -> None:
    before = len(stack.ledger.decisions())
    missing = stack.home / "ledgers"
    url = "sqlite:///ledgers/sovereign.db" if where == "relative" else f"sqlite:///{missing}/x.db"
    stack.configure(database_url=url)
    result = stack.sovereign(*command)
    assert result.returncode == 1
    assert one_sentence(result) == (
        f"error: the folder {missing} of the SQLite ledger does not exist; create it, or fix "
        "SOVEREIGN_DATABASE_URL (a relative path is taken from SOVEREIGN_HOME)"
    )
    assert not missing.exists(), "no folder, and no empty ledger, was created"
    stack.configure(database_url=f"sqlite:///{stack.home / 'var' / 'sovereign.db'}")
    assert queued(redis_url)["local"] == 1
    assert len(stack.ledger.decisions()) == before
