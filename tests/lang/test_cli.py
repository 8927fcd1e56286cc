"""``sovereign rules check`` and ``sovereign rules eval``.

A few tests run the installed ``sovereign`` console script in a subprocess; the rest
drive the same click group in-process (the command's start-up imports every command
module, which takes seconds).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
SOVEREIGN = Path(sys.executable).with_name("sovereign")

GOOD = """
strategy Routing returns Route {
    when { task.kind == "strategy" } then Cloud { provider: "anthropic", model: "claude-sonnet-4-5" }
    else Local { model: "smollm2-135m" }
}
rule Busy { when { budget.hourly_tokens > 100 } then Throttle { retry_after: 5m, reason: "busy" } }
"""

BAD = """rule A { when { budget.daly_spend_usd > 1 } then Deni { } }
rule B { when { task.n > } then Deny { } }
"""


def run_real(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed console script."""
    return subprocess.run(
        [str(SOVEREIGN), "rules", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the same command group in-process, with the same exit statuses."""
    from sovereign.cli import cli

    result = CliRunner().invoke(cli, ["rules", *args], input=stdin, prog_name="sovereign")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.arb"
    path.write_text(GOOD)
    return path


@pytest.fixture
def bad(tmp_path: Path) -> Path:
    path = tmp_path / "bad.arb"
    path.write_text(BAD)
    return path


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout + result.stderr


def test_check_valid(good: Path) -> None:
    result = run_real("check", str(good))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 1 file, 1 rule, a routing strategy")


def test_check_default_policy() -> None:
    result = run("check", "rules/")
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_reports_every_problem(bad: Path) -> None:
    result = run_real("check", str(bad))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{bad}:1:24: error: unknown field `daly_spend_usd` of `budget` (it has daily_cloud_calls, "
        "daily_spend_usd, daily_tokens, hourly_tokens, monthly_spend_usd); did you mean `daily_spend_usd`?",
        f"{bad}:1:50: error: unknown action `Deni` (actions: Halt, HaltExecution, Deny, RequireApproval, "
        "Throttle, Reroute, Allow, Alert); did you mean `Deny`?",
        f"{bad}:2:26: error: unexpected `}}`, expected an expression",
    ]
    assert_no_traceback(result)


def test_check_missing_file(tmp_path: Path) -> None:
    result = run("check", str(tmp_path / "nope.arb"))
    assert result.returncode == 1
    assert (
        result.stdout.strip()
        == f"{tmp_path / 'nope.arb'}:1:1: error: cannot read this file: no such file"
    )
    assert_no_traceback(result)


def test_check_usage_mistake() -> None:
    result = run("check")
    assert result.returncode == 2
    assert_no_traceback(result)


def test_eval_json(good: Path, tmp_path: Path) -> None:
    facts = tmp_path / "facts.json"
    facts.write_text(json.dumps({"task": {"kind": "code"}, "budget": {"hourly_tokens": 500}}))
    result = run("eval", str(good), "--facts", str(facts), "--json")
    assert result.returncode == 0, result.stderr
    decision = json.loads(result.stdout)
    assert decision == {
        "verdict": "throttle",
        "route": {"tier": "local", "provider": "ollama", "model": "smollm2-135m"},
        "candidate": "Local",
        "decided_by": "Busy",
        "reason": "busy",
        "retry_after_s": 300,
        "fired": [
            {"rule": "Busy", "action": "Throttle", "params": {"retry_after": 300, "reason": "busy"}}
        ],
        "trace": [
            {
                "check": "strategy Routing: when #1 -> Cloud",
                "result": False,
                "detail": 'task.kind == "strategy"',
            },
            {
                "check": "strategy Routing: else -> Local",
                "result": True,
                "detail": "no candidate matched",
            },
            {"check": "rule Busy", "result": True, "detail": "budget.hourly_tokens > 100"},
        ],
    }


def test_eval_stdin_human(good: Path) -> None:
    result = run("eval", str(good), "--facts", "-", stdin='{"task": {"kind": "strategy"}}')
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "verdict:  proceed"
    assert (
        lines[1] == 'route:    Cloud: tier="cloud" provider="anthropic" model="claude-sonnet-4-5"'
    )
    assert "fired:    nothing" in lines
    assert any(line.startswith("  yes strategy Routing: when #1 -> Cloud") for line in lines)
    assert any(line.startswith("  no  rule Busy") for line in lines)


def test_eval_invalid_policy_shows_caret(bad: Path) -> None:
    result = run("eval", str(bad), "--facts", "-", stdin="{}")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{bad}:1:24: error: unknown field `daly_spend_usd`")
    assert lines[1] == "    rule A { when { budget.daly_spend_usd > 1 } then Deni { } }"
    assert lines[2] == "    " + " " * 23 + "^"
    assert_no_traceback(result)


def test_eval_invalid_policy_json_mode_prints_check_lines(bad: Path) -> None:
    checked = run("check", str(bad))
    result = run("eval", str(bad), "--facts", "-", "--json", stdin="{}")
    assert result.returncode == 1
    assert result.stdout == checked.stdout


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        ("[1, 2]", "error: standard input must hold a JSON object"),
        ('{"task": ', "error: standard input is not valid JSON (line 1, column 10"),
        ("null", "error: standard input must hold a JSON object"),
    ],
)
def test_eval_bad_facts(good: Path, stdin: str, message: str) -> None:
    result = run("eval", str(good), "--facts", "-", stdin=stdin)
    assert result.returncode == 1
    assert result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert_no_traceback(result)


def test_eval_missing_facts_file(good: Path, tmp_path: Path) -> None:
    result = run("eval", str(good), "--facts", str(tmp_path / "none.json"))
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"error: cannot read facts file {tmp_path / 'none.json'}: no such file."
    )


def test_eval_usage_mistake(good: Path) -> None:
    result = run("eval", str(good))
    assert result.returncode == 2
    assert "--facts" in result.stderr
    assert_no_traceback(result)


def test_eval_bad_facts_real_command(good: Path) -> None:
    result = run_real("eval", str(good), "--facts", "-", stdin="[]")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        'error: standard input must hold a JSON object such as {"task": {"kind": "code"}}, not list.'
    )
    assert_no_traceback(result)
