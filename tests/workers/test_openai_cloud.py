"""OpenAI cloud through the real SDK against a loopback server, in both wire formats."""

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
    closed_port,
    openai_chat,
    openai_error,
    openai_response,
)
from workers.openai_cloud import OpenAIBackend
from workers.openai_wire import Api
from workers.protocol import CompletionRequest

KEY = "sk-test-SECRET0123456789abcdef"
PATHS: dict[Api, str] = {"responses": "/v1/responses", "chat": "/v1/chat/completions"}
SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string"}, "score": {"type": "number"}},
    "required": ["label", "score"],
    "additionalProperties": False,
}


def request(**kw: object) -> CompletionRequest:
    args: dict[str, object] = {"model": "gpt-test", "max_tokens": 50, "timeout_s": 5.0}
    args.update(kw)
    return CompletionRequest.from_prompt("Classify this.", **args)  # type: ignore[arg-type]


def ok(api: Api, text: str, **usage: int) -> Reply:
    if api == "chat":
        return Reply(200, openai_chat(text, **usage))
    return Reply(200, openai_response(text, **usage))


@pytest.fixture(params=["responses", "chat"])
def api(request: pytest.FixtureRequest) -> Api:
    value: Api = request.param
    return value


def backend(wire: WireServer, api: Api, key: str | None = KEY) -> OpenAIBackend:
    return OpenAIBackend(key, base_url=wire.url + "/v1", api=api)


def test_success_reports_text_usage_and_timings(wire: WireServer, api: Api) -> None:
    wire.on("POST", PATHS[api], ok(api, "positive"))
    done = backend(wire, api).complete(request(system="Answer in one word."))
    assert done.text == "positive"
    assert done.provider == "openai"
    assert done.model == "gpt-test"
    assert done.usage == Usage(input_tokens=12, output_tokens=5, convention="included")
    assert done.timings.latency_s > 0
    sent = wire.requests(PATHS[api])[0]
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert "temperature" not in sent.body
    if api == "chat":
        assert sent.body["max_completion_tokens"] == 50
        assert sent.body["messages"][0] == {"role": "system", "content": "Answer in one word."}
    else:
        assert sent.body["max_output_tokens"] == 50
        assert sent.body["instructions"] == "Answer in one word."
        assert sent.body["store"] is False


def test_cached_prompt_tokens_map_to_included_convention(wire: WireServer, api: Api) -> None:
    if api == "chat":
        reply = Reply(
            200, openai_chat("x", prompt_tokens=1000, completion_tokens=10, cached_tokens=800)
        )
    else:
        reply = Reply(
            200, openai_response("x", input_tokens=1000, output_tokens=10, cached_tokens=800)
        )
    wire.on("POST", PATHS[api], reply)
    usage = backend(wire, api).complete(request()).usage
    assert usage == Usage(1000, 10, cached_tokens=800, convention="included")
    assert usage.uncached_input_tokens == 200


def test_structured_output_sends_schema_and_parses(wire: WireServer, api: Api) -> None:
    wire.on("POST", PATHS[api], ok(api, '{"label": "spam", "score": 0.9}'))
    done = backend(wire, api).complete(request(json_schema=SCHEMA))
    assert done.json == {"label": "spam", "score": 0.9}
    assert done.json_error is None
    body = wire.requests(PATHS[api])[0].body
    if api == "chat":
        fmt = body["response_format"]
        assert fmt["type"] == "json_schema"
        assert fmt["json_schema"]["schema"] == SCHEMA
    else:
        fmt = body["text"]["format"]
        assert fmt["type"] == "json_schema"
        assert fmt["schema"] == SCHEMA
        assert fmt["name"]


def test_malformed_structured_answer_is_returned_not_raised(wire: WireServer, api: Api) -> None:
    wire.on("POST", PATHS[api], ok(api, "not json at all"))
    done = backend(wire, api).complete(request(json_schema=SCHEMA))
    assert done.json is None
    assert done.json_error is not None and "not valid JSON" in done.json_error
    assert done.usage.output_tokens == 5  # the billed call still settles


def test_rate_limit_is_transient_with_retry_after_then_success(wire: WireServer, api: Api) -> None:
    wire.on(
        "POST",
        PATHS[api],
        Reply(
            429,
            openai_error("Rate limit reached", "requests", "rate_limit_exceeded"),
            {"retry-after": "7"},
        ),
        ok(api, "fine now"),
    )
    b = backend(wire, api)
    with pytest.raises(TransientBackendError) as caught:
        b.complete(request())
    assert caught.value.retry_after_s == 7.0
    assert "429" in str(caught.value)
    assert b.complete(request()).text == "fine now"
    # The SDK itself did not retry: one request per call.
    assert len(wire.requests(PATHS[api])) == 2


