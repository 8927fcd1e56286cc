"""`sovereign halt` and `resume` on a ledger of their own, and what `up` says about them."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from arbiter.ledger import Ledger
from arbiter.settings import load_settings
from sovereign.cli import cli
from sovereign.commands.run import _halt_lines
from tests.alerts.webhook_server import SECRET, WebhookServer
from tests.conftest import ROOT


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "SOVEREIGN_HOME": str(tmp_path),
        "SOVEREIGN_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
        "SOVEREIGN_POLICY_PATH": str(ROOT / "rules"),
        "SOVEREIGN_PRICES_PATH": str(ROOT / "rules" / "prices.toml"),
    }


def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.output


def test_halt_and_resume_by_scope(env: dict[str, str]) -> None:
    code, out = run(env, "halt", "--scope", "cloud", "--reason", "provider incident")
    assert code == 0, out
    assert out.splitlines() == [
        "halted cloud work: provider incident",
        "  queued tasks it covers wait, and run after `sovereign resume --scope cloud`",
    ]
    assert run(env, "halt", "--scope", "local", "--reason", "GPU swap")[0] == 0
    ledger = Ledger(env["SOVEREIGN_DATABASE_URL"])
    try:
        state = ledger.halt_state()
        assert state.names == ["cloud", "local"] and state.halted
        lines = _halt_lines(load_settings(env))
        assert len(lines) == 2 and "cloud work is halted since" in lines[0]
        assert lines[0].endswith(": provider incident (`sovereign resume --scope cloud` clears it)")

        code, out = run(env, "resume", "--scope", "cloud")
        assert code == 0 and out.startswith("resumed cloud\n"), out
        assert "still: local work is halted since" in out
        assert ledger.halt_state().names == ["local"]
        code, out = run(env, "resume")
        assert (code, out) == (0, "resumed local\n")
        assert not ledger.halt_state().halted and _halt_lines(load_settings(env)) == []
        assert run(env, "resume")[1] == "nothing was halted\n"
        assert run(env, "resume", "--scope", "cloud") == (0, "cloud work was not halted\n")
    finally:
        ledger.close()


def test_an_unknown_scope_is_a_usage_error(env: dict[str, str]) -> None:
    code, out = run(env, "halt", "--scope", "gpu")
    assert code == 2 and "'gpu' is not one of 'all', 'cloud', 'local'" in out


def test_an_operators_halt_is_posted_to_the_webhook(env: dict[str, str]) -> None:
    hook = WebhookServer().start()
    try:
        env = {**env, "SOVEREIGN_ALERT_WEBHOOK": hook.url}
        code, out = run(env, "halt", "--scope", "cloud", "--reason", "provider incident")
        assert code == 0 and "not sent" not in out and SECRET not in out, out
        [text] = hook.texts()
        assert "halted cloud work: provider incident" in text
        assert "`sovereign resume --scope cloud`" in text
        # The same halt again the same day is the same news: not posted twice.
        assert run(env, "halt", "--scope", "cloud", "--reason", "provider incident")[0] == 0
        assert len(hook.texts()) == 1
    finally:
        hook.stop()


def test_a_halt_with_the_webhook_down_says_so_and_still_halts(env: dict[str, str]) -> None:
    hook = WebhookServer("fail").start()
    try:
        env = {**env, "SOVEREIGN_ALERT_WEBHOOK": hook.url}
        code, out = run(env, "halt", "--reason", "fire drill")
        assert code == 0 and out.startswith("halted all work: fire drill\n"), out
        assert "is not sent yet (the webhook is slow or down)" in out and SECRET not in out
        ledger = Ledger(env["SOVEREIGN_DATABASE_URL"])
        try:
            assert ledger.halt_state().names == ["all"]
        finally:
            ledger.close()
    finally:
        hook.stop()
