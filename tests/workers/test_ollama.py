"""Ollama through the official client against a loopback server speaking /api/chat."""

from __future__ import annotations

import pytest

from arbiter.errors import (
    BackendUnavailable,
    ModelNotFound,
    PermanentBackendError,
    TransientBackendError,
)
from arbiter.usage import Usage
from tests.workers.wire_fakes import Reply, WireServer, closed_port, ollama_chat, ollama_tags
from workers.ollama import OllamaBackend, resolve_host
from workers.protocol import CompletionRequest

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


def request(**kw: object) -> CompletionRequest:
    args: dict[str, object] = {"model": "llama3.2", "max_tokens": 32, "timeout_s": 5.0}
    args.update(kw)
    return CompletionRequest.from_prompt("Why is the sky blue?", **args)  # type: ignore[arg-type]


def test_success_with_usage_timings_and_keep_alive(wire: WireServer) -> None:
    wire.on("POST", "/api/chat", Reply(200, ollama_chat("Rayleigh scattering.")))
    done = OllamaBackend(wire.url, keep_alive="7m").complete(request(system="Be brief."))
    assert done.text == "Rayleigh scattering."
    assert done.provider == "ollama"
    assert done.usage == Usage(input_tokens=26, output_tokens=9)
    assert done.timings.load_s == pytest.approx(0.1)
    assert done.timings.generate_s == pytest.approx(0.6)
    body = wire.requests("/api/chat")[0].body
    assert body["model"] == "llama3.2"
    assert body["stream"] is False
    assert body["keep_alive"] == "7m"
    assert body["options"]["num_predict"] == 32
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}


def test_absent_counts_are_zero(wire: WireServer) -> None:
    wire.on(
        "POST",
        "/api/chat",
        Reply(200, ollama_chat("cached", prompt_eval_count=None, eval_count=None)),
    )
    assert OllamaBackend(wire.url).complete(request()).usage == Usage(0, 0)


def test_structured_output_sends_schema_as_format(wire: WireServer) -> None:
    wire.on("POST", "/api/chat", Reply(200, ollama_chat('{"answer": "scattering"}')))
    done = OllamaBackend(wire.url).complete(request(json_schema=SCHEMA))
    assert done.json == {"answer": "scattering"}
    assert wire.requests("/api/chat")[0].body["format"] == SCHEMA


def test_model_not_pulled_names_ollama_pull(wire: WireServer) -> None:
    wire.on(
        "POST",
        "/api/chat",
        Reply(404, {"error": "model 'qwen9:1b' not found, try pulling it first"}),
    )
    with pytest.raises(ModelNotFound) as caught:
        OllamaBackend(wire.url).complete(request(model="qwen9:1b"))
    message = str(caught.value)
    assert "`ollama pull qwen9:1b`" in message
    assert message.count(". ") == 0  # one sentence


def test_connection_refused_is_unavailable_and_says_how_to_start() -> None:
    host = f"http://127.0.0.1:{closed_port()}"
    backend = OllamaBackend(host)
    with pytest.raises(BackendUnavailable) as caught:
        backend.complete(request())
    assert host in str(caught.value)
    assert "ollama serve" in str(caught.value)
    probe = backend.probe()
    assert probe.available is False
    assert probe.models == ()


def test_timeout_is_transient(wire: WireServer) -> None:
    wire.on("POST", "/api/chat", Reply(200, ollama_chat("late"), delay_s=2.0))
    with pytest.raises(TransientBackendError) as caught:
        OllamaBackend(wire.url).complete(request(timeout_s=0.3))
    assert not isinstance(caught.value, BackendUnavailable)


def test_server_error_then_success(wire: WireServer) -> None:
    wire.on(
        "POST",
        "/api/chat",
        Reply(500, {"error": "llama runner process has terminated"}),
        Reply(200, ollama_chat("back")),
    )
    backend = OllamaBackend(wire.url)
    with pytest.raises(TransientBackendError, match="terminated"):
        backend.complete(request())
    assert backend.complete(request()).text == "back"


def test_probe_lists_pulled_models(wire: WireServer) -> None:
    wire.on("GET", "/api/tags", Reply(200, ollama_tags("llama3.2:latest", "smollm2:135m")))
    probe = OllamaBackend(wire.url).probe()
    assert probe.available is True
    assert probe.models == ("llama3.2:latest", "smollm2:135m")


def test_host_falls_back_to_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "10.0.0.5:11434")
    assert resolve_host(None) == "http://10.0.0.5:11434"
    assert resolve_host("http://gpu-box:11434/") == "http://gpu-box:11434"
    monkeypatch.delenv("OLLAMA_HOST")
    assert resolve_host(None) == "http://127.0.0.1:11434"


def test_unreadable_answer_is_permanent(wire: WireServer) -> None:
    wire.on("POST", "/api/chat", Reply(200, {"unexpected": True}))
    with pytest.raises(PermanentBackendError, match="could not be read"):
        OllamaBackend(wire.url).complete(request())