def test_retry_after_ms_is_preferred(wire: WireServer, api: Api) -> None:
    wire.on(
        "POST",
        PATHS[api],
        Reply(
            429,
            openai_error("slow down", "requests"),
            {"retry-after-ms": "1500", "retry-after": "9"},
        ),
    )
    with pytest.raises(TransientBackendError) as caught:
        backend(wire, api).complete(request())
    assert caught.value.retry_after_s == 1.5


def test_server_error_stays_transient_until_giving_up(wire: WireServer, api: Api) -> None:
    wire.on("POST", PATHS[api], Reply(500, openai_error("The server had an error", "server_error")))
    b = backend(wire, api)
    for _ in range(3):
        with pytest.raises(TransientBackendError) as caught:
            b.complete(request())
        assert not isinstance(caught.value, PermanentBackendError)
        assert caught.value.retry_after_s is None
    assert len(wire.requests(PATHS[api])) == 3


def test_timeout_is_transient(wire: WireServer, api: Api) -> None:
    wire.on("POST", PATHS[api], Reply(200, openai_chat("late"), delay_s=2.0))
    with pytest.raises(TransientBackendError) as caught:
        backend(wire, api).complete(request(timeout_s=0.3))
    assert "0.3 s" in str(caught.value)
    assert not isinstance(caught.value, BackendUnavailable)


def test_bad_key_is_permanent_and_never_echoed(wire: WireServer, api: Api) -> None:
    echoed = f"Incorrect API key provided: {KEY}. You can find your API key at https://platform.openai.com."
    wire.on(
        "POST",
        PATHS[api],
        Reply(401, openai_error(echoed, "invalid_request_error", "invalid_api_key")),
    )
    with pytest.raises(PermanentBackendError) as caught:
        backend(wire, api).complete(request())
    message = str(caught.value)
    assert KEY not in message
    assert KEY not in repr(caught.value)
    assert KEY[:12] not in message
    assert "OPENAI_API_KEY" in message
    assert "Incorrect API key provided" in message
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_missing_model_is_model_not_found(wire: WireServer, api: Api) -> None:
    wire.on(
        "POST",
        PATHS[api],
        Reply(
            404,
            openai_error(
                "The model `gpt-nope` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            ),
        ),
    )
    with pytest.raises(ModelNotFound) as caught:
        backend(wire, api).complete(request(model="gpt-nope"))
    assert "gpt-nope" in str(caught.value)


def test_other_client_error_is_permanent_with_provider_message(wire: WireServer, api: Api) -> None:
    wire.on(
        "POST",
        PATHS[api],
        Reply(400, openai_error("max_tokens is too large", "invalid_request_error")),
    )
    with pytest.raises(PermanentBackendError) as caught:
        backend(wire, api).complete(request())
    assert not isinstance(caught.value, ModelNotFound)
    assert "max_tokens is too large" in str(caught.value)


def test_exhausted_quota_is_permanent_even_as_429(wire: WireServer, api: Api) -> None:
    wire.on(
        "POST",
        PATHS[api],
        Reply(
            429,
            openai_error(
                "You exceeded your current quota", "insufficient_quota", "insufficient_quota"
            ),
        ),
    )
    with pytest.raises(PermanentBackendError, match="quota"):
        backend(wire, api).complete(request())


def test_connection_refused_is_unavailable(api: Api) -> None:
    b = OpenAIBackend(KEY, base_url=f"http://127.0.0.1:{closed_port()}/v1", api=api)
    with pytest.raises(BackendUnavailable) as caught:
        b.complete(request())
    assert "not answering" in str(caught.value)
    assert KEY not in str(caught.value)


def test_missing_key_is_one_sentence_naming_the_variable(wire: WireServer, api: Api) -> None:
    b = backend(wire, api, key=None)
    with pytest.raises(PermanentBackendError) as caught:
        b.complete(request())
    assert "OPENAI_API_KEY" in str(caught.value)
    assert wire.received == []
    assert b.probe().available is False


def test_confidential_request_is_refused_before_any_network_io(wire: WireServer, api: Api) -> None:
    wire.on("POST", PATHS[api], ok(api, "leaked"))
    with pytest.raises(ConfidentialRefused):
        backend(wire, api).complete(request(confidential=True))
    assert wire.received == []


def test_probe_needs_no_network(wire: WireServer) -> None:
    assert backend(wire, "responses").probe().available is True
    assert wire.received == []
    assert KEY not in repr(backend(wire, "responses"))


@pytest.mark.parametrize("body", ["an HTML error page", {"unexpected": True}])
def test_unreadable_answer_is_permanent(wire: WireServer, api: Api, body: object) -> None:
    wire.on("POST", PATHS[api], Reply(200, body))
    with pytest.raises(PermanentBackendError, match="could not be read"):
        backend(wire, api).complete(request())
