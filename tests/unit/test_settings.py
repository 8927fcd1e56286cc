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
    assert settings.database_url == f"sqlite:///{settings.home / 'var' / 'sovereign.db'}"
    assert (settings.queue_local, settings.queue_cloud) == ("local", "cloud")
    assert settings.research_interval_s == 120
    with pytest.raises(Exception, match="frozen"):
        settings.timezone = "Europe/Paris"  # type: ignore[misc]


def make_home(folder: Path) -> Path:
    (folder / "rules").mkdir(parents=True)
    (folder / "rules" / "default.arb").write_text("// a policy\n")
    return folder


def test_relative_paths_are_taken_from_the_home(tmp_path: Path) -> None:
    home = make_home(tmp_path / "studio")
    settings = load_settings({"SOVEREIGN_HOME": str(home)})
    assert settings.home == home.resolve()
    assert settings.var_dir == home.resolve() / "var"
    assert settings.policy_path == home.resolve() / "rules"
    assert settings.prices_path == home.resolve() / "rules" / "prices.toml"
    assert settings.database_url == f"sqlite:///{home.resolve() / 'var' / 'sovereign.db'}"
    moved = load_settings(
        {
            "SOVEREIGN_HOME": str(home),
            "SOVEREIGN_DATABASE_URL": "sqlite:///data/ledger.db?timeout=5",
            "SOVEREIGN_SECRETS_FILE": "keys",
            "SOVEREIGN_PRICES_PATH": "/etc/prices.toml",
        }
    )
    assert moved.database_url == f"sqlite:///{home.resolve() / 'data' / 'ledger.db'}?timeout=5"
    assert moved.secrets_file == home.resolve() / "keys"
    assert moved.prices_path == Path("/etc/prices.toml")


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:////srv/ledger.db",
        "sqlite:///file:ledger?mode=memory&uri=true",
        "postgresql://studio@db.internal/sovereign",
    ],
)
def test_urls_that_name_no_relative_file_are_kept(tmp_path: Path, url: str) -> None:
    home = make_home(tmp_path)
    assert (
        load_settings({"SOVEREIGN_HOME": str(home), "SOVEREIGN_DATABASE_URL": url}).database_url
        == url
    )


def test_the_home_is_found_from_any_folder_inside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = make_home(tmp_path / "studio")
    (home / "scripts" / "nightly").mkdir(parents=True)
    monkeypatch.chdir(home / "scripts" / "nightly")
    assert load_settings({}).home == home.resolve()


def test_outside_any_deployment_the_home_is_the_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings({})
    assert settings.home == ROOT
    assert settings.policy_path == ROOT / "rules"


def test_env_file_is_read_from_the_home_not_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = make_home(tmp_path / "studio")
    (home / ".env").write_text("SOVEREIGN_QUEUE_LOCAL=studio-local\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ".env").write_text("SOVEREIGN_QUEUE_LOCAL=wrong\n")
    monkeypatch.chdir(elsewhere)
    assert load_settings({"SOVEREIGN_HOME": str(home)}).queue_local == "studio-local"


def test_a_home_that_is_not_a_folder_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"SOVEREIGN_HOME: .*missing is not a folder; point it"):
        load_settings({"SOVEREIGN_HOME": str(tmp_path / "missing")})


def test_a_database_url_that_is_not_a_url_is_one_sentence() -> None:
    with pytest.raises(
        ConfigError, match="SOVEREIGN_DATABASE_URL: 'not a url' is not a database URL; use sqlite"
    ):
        load_settings({"SOVEREIGN_DATABASE_URL": "not a url"})


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
