"""Settings: typed, frozen, unknown variables reported, README's table kept true."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from arbiter.errors import ConfigError
from arbiter.settings import PREFIX, Settings, load_settings, read_secrets_file
from tests.conftest import ROOT


def test_defaults_are_the_embedded_single_machine_setup() -> None:
    settings = load_settings({})
    assert settings.broker_url is None
    assert settings.database_url == "sqlite:///var/sovereign.db"
    assert (settings.queue_local, settings.queue_cloud) == ("local", "cloud")
    assert settings.beat_interval_s == 120
    with pytest.raises(Exception, match="frozen"):
        settings.timezone = "Europe/Paris"  # type: ignore[misc]


def test_unknown_variable_is_reported_with_a_suggestion() -> None:
    with pytest.raises(
        ConfigError, match=r"SOVEREIGN_DATABSE_URL; did you mean SOVEREIGN_DATABASE_URL\?"
    ):
        load_settings({"SOVEREIGN_DATABSE_URL": "sqlite:///x.db"})


def test_invalid_values_are_one_sentence() -> None:
    with pytest.raises(ConfigError, match="SOVEREIGN_TIMEZONE: unknown time zone 'Mars/Olympus'"):
        load_settings({"SOVEREIGN_TIMEZONE": "Mars/Olympus"})
    with pytest.raises(ConfigError, match="SOVEREIGN_LOCAL_CONCURRENCY"):
        load_settings({"SOVEREIGN_LOCAL_CONCURRENCY": "zero"})


def test_keys_come_from_the_environment_or_a_secrets_file(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.write_text("# keys\nOPENAI_API_KEY=sk-from-file\n")
    settings = load_settings({"SOVEREIGN_SECRETS_FILE": str(secrets)})
    assert settings.secret("openai_api_key") == "sk-from-file"
    assert settings.secret("anthropic_api_key") is None
    assert "sk-from-file" not in repr(settings)
    env = load_settings({"OPENAI_API_KEY": "sk-env", "SOVEREIGN_SECRETS_FILE": str(secrets)})
    assert env.secret("openai_api_key") == "sk-env"
    assert "sk-env" not in repr(env)


def test_a_malformed_secrets_file_names_file_and_line(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.write_text("OPENAI_API_KEY=x\nnot a pair\n")
    with pytest.raises(ConfigError, match=re.escape(f"{secrets}:2: expected KEY=value")):
        read_secrets_file(secrets)


def test_readme_configuration_table_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `(SOVEREIGN_[A-Z_]+)`", readme, flags=re.M))
    fields = {PREFIX + name.upper() for name in Settings.model_fields}
    assert documented == fields


def test_cli_spend_groups_match_the_ledger() -> None:
    from arbiter.ledger.report import GROUPS
    from sovereign.commands import ledger

    assert tuple(ledger.GROUPS) == tuple(GROUPS)
