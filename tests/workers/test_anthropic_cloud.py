"""Anthropic through the real SDK against a loopback server speaking /v1/messages."""

from __future__ import annotations

import pytest

from arbiter.errors import (
    BackendUnavailable,
    ConfidentialRefused,
    ModelNotFound,
    PermanentBackendError,
    TransientBackendError,
)
from arbiter.usage import Usage
from tests.workers.wire_fakes import (
    Reply,
    WireServer,
    anthropic_error,
    anthropic_message,
    closed_port,
)
from workers.anthropic_cloud import AnthropicBackend
from workers.protocol import CompletionRequest, Message

KEY = "sk-ant-api03-SECRET0123456789abcdef"
PATH = "/v1/messages"
SCHEMA = {
    "type": "object",
    "properties": {"topic": {"type": "string"}},
    "required": ["topic"],
    "additionalProperties": False,
}


def request(**kw: object) -> CompletionRequest:
    args: dict[str, object] = {"model": "claude-test", "max_tokens": 64, "timeout_s": 5.0}
    args.update(kw)
    return CompletionRequest.from_prompt("Summarise this.", **args)  # type: ignore[arg-type]


def backend(wire: WireServer, key: str | None = KEY) -> AnthropicBackend:
    return AnthropicBackend(key, base_url=wire.url)


def test_success_sends_max_tokens_system_and_no_temperature(wire: WireServer) -> None:
    wire.on("POST", PATH, Reply(200, anthropic_message("A summary.")))
    req = CompletionRequest(
        messages=(Message("system", "Be terse."), Message("user", "Summarise this.")),
        max_tokens=64,
        model="claude-test",
        system="You are a summariser.",
        timeout_s=5.0,
    )
    done = backend(wire).complete(req)
    assert done.text == "A summary."
    assert done.provider == "anthropic"
    assert done.finish_reason == "end_turn"
    assert done.usage == Usage(20, 7, convention="separate")
    sent = wire.requests(PATH)[0]
    # The installed SDK sends the key as a bearer token; older ones used x-api-key.
    bearer = sent.headers.get("authorization", "").removeprefix("Bearer ")
    assert KEY in (sent.headers.get("x-api-key"), bearer)
    assert "anthropic-version" in sent.headers
    assert sent.body["max_tokens"] == 64
    assert sent.body["system"] == "You are a summariser.\n\nBe terse."
    assert sent.body["messages"] == [{"role": "user", "content": "Summarise this."}]
    assert "temperature" not in sent.body


def test_cache_reads_and_writes_map_to_separate_convention(wire: WireServer) -> None:
    wire.on(
        "POST",
        PATH,
        Reply(
            200,
            anthropic_message(
                "x", input_tokens=50, output_tokens=10, cache_read=900, cache_creation=300
            ),
        ),
    )
    usage = backend(wire).complete(request()).usage
    assert usage == Usage(50, 10, cached_tokens=900, cache_write_tokens=300, convention="separate")
    assert usage.uncached_input_tokens == 50
    assert usage.total_input_tokens == 1250


def test_structured_output_uses_output_config(wire: WireServer) -> None:
    wire.on("POST", PATH, Reply(200, anthropic_message('{"topic": "budgets"}')))
    done = backend(wire).complete(request(json_schema=SCHEMA))
    assert done.json == {"topic": "budgets"}
    assert wire.requests(PATH)[0].body["output_config"] == {
        "format": {"type": "json_schema", "schema": SCHEMA}
    }


def test_rate_limit_then_success(wire: WireServer) -> None:
    wire.on(
        "POST",
        PATH,
        Reply(
            429,
            anthropic_error("rate_limit_error", "Number of requests exceeded"),
            {"retry-after": "3"},
        ),
        Reply(200, anthropic_message("ok")),
    )
    b = backend(wire)
    with pytest.raises(TransientBackendError) as caught:
        b.complete(request())
    assert caught.value.retry_after_s == 3.0
    assert b.complete(request()).text == "ok"
    assert len(wire.requests(PATH)) == 2  # the SDK did not retry on its own


@pytest.mark.parametrize("status", [529, 500, 503])
def test_overload_and_server_errors_are_transient(wire: WireServer, status: int) -> None:
    kind = "overloaded_error" if status == 529 else "api_error"
    wire.on("POST", PATH, Reply(status, anthropic_error(kind, "Overloaded")))
    b = backend(wire)
    for _ in range(2):
        with pytest.raises(TransientBackendError):
            b.complete(request())
    assert len(wire.requests(PATH)) == 2


def test_overloaded_type_is_transient_whatever_the_status(wire: WireServer) -> None:
    wire.on("POST", PATH, Reply(400, anthropic_error("overloaded_error", "Overloaded")))
    with pytest.raises(TransientBackendError):
        backend(wire).complete(request())


def test_timeout_is_transient(wire: WireServer) -> None:
    wire.on("POST", PATH, Reply(200, anthropic_message("late"), delay_s=2.0))
    with pytest.raises(TransientBackendError) as caught:
        backend(wire).complete(request(timeout_s=0.3))
    assert not isinstance(caught.value, BackendUnavailable)


def test_bad_key_is_permanent_and_never_echoed(wire: WireServer) -> None:
    wire.on(
        "POST",
        PATH,
        Reply(401, anthropic_error("authentication_error", f"invalid x-api-key {KEY}")),
    )
    with pytest.raises(PermanentBackendError) as caught:
        backend(wire).complete(request())
    assert KEY not in str(caught.value)
    assert KEY[:16] not in str(caught.value)
    assert "ANTHROPIC_API_KEY" in str(caught.value)


def test_missing_model_is_model_not_found(wire: WireServer) -> None:
    wire.on("POST", PATH, Reply(404, anthropic_error("not_found_error", "model: claude-nope")))
    with pytest.raises(ModelNotFound, match="claude-nope"):
        backend(wire).complete(request(model="claude-nope"))


def test_invalid_request_is_permanent_with_message(wire: WireServer) -> None:
    wire.on(
        "POST",
        PATH,
        Reply(400, anthropic_error("invalid_request_error", "messages: roles must alternate")),
    )
    with pytest.raises(PermanentBackendError, match="roles must alternate"):
        backend(wire).complete(request())


def test_connection_refused_is_unavailable() -> None:
    b = AnthropicBackend(KEY, base_url=f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(BackendUnavailable):
        b.complete(request())


def test_missing_key_names_the_variable(wire: WireServer) -> None:
    with pytest.raises(PermanentBackendError, match="ANTHROPIC_API_KEY"):
        backend(wire, key=None).complete(request())
    assert wire.received == []


def test_confidential_request_is_refused_before_any_network_io(wire: WireServer) -> None:
    wire.on("POST", PATH, Reply(200, anthropic_message("leaked")))
    with pytest.raises(ConfidentialRefused):
        backend(wire).complete(request(confidential=True))
    assert wire.received == []


@pytest.mark.parametrize("body", ["an HTML error page", {"unexpected": True}])
def test_unreadable_answer_is_permanent(wire: WireServer, body: object) -> None:
    wire.on("POST", PATH, Reply(200, body))
    with pytest.raises(PermanentBackendError, match="could not be read"):
        backend(wire).complete(request())
