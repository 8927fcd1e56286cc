"""Building the backend a route names, from settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from arbiter.errors import ConfigError, PermanentBackendError
from arbiter.settings import Settings
from workers.anthropic_cloud import AnthropicBackend
from workers.embedded import EmbeddedBackend
from workers.fake import FakeBackend
from workers.local_models import LocalModels
from workers.ollama import OllamaBackend
from workers.openai_cloud import OpenAIBackend
from workers.openai_compat import OpenAICompatBackend
from workers.protocol import CompletionRequest
from workers.registry import Backends, Route, build_backend, resolve_local_provider

MakeSettings = Callable[..., Settings]


def test_each_local_provider(make_settings: MakeSettings) -> None:
    s = make_settings(
        ollama_host="http://gpu:11434", openai_compat_base_url="http://127.0.0.1:8080/v1"
    )
    ollama = build_backend({"tier": "local", "provider": "ollama"}, s)
    assert isinstance(ollama, OllamaBackend) and ollama.host == "http://gpu:11434"
    compat = build_backend({"tier": "local", "provider": "openai_compat"}, s)
    assert isinstance(compat, OpenAICompatBackend) and compat.base_url == "http://127.0.0.1:8080/v1"
    assert isinstance(build_backend({"tier": "local", "provider": "embedded"}, s), EmbeddedBackend)
    assert isinstance(build_backend({"tier": "local", "provider": "fake"}, s), FakeBackend)


def test_auto_prefers_ollama_when_it_answers(make_settings: MakeSettings) -> None:
    s = make_settings(local_backend="auto")
    assert resolve_local_provider(s, ollama_answers=lambda: True) == "ollama"


def test_auto_falls_back_to_embedded(make_settings: MakeSettings, tmp_path: Path) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    s = make_settings(local_backend="auto", embedded_model_path=gguf)
    assert resolve_local_provider(s, ollama_answers=lambda: False) == "embedded"


def test_the_local_aliases_map_model_names(make_settings: MakeSettings) -> None:
    s = make_settings(local_backend="fake")
    local = build_backend({"tier": "local", "provider": "local"}, s)
    auto = build_backend({"tier": "local", "provider": "auto"}, s)
    assert isinstance(local, LocalModels) and local.choice == "fake"
    assert isinstance(auto, LocalModels) and auto.choice == "auto"


def test_auto_with_nothing_installed_keeps_ollama_for_its_message(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    s = make_settings(local_backend="auto", embedded_model_path=tmp_path / "missing.gguf")
    assert resolve_local_provider(s, ollama_answers=lambda: False) == "ollama"


def test_setting_names_the_local_backend(make_settings: MakeSettings) -> None:
    s = make_settings(local_backend="fake")
    assert resolve_local_provider(s, "local") == "fake"
    backend = build_backend({"tier": "local"}, s)
    assert isinstance(backend, LocalModels)
    chosen, model = backend.choose("qwen2.5:14b")
    assert isinstance(chosen, FakeBackend) and model == "qwen2.5:14b"


def test_cloud_providers_take_keys_from_settings(make_settings: MakeSettings) -> None:
    s = make_settings(openai_api_key="sk-from-env-123456", anthropic_base_url="http://127.0.0.1:1")
    openai_backend = build_backend({"tier": "cloud", "provider": "openai", "model": "gpt"}, s)
    assert isinstance(openai_backend, OpenAIBackend)
    assert openai_backend.probe().available
    anthropic_backend = build_backend({"tier": "cloud", "provider": "anthropic"}, s)
    assert isinstance(anthropic_backend, AnthropicBackend)
    assert anthropic_backend.base_url == "http://127.0.0.1:1"
    assert anthropic_backend.probe().available is False
    with pytest.raises(PermanentBackendError, match="ANTHROPIC_API_KEY"):
        anthropic_backend.complete(CompletionRequest.from_prompt("x", model="c", max_tokens=5))


def test_keys_from_the_secrets_file(make_settings: MakeSettings, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.env"
    secrets.write_text("ANTHROPIC_API_KEY=sk-ant-file-123456\n")
    s = make_settings(secrets_file=secrets)
    assert build_backend({"tier": "cloud", "provider": "anthropic"}, s).probe().available


@pytest.mark.parametrize(
    ("route", "needle"),
    [
        ({"tier": "local", "provider": "vllm"}, "unknown local provider"),
        ({"tier": "cloud", "provider": "gemini"}, "unknown cloud provider"),
        ({"tier": "moon", "provider": "x"}, "unknown tier"),
        ({"tier": "local", "provider": "openai_compat"}, "SOVEREIGN_OPENAI_COMPAT_BASE_URL"),
    ],
)
def test_bad_routes_are_one_config_error(
    make_settings: MakeSettings, route: dict[str, str], needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle):
        build_backend(route, make_settings())


def test_backends_are_built_once_and_presets_win(make_settings: MakeSettings) -> None:
    fake = FakeBackend(tier="cloud", name="openai")
    backends = Backends(make_settings(), preset={("cloud", "openai"): fake})
    assert backends.get({"tier": "cloud", "provider": "openai", "model": "gpt"}) is fake
    first = backends.get({"tier": "local", "provider": "ollama"})
    assert backends.get(Route("local", "ollama", "other-model")) is first
    backends.close()
