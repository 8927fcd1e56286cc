"""One typed, frozen settings object, read from ``SOVEREIGN_*`` variables and ``.env``.

Every process of a deployment finds the same ledger, broker, policy and prices from any
current folder: relative paths (and a relative ``sqlite:///`` path) are taken from the
deployment's folder, ``SOVEREIGN_HOME`` (see ``find_home``), whose ``.env`` is the one read.

Its fields and defaults are the configuration reference (the README's table is made from
them). Unknown ``SOVEREIGN_*`` variables are an error, so a misspelt setting is caught at
start-up rather than silently ignored.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from arbiter.errors import ConfigError

PREFIX = "SOVEREIGN_"

LocalBackendName = Literal["auto", "ollama", "openai_compat", "embedded", "fake"]


class Settings(BaseSettings):
    """Everything a sovereign process can be configured with."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
        # Defaults go through the validators too: relative default paths join the home.
        validate_default=True,
    )

    # Where things live.
    home: Path = Field(
        default_factory=lambda: find_home(os.environ),
        description=(
            "The deployment's folder (rules/, var/, .env); relative paths are taken from it. "
            "Unset: the nearest folder at or above the current one holding rules/*.arb, else "
            "the checkout sovereign is installed from."
        ),
    )
    broker_url: str | None = Field(
        default=None,
        description="Redis URL of the broker; unset starts an embedded Valkey under var/.",
    )
    database_url: str = Field(
        default="sqlite:///var/sovereign.db",
        description="SQLAlchemy URL of the ledger; PostgreSQL for several machines.",
    )
    var_dir: Path = Field(default=Path("var"), description="Data folder for the embedded parts.")
    policy_path: Path = Field(default=Path("rules"), description="Policy file or folder (*.arb).")
    prices_path: Path = Field(default=Path("rules/prices.toml"), description="Price table.")
    timezone: str = Field(default="UTC", description="Time zone of the day and month budgets.")
    private_networks: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description=(
            "Networks (CIDR, comma-separated) besides loopback whose local model servers may "
            "see confidential work."
        ),
    )

    # Queues and processes.
    queue_local: str = Field(default="local", description="Queue of local-model work.")
    queue_cloud: str = Field(default="cloud", description="Queue of cloud-model work.")
    queue_control: str = Field(default="control", description="Queue of maintenance work.")
    local_concurrency: int = Field(default=1, ge=1, description="Local worker processes.")
    cloud_concurrency: int = Field(default=8, ge=1, description="Cloud worker concurrency.")
    research_interval_s: float = Field(
        default=120.0,
        gt=0,
        validation_alias=AliasChoices("SOVEREIGN_RESEARCH_INTERVAL_S", "SOVEREIGN_BEAT_INTERVAL_S"),
        description=(
            "Seconds between beat's research cycles (SOVEREIGN_BEAT_INTERVAL_S is an older "
            "name for it)."
        ),
    )
    research_batch: int = Field(
        default=3,
        ge=1,
        description="Queued research topics one beat cycle submits at most, highest priority first.",
    )
    # --- the studio's notes (issue 12; tasks/notes.py) ---
    notes_dir: Path | None = Field(
        default=None,
        description=(
            "Folder of the studio's own documents (Markdown, text) that research searches; "
            "unset: no notes."
        ),
    )
    notes_shareable: bool = Field(
        default=False,
        description=(
            "Whether excerpts of the notes may leave the studio; false makes every task "
            "that carries one confidential."
        ),
    )
    maintenance_interval_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds between maintenance sweeps (dead workers' tasks, expired holds).",
    )
    lease_s: float = Field(
        default=40.0,
        ge=5,
        description=(
            "A running task's lease, renewed by its worker; one that runs out means the "
            "worker died, and the task runs again."
        ),
    )
    poison_after: int = Field(
        default=3,
        ge=1,
        description="Deliveries that die mid-run before a task is failed as poisoned.",
    )
    reservation_ttl_s: float = Field(
        default=3600.0, gt=0, description="A held reservation older than this is expired."
    )
    task_time_limit_s: float = Field(
        default=900.0, gt=0, description="Hard limit of one task; the visibility timeout is longer."
    )

    # Tasks.
    max_prompt_chars: int = Field(default=200_000, ge=1, description="Largest accepted prompt.")
    default_max_tokens: int = Field(default=1024, ge=1, description="Output cap when none given.")
    max_output_tokens: int = Field(
        default=32_768, ge=1, description="Largest max_tokens a task may ask for, any model."
    )
    max_retries: int = Field(default=5, ge=0, description="Retries of a transient backend error.")
    retry_backoff_s: float = Field(default=2.0, gt=0, description="First retry delay (doubles).")
    retry_backoff_max_s: float = Field(default=300.0, gt=0, description="Longest retry delay.")

    # Flower.
    flower_address: str = Field(default="127.0.0.1", description="Flower's listening address.")
    flower_port: int = Field(default=5555, description="Flower's port.")
    flower_user: str | None = Field(default=None, description="Flower basic-auth user.")
    flower_password: SecretStr | None = Field(
        default=None, description="Flower basic-auth password."
    )

    # Model backends.
    local_backend: LocalBackendName = Field(
        default="auto",
        description="auto: Ollama when it answers, else embedded llama.cpp.",
    )
    local_models: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description=(
            "Local model names of the policy mapped to models of the local server, "
            "NAME=MODEL comma-separated (qwen2.5:14b=qwen2.5:7b); a name Ollama lacks runs "
            "on the embedded model."
        ),
    )
    ollama_host: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SOVEREIGN_OLLAMA_HOST", "OLLAMA_HOST"),
        description="Ollama server (falls back to OLLAMA_HOST, then http://127.0.0.1:11434).",
    )
    ollama_keep_alive: str = Field(default="10m", description="How long Ollama keeps a model.")
    openai_compat_base_url: str | None = Field(
        default=None, description="Base URL of a local OpenAI-compatible server (llama.cpp, vLLM)."
    )
    embedded_model_path: Path | None = Field(
        default=None, description="GGUF file for embedded llama.cpp (default: SmolLM2-135M)."
    )
    embedded_n_ctx: int = Field(default=2048, ge=256, description="Embedded context window.")
    openai_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SOVEREIGN_OPENAI_API_KEY", "OPENAI_API_KEY"),
        description="OpenAI key (or OPENAI_API_KEY, or the secrets file).",
    )
    openai_base_url: str | None = Field(default=None, description="Override of the OpenAI URL.")
    anthropic_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SOVEREIGN_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY"),
        description="Anthropic key (or ANTHROPIC_API_KEY, or the secrets file).",
    )
    anthropic_base_url: str | None = Field(
        default=None, description="Override of the Anthropic URL."
    )
    secrets_file: Path | None = Field(
        default=None, description="File of KEY=value lines holding API keys."
    )
    request_timeout_s: float = Field(default=120.0, gt=0, description="Timeout of one model call.")

    # Alerts (issue 13).
    alert_webhook: SecretStr | None = Field(
        default=None,
        description=(
            "Discord or Slack webhook URL for halts, Alert actions, poisoned tasks, reached "
            "caps and the daily summary; a secret, never logged."
        ),
    )
    summary_hour: int = Field(
        default=18,
        ge=0,
        le=23,
        description="Local hour (SOVEREIGN_TIMEZONE) of the daily cost summary to the webhook.",
    )

    @field_validator("private_networks", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else list(value or ())
        networks = []
        for item in (str(i).strip() for i in items):
            if not item:
                continue
            try:
                networks.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError:
                raise ValueError(
                    f"{item!r} is not a network; write CIDRs such as 192.168.1.0/24, "
                    "separated by commas"
                ) from None
        return tuple(networks)

    @field_validator("local_models", mode="before")
    @classmethod
    def _model_map(cls, value: Any) -> dict[str, str]:
        if isinstance(value, Mapping):
            pairs = [(str(k), str(v)) for k, v in value.items()]
        else:
            pairs = []
            for item in str(value or "").split(","):
                if not item.strip():
                    continue
                name, sep, model = item.partition("=")
                pairs.append((name, model) if sep else (item, ""))
        mapping = {name.strip(): model.strip() for name, model in pairs}
        for name, model in mapping.items():
            if not name or not model:
                raise ValueError(
                    "write the local model map as NAME=MODEL pairs separated by commas, "
                    "such as qwen2.5:14b=qwen2.5:7b,deepseek-coder=deepseek-coder:6.7b"
                )
        return mapping

    @field_validator("alert_webhook")
    @classmethod
    def _webhook_url(cls, value: SecretStr | None) -> SecretStr | None:
        # The value is a secret: the message must not quote it.
        if value is None or not value.get_secret_value().strip():
            return None
        if not value.get_secret_value().strip().lower().startswith(("http://", "https://")):
            raise ValueError(
                "is not an http(s) URL; paste the webhook URL that Discord or Slack gave you"
            )
        return SecretStr(value.get_secret_value().strip())

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as Europe/Paris"
            ) from None
        return value

    @field_validator("home")
    @classmethod
    def _home_is_a_folder(cls, value: Path) -> Path:
        home = value.expanduser().resolve()
        if not home.is_dir():
            raise ValueError(
                f"{home} is not a folder; point it at the deployment's folder, the one "
                "holding rules/ and var/"
            )
        return home

    @field_validator(
        "var_dir", "policy_path", "prices_path", "secrets_file", "embedded_model_path", "notes_dir"
    )
    @classmethod
    def _path_in_home(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else in_home(info.data.get("home"), value)

    @field_validator("database_url")
    @classmethod
    def _database_url_in_home(cls, value: str, info: ValidationInfo) -> str:
        return database_url_in_home(info.data.get("home"), value)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def secret(self, name: Literal["openai_api_key", "anthropic_api_key"]) -> str | None:
        """An API key from the environment, else from the secrets file; never logged."""
        value: SecretStr | None = getattr(self, name)
        if value is not None and value.get_secret_value():
            return value.get_secret_value()
        if self.secrets_file is None:
            return None
        return read_secrets_file(self.secrets_file).get(name.upper())


def read_secrets_file(path: Path) -> dict[str, str]:
    """Read ``KEY=value`` lines; blank lines and ``#`` comments are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read the secrets file {path} ({exc.strerror}); "
            "fix SOVEREIGN_SECRETS_FILE or create the file"
        ) from None
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ConfigError(f"{path}:{number}: expected KEY=value in the secrets file")
        values[key.strip().upper()] = value.strip().strip('"').strip("'")
    return values


HOME_MARKER = "rules"
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def find_home(environ: Mapping[str, str]) -> Path:
    """The deployment's folder, the same from any current folder.

    ``SOVEREIGN_HOME`` when set; else the nearest folder at or above the current one that
    holds a policy (``rules/*.arb``); else the checkout sovereign is installed from (an
    editable install, as ``make install`` makes); else the current folder.
    """
    named = environ.get(PREFIX + "HOME", "").strip()
    if named:
        return Path(named).expanduser().absolute()
    checkout = Path(__file__).resolve().parent.parent
    try:
        here = Path.cwd()
    except OSError:  # the current folder was deleted
        return checkout
    for folder in (here, *here.parents):
        if is_home(folder):
            return folder
    return checkout if is_home(checkout) else here


def is_home(folder: Path) -> bool:
    """True for a deployment's folder: one holding a policy, ``rules/*.arb``."""
    rules = folder / HOME_MARKER
    try:
        return rules.is_dir() and any(rules.glob("*.arb"))
    except OSError:
        return False


def in_home(home: Path | None, path: Path) -> Path:
    """``path`` taken from the home when it is relative (``~`` is the user's folder)."""
    path = path.expanduser()
    return path if path.is_absolute() or home is None else home / path


def database_url_in_home(home: Path | None, url: str) -> str:
    """The URL with a relative SQLite path taken from the home; anything not a URL refused."""
    text = url.strip()
    if not _URL_SCHEME.match(text):
        raise ValueError(
            f"{url!r} is not a database URL; use sqlite:///PATH (relative to SOVEREIGN_HOME) "
            "or postgresql://USER@HOST/DB"
        )
    scheme, rest = text.split("://", 1)
    if not scheme.lower().startswith("sqlite") or not rest.startswith("/"):
        return text
    database, sep, query = rest[1:].partition("?")
    if not database or database == ":memory:" or database.startswith("file:"):
        return text
    return f"{scheme}:///{in_home(home, Path(database))}{sep}{query}"


def _known_env_names() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(PREFIX + name.upper())
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice).upper() for choice in alias.choices)
    return names


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """Sentences naming every ``SOVEREIGN_*`` variable that is not a setting."""
    known = _known_env_names()
    problems = []
    for key in sorted(environ):
        if key.upper().startswith(PREFIX) and key.upper() not in known:
            close = difflib.get_close_matches(key.upper(), sorted(known), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            problems.append(f"unknown setting {key}{hint}")
    return problems


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read settings, reporting unknown variables and invalid values as one ConfigError."""
    env = os.environ if environ is None else environ
    problems = unknown_variables(env)
    if problems:
        raise ConfigError("; ".join(problems) + " (see the configuration table in README.md)")
    # The home is found first: its .env is the one read, wherever the process runs.
    home = Path(overrides.pop("home", None) or find_home(env))
    fields: dict[str, Any] = {"home": home, "_env_file": home.expanduser() / ".env", **overrides}
    try:
        if environ is None:
            return Settings(**fields)
        # An explicit mapping stands in for the environment (tests, subprocess set-up).
        saved = dict(os.environ)
        try:
            os.environ.clear()
            os.environ.update(env)
            return Settings(**fields)
        finally:
            os.environ.clear()
            os.environ.update(saved)
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            message = str(err["msg"]).removeprefix("Value error, ")
            parts.append(f"{PREFIX}{field.upper()}: {message}")
        raise ConfigError("invalid settings: " + "; ".join(parts)) from None
