"""The local probe (cached) and the cloud facts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from arbiter.settings import Settings
from tests.workers.wire_fakes import Reply, WireServer, closed_port, ollama_tags
from workers import registry
from workers.fake import FakeBackend
from workers.probe import LocalProbe, cloud_facts, cloud_providers

MakeSettings = Callable[..., Settings]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_ollama_probe_fills_local_facts_and_is_cached(
    make_settings: MakeSettings, wire: WireServer
) -> None:
    wire.on("GET", "/api/tags", Reply(200, ollama_tags("llama3.2:latest")))
    clock = Clock()
    probe = LocalProbe(
        make_settings(local_backend="ollama", ollama_host=wire.url), ttl_s=5.0, clock=clock
    )
    facts = probe.facts()
    assert facts.to_dict() == {
        "available": True,
        "models": ["llama3.2:latest"],
        "backend": "ollama",
        "detail": f"Ollama answering at {wire.url}",
    }
    clock.now += 4.0
    probe.facts()
    assert len(wire.requests("/api/tags")) == 1
    clock.now += 2.0
    probe.facts()
    assert len(wire.requests("/api/tags")) == 2
    probe.invalidate()
    probe.facts()
    assert len(wire.requests("/api/tags")) == 3


def test_probes_reuse_one_backend(
    make_settings: MakeSettings, wire: WireServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[object] = []
    real_build = registry.build_backend

    def counting_build(*args: object, **kwargs: object) -> object:
        backend = real_build(*args, **kwargs)  # type: ignore[arg-type]
        built.append(backend)
        return backend

    monkeypatch.setattr(registry, "build_backend", counting_build)
    wire.on("GET", "/api/tags", Reply(200, ollama_tags("llama3.2:latest")))
    clock = Clock()
    probe = LocalProbe(
        make_settings(local_backend="ollama", ollama_host=wire.url), ttl_s=5.0, clock=clock
    )
    for _ in range(3):
        assert probe.facts().available is True
        clock.now += 6.0
    assert len(wire.requests("/api/tags")) == 3
    assert len(built) == 1


def test_unreachable_ollama_marks_local_unavailable(make_settings: MakeSettings) -> None:
    host = f"http://127.0.0.1:{closed_port()}"
    facts = LocalProbe(make_settings(local_backend="ollama", ollama_host=host)).facts()
    assert facts.available is False
    assert facts.models == ()
    assert "ollama serve" in facts.detail


def test_auto_uses_embedded_when_ollama_is_down(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    s = make_settings(
        local_backend="auto",
        ollama_host=f"http://127.0.0.1:{closed_port()}",
        embedded_model_path=gguf,
    )
    facts = LocalProbe(s).facts()
    assert (facts.available, facts.backend, facts.models) == (True, "embedded", ("tiny",))


def test_auto_uses_ollama_when_it_answers(make_settings: MakeSettings, wire: WireServer) -> None:
    wire.on("GET", "/api/tags", Reply(200, ollama_tags("qwen3:0.6b")))
    facts = LocalProbe(make_settings(local_backend="auto", ollama_host=wire.url)).facts()
    assert (facts.backend, facts.models) == ("ollama", ("qwen3:0.6b",))


def test_misconfigured_backend_is_unavailable_not_an_exception(make_settings: MakeSettings) -> None:
    facts = LocalProbe(make_settings(local_backend="openai_compat")).facts()
    assert facts.available is False
    assert "SOVEREIGN_OPENAI_COMPAT_BASE_URL" in facts.detail


def test_pinned_backend(make_settings: MakeSettings) -> None:
    facts = LocalProbe(make_settings(), backend=FakeBackend(models=("m",))).facts()
    assert (facts.available, facts.models, facts.backend) == (True, ("m",), "fake")


def test_cloud_providers_are_those_with_keys(make_settings: MakeSettings, tmp_path: Path) -> None:
    assert cloud_providers(make_settings()) == []
    secrets = tmp_path / "secrets"
    secrets.write_text("# keys\nANTHROPIC_API_KEY='sk-ant-x-123456'\n")
    s = make_settings(openai_api_key="sk-123456789", secrets_file=secrets)
    assert cloud_facts(s) == {"providers": ["openai", "anthropic"]}
