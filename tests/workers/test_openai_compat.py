"""Local OpenAI-compatible servers through the openai SDK with a placeholder key."""

from __future__ import annotations

import pytest

from arbiter.errors import BackendUnavailable, PermanentBackendError, TransientBackendError
from tests.workers.wire_fakes import Reply, WireServer, closed_port, openai_chat, openai_error
from workers.openai_compat import PLACEHOLDER_KEY, OpenAICompatBackend
from workers.protocol import CompletionRequest

PATH = "/v1/chat/completions"
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def request(**kw: object) -> CompletionRequest:
    args: dict[str, object] = {"model": "local-model", "max_tokens": 20, "timeout_s": 5.0}
    args.update(kw)
    return CompletionRequest.from_prompt("Count to one.", **args)  # type: ignore[arg-type]


def test_chat_with_placeholder_key_and_max_tokens(wire: WireServer) -> None:
    wire.on(
        "POST",
        PATH,
        Reply(200, openai_chat("one", model="local-model", prompt_tokens=8, completion_tokens=1)),
    )
    done = OpenAICompatBackend(wire.url + "/v1").complete(request())
    assert done.text == "one"
    assert done.provider == "openai_compat"
    assert (done.usage.input_tokens, done.usage.output_tokens) == (8, 1)
    sent = wire.requests(PATH)[0]
    assert sent.headers["authorization"] == f"Bearer {PLACEHOLDER_KEY}"
    assert sent.body["max_tokens"] == 20
    assert "max_completion_tokens" not in sent.body


def test_local_tier_accepts_confidential_requests(wire: WireServer) -> None:
    wire.on("POST", PATH, Reply(200, openai_chat("private")))
    backend = OpenAICompatBackend(wire.url + "/v1")
    assert backend.tier == "local"
    assert backend.complete(request(confidential=True)).text == "private"


# llama-cpp-python's server answers the unknown response format with a 500.
LLAMA_CPP_REJECTION = Reply(
    500,
    {
        "error": {
            "message": "1 validation error: {'type': 'literal_error', 'loc': ('body', "
            "'response_format', 'type'), 'msg': \"Input should be 'text' or 'json_object'\"}",
            "type": "internal_server_error",
        }
    },
)


@pytest.mark.parametrize(
    "rejection",
    [
        Reply(422, {"detail": [{"msg": "Input should be 'text' or 'json_object'"}]}),
        LLAMA_CPP_REJECTION,
    ],
    ids=["422", "llama-cpp-500"],
)
def test_schema_falls_back_to_json_object_when_json_schema_is_rejected(
    wire: WireServer, rejection: Reply
) -> None:
    def answer(seen: object) -> Reply:
        fmt = seen.body["response_format"]  # type: ignore[attr-defined]
        if fmt["type"] == "json_schema":
            return rejection
        assert fmt == {"type": "json_object", "schema": SCHEMA}
        return Reply(200, openai_chat('{"n": 1}'))

    wire.on("POST", PATH, answer)
    backend = OpenAICompatBackend(wire.url + "/v1")
    assert backend.complete(request(json_schema=SCHEMA)).json == {"n": 1}
    assert backend.schema_style == "json_object"
    assert backend.complete(request(json_schema=SCHEMA)).json == {"n": 1}
    styles = [r.body["response_format"]["type"] for r in wire.requests(PATH)]
    assert styles == ["json_schema", "json_object", "json_object"]


def test_fixed_schema_style_does_not_fall_back(wire: WireServer) -> None:
    wire.on(
        "POST",
        PATH,
        Reply(400, openai_error("response_format not supported", "invalid_request_error")),
    )
    backend = OpenAICompatBackend(wire.url + "/v1", schema_style="json_schema")
    with pytest.raises(PermanentBackendError, match="not supported"):
        backend.complete(request(json_schema=SCHEMA))
    assert len(wire.requests(PATH)) == 1


def test_plain_server_errors_do_not_trigger_the_fallback(wire: WireServer) -> None:
    wire.on("POST", PATH, Reply(500, openai_error("out of memory", "server_error")))
    backend = OpenAICompatBackend(wire.url + "/v1")
    with pytest.raises(TransientBackendError, match="out of memory"):
        backend.complete(request(json_schema=SCHEMA))
    assert backend.schema_style == "auto"
    assert len(wire.requests(PATH)) == 1


def test_probe_lists_models(wire: WireServer) -> None:
    wire.on(
        "GET",
        "/v1/models",
        Reply(
            200,
            {
                "object": "list",
                "data": [
                    {"id": "b", "object": "model", "created": 0, "owned_by": "me"},
                    {"id": "a", "object": "model", "created": 0, "owned_by": "me"},
                ],
            },
        ),
    )
    probe = OpenAICompatBackend(wire.url + "/v1").probe()
    assert probe.available is True
    assert probe.models == ("a", "b")


def test_server_down_is_unavailable() -> None:
    backend = OpenAICompatBackend(f"http://127.0.0.1:{closed_port()}/v1")
    with pytest.raises(BackendUnavailable):
        backend.complete(request())
    assert backend.probe().available is False
