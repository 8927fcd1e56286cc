"""The ``local`` provider: a policy's local model name, mapped to a server and a model.

Ollama is a real HTTP server on loopback speaking its wire format; the embedded model is
the in-memory fake (its real inference is tested in test_embedded.py and end to end)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from arbiter.errors import BackendUnavailable, ConfigError
from arbiter.settings import Settings, load_settings
from tests.workers.wire_fakes import Reply, WireServer, closed_port, ollama_chat, ollama_tags
from workers.fake import FakeBackend
from workers.local_models import LocalModels, embedded_model_name, pulled_name
from workers.protocol import Backend, CompletionRequest
from workers.registry import _build_local

MakeSettings = Callable[..., Settings]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def local_models(
    settings: Settings, embedded: FakeBackend, clock: Clock | None = None
) -> LocalModels:
    """Real Ollama (and other servers) from the registry; the embedded model faked."""

    def build(provider: str) -> Backend:
        return embedded if provider == "embedded" else _build_local(provider, settings)

    return LocalModels(settings, build, clock=clock or Clock())


def ask(model: str) -> CompletionRequest:
    return CompletionRequest.from_prompt("Say OK.", model=model, max_tokens=8, timeout_s=5.0)


def sent_models(wire: WireServer) -> list[str]:
    return [r.body["model"] for r in wire.requests("/api/chat")]


def test_ollama_runs_a_pulled_model_under_its_mapped_name(
    make_settings: MakeSettings, wire: WireServer
) -> None:
    wire.on("GET", "/api/tags", Reply(200, ollama_tags("qwen2.5:7b", "deepseek-coder:latest")))
    wire.on("POST", "/api/chat", Reply(200, ollama_chat("OK")))
    s = make_settings(ollama_host=wire.url, local_models="qwen2.5:14b=qwen2.5:7b")
    embedded = FakeBackend(name="embedded")
    models = local_models(s, embedded)
    assert models.complete(ask("qwen2.5:14b")).text == "OK"
    # A name without a tag is Ollama's :latest.
    models.complete(ask("deepseek-coder"))
    assert sent_models(wire) == ["qwen2.5:7b", "deepseek-coder:latest"]
    assert embedded.calls == []


def test_a_name_ollama_lacks_runs_on_the_embedded_model(
    make_settings: MakeSettings, wire: WireServer, caplog: pytest.LogCaptureFixture
) -> None:
    wire.on("GET", "/api/tags", Reply(200, ollama_tags("llama3.2:latest")))
    embedded = FakeBackend(name="embedded")
    models = local_models(make_settings(ollama_host=wire.url), embedded)
    with caplog.at_level(logging.WARNING, logger="sovereign.worker"):
        models.complete(ask("qwen2.5:14b"))
        models.complete(ask("qwen2.5:14b"))
    assert [c.model for c in embedded.calls] == ["smollm2-135m", "smollm2-135m"]
    assert wire.requests("/api/chat") == []
    [warning] = [r.getMessage() for r in caplog.records]
    assert "qwen2.5:14b runs on the embedded smollm2-135m: Ollama has no model qwen2.5:14b" in (
        warning
    )


def test_without_ollama_every_name_runs_on_the_embedded_model(make_settings: MakeSettings) -> None:
    s = make_settings(ollama_host=f"http://127.0.0.1:{closed_port()}")
    embedded = FakeBackend(name="embedded")
    models = local_models(s, embedded)
    for name in ("qwen2.5:14b", "deepseek-coder"):
        backend, model = models.choose(name)
        assert (backend, model) == (embedded, "smollm2-135m")
    assert models.probe().detail == "fake backend"
    assert models.sample_model() == "smollm2-135m"


def test_with_nothing_local_ollama_says_how_to_start_it(make_settings: MakeSettings) -> None:
    s = make_settings(ollama_host=f"http://127.0.0.1:{closed_port()}")
    models = local_models(s, FakeBackend(name="embedded", available=False))
    with pytest.raises(BackendUnavailable, match="ollama serve"):
        models.complete(ask("qwen2.5:14b"))
    assert models.probe().available is False


def test_ollama_s_model_list_is_cached_for_a_few_seconds(
    make_settings: MakeSettings, wire: WireServer
) -> None:
    wire.on("GET", "/api/tags", Reply(200, ollama_tags("a:1")), Reply(200, ollama_tags("b:1")))
    clock = Clock()
    models = local_models(make_settings(ollama_host=wire.url), FakeBackend(), clock)
    assert models.pulled() == ("a:1",)
    clock.now += 1
    assert models.pulled() == ("a:1",)
    clock.now += 10
    assert models.pulled() == ("b:1",)
    assert len(wire.requests("/api/tags")) == 2


def test_the_setting_pins_the_server(make_settings: MakeSettings, wire: WireServer) -> None:
    wire.on("GET", "/api/tags", Reply(200, ollama_tags("qwen2.5:14b")))
    embedded = FakeBackend(name="embedded")
    pinned = local_models(make_settings(local_backend="embedded", ollama_host=wire.url), embedded)
    assert pinned.choose("qwen2.5:14b") == (embedded, "smollm2-135m")
    # SOVEREIGN_LOCAL_BACKEND=ollama: Ollama or its error, never the embedded model.
    s = make_settings(
        local_backend="ollama",
        ollama_host=f"http://127.0.0.1:{closed_port()}",
        local_models="deepseek-coder=deepseek-coder:6.7b",
    )
    ollama = local_models(s, embedded)
    backend, model = ollama.choose("deepseek-coder")
    assert (backend.name, model) == ("ollama", "deepseek-coder:6.7b")
    assert embedded.calls == []


def test_the_map_setting_is_read_from_the_environment() -> None:
    settings = load_settings(
        {"SOVEREIGN_LOCAL_MODELS": " qwen2.5:14b = qwen2.5:7b , deepseek-coder=dsc:6.7b,"}
    )
    assert settings.local_models == {"qwen2.5:14b": "qwen2.5:7b", "deepseek-coder": "dsc:6.7b"}
    assert load_settings({}).local_models == {}


@pytest.mark.parametrize("text", ["qwen2.5:14b", "=qwen", "qwen="])
def test_a_malformed_map_is_one_sentence(text: str) -> None:
    with pytest.raises(ConfigError, match="NAME=MODEL pairs separated by commas"):
        load_settings({"SOVEREIGN_LOCAL_MODELS": text})


def test_the_old_single_name_setting_points_at_the_map() -> None:
    with pytest.raises(ConfigError, match="did you mean SOVEREIGN_LOCAL_MODELS"):
        load_settings({"SOVEREIGN_LOCAL_MODEL": "smollm2-135m"})


def test_the_embedded_model_s_name(make_settings: MakeSettings, tmp_path: Path) -> None:
    assert embedded_model_name(make_settings()) == "smollm2-135m"
    assert embedded_model_name(make_settings(embedded_model_path=tmp_path / "phi-3.gguf")) == (
        "phi-3"
    )
    smollm2 = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert embedded_model_name(make_settings(embedded_model_path=smollm2)) == "smollm2-135m"


def test_pulled_names() -> None:
    assert pulled_name("qwen2.5:14b", ("qwen2.5:14b",)) == "qwen2.5:14b"
    assert pulled_name("deepseek-coder", ("deepseek-coder:latest",)) == "deepseek-coder:latest"
    assert pulled_name("deepseek-coder", ("deepseek-coder:6.7b",)) is None
    assert pulled_name("qwen2.5:14b", ("qwen2.5:7b",)) is None
