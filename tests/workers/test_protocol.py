"""Requests and completions survive JSON (a Celery message) unchanged."""

from __future__ import annotations

import json

import pytest

from arbiter.errors import BackendError, PermanentBackendError, TransientBackendError
from arbiter.usage import Usage
from workers import failures
from workers.protocol import Completion, CompletionRequest, Message, Timings
from workers.structured import example_value, parse_answer


def test_request_round_trips_through_json() -> None:
    req = CompletionRequest(
        messages=(Message("user", "hi"), Message("assistant", "hello"), Message("user", "more")),
        max_tokens=12,
        model="m",
        json_schema={"type": "object"},
        timeout_s=9.5,
        confidential=True,
        system="sys",
    )
    assert CompletionRequest.from_dict(json.loads(json.dumps(req.to_dict()))) == req
    assert req.chat_messages()[0] == {"role": "system", "content": "sys"}
    assert len(req.chat_messages()) == 4


def test_completion_round_trips_through_json() -> None:
    done = Completion(
        text='{"a": 1}',
        json={"a": 1},
        usage=Usage(10, 2, cached_tokens=3, cache_write_tokens=1, convention="separate"),
        timings=Timings(latency_s=0.5, load_s=0.1, generate_s=0.3),
        model="m",
        provider="anthropic",
        finish_reason="end_turn",
        extra={"api": "messages"},
    )
    assert Completion.from_dict(json.loads(json.dumps(done.to_dict()))) == done


def test_completion_of_answer_parses_only_with_a_schema() -> None:
    def answer(text: str, schema: dict[str, object] | None) -> Completion:
        req = CompletionRequest.from_prompt("q", model="m", max_tokens=5, json_schema=schema)
        timings = Timings(latency_s=0.1)
        return Completion.of_answer(
            text, req, usage=Usage(1, 1), timings=timings, model="m", provider="p"
        )

    done = answer('{"a": 1}', None)
    assert (done.text, done.json, done.json_error, done.extra) == ('{"a": 1}', None, None, {})
    schema: dict[str, object] = {"type": "object", "required": ["a"]}
    done = answer('{"a": 1}', schema)
    assert (done.json, done.json_error) == ({"a": 1}, None)
    done = answer("not json", schema)
    assert done.json is None and done.json_error is not None


@pytest.mark.parametrize(
    "bad",
    [{"max_tokens": 0}, {"timeout_s": 0.0}, {"messages": ()}],
)
def test_invalid_requests_are_rejected(bad: dict[str, object]) -> None:
    args: dict[str, object] = {"messages": (Message("user", "x"),), "max_tokens": 1, "model": "m"}
    args.update(bad)
    with pytest.raises(ValueError):
        CompletionRequest(**args)  # type: ignore[arg-type]


def test_answer_parsing() -> None:
    schema = {"type": "object", "required": ["a"]}
    assert parse_answer('```json\n{"a": 1}\n```', schema) == ({"a": 1}, None)
    assert parse_answer("text", None) == (None, None)
    value, problem = parse_answer('{"b": 1}', schema)
    assert value is None and problem is not None and "a" in problem
    value, problem = parse_answer("[1]", schema)
    assert value is None and problem is not None and "object" in problem


def test_example_value_follows_the_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "integer"},
            "ok": {"type": "boolean"},
            "kind": {"const": "x"},
            "maybe": {"type": ["null", "string"]},
        },
    }
    assert example_value(schema) == {"n": 0, "ok": False, "kind": "x", "maybe": "example"}


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (429, TransientBackendError),
        (408, TransientBackendError),
        (500, TransientBackendError),
        (503, TransientBackendError),
        (529, TransientBackendError),
        (400, PermanentBackendError),
        (401, PermanentBackendError),
        (403, PermanentBackendError),
        (422, PermanentBackendError),
    ],
)
def test_status_classification(status: int, kind: type[BackendError]) -> None:
    error = failures.from_status(provider="p", status=status, message="m", model="x")
    assert isinstance(error, kind)
    assert error.retryable is (kind is TransientBackendError)


def test_scrub_removes_keys_and_key_shaped_tokens() -> None:
    text = "bad key sk-abcdef123456 and sk-ant-api03-XYZXYZXYZ and mysecret"
    cleaned = failures.scrub(text, ["mysecret", None, ""])
    assert "abcdef123456" not in cleaned
    assert "XYZXYZXYZ" not in cleaned
    assert "mysecret" not in cleaned
