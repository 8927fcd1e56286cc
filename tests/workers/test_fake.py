"""The in-memory fake backend used by unit and pipeline tests."""

from __future__ import annotations

import json
import threading

import pytest

from arbiter.errors import ConfidentialRefused, TransientBackendError
from arbiter.usage import Usage
from workers.fake import FakeBackend
from workers.protocol import Backend, CompletionRequest


def request(prompt: str = "hello there", **kw: object) -> CompletionRequest:
    args: dict[str, object] = {"model": "fake", "max_tokens": 16}
    args.update(kw)
    return CompletionRequest.from_prompt(prompt, **args)  # type: ignore[arg-type]


def test_is_a_backend_and_answers_deterministically() -> None:
    fake = FakeBackend()
    assert isinstance(fake, Backend)
    first, second = fake.complete(request()), fake.complete(request())
    assert first.text == second.text == "fake answer: hello there"
    assert first.usage == Usage(input_tokens=2, output_tokens=4)
    assert len(fake.calls) == 2


def test_configured_reply_and_usage() -> None:
    fake = FakeBackend(reply=lambda r: r.model.upper(), usage=Usage(100, 20, cached_tokens=30))
    done = fake.complete(request(model="m1"))
    assert done.text == "M1"
    assert done.usage == Usage(100, 20, cached_tokens=30)


def test_schema_requests_get_a_fitting_json_answer() -> None:
    schema = {
        "type": "object",
        "properties": {
            "label": {"enum": ["spam", "ham"]},
            "score": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["label", "score"],
    }
    done = FakeBackend().complete(request(json_schema=schema))
    assert done.json == {"label": "spam", "score": 0.0, "tags": ["example"]}
    assert json.loads(done.text) == done.json


def test_scripted_failures_come_first_in_order() -> None:
    fake = FakeBackend(failures=[TransientBackendError("busy", retry_after_s=2.0), None])
    with pytest.raises(TransientBackendError):
        fake.complete(request())
    assert fake.complete(request()).text.startswith("fake answer")
    fake.script(TransientBackendError("again"))
    with pytest.raises(TransientBackendError, match="again"):
        fake.complete(request())
    assert fake.complete(request()).text.startswith("fake answer")


def test_delay_is_applied_and_calls_run_concurrently() -> None:
    fake = FakeBackend(delay_s=0.2)
    threads = [threading.Thread(target=fake.complete, args=(request(),)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fake.calls) == 4
    assert fake.complete(request()).timings.latency_s >= 0.2


def test_cloud_fake_applies_the_confidential_guard() -> None:
    fake = FakeBackend(tier="cloud")
    with pytest.raises(ConfidentialRefused):
        fake.complete(request(confidential=True))
    assert fake.calls == []
    assert FakeBackend(tier="local").complete(request(confidential=True)).text


def test_probe_follows_availability() -> None:
    assert FakeBackend(models=("a",)).probe().models == ("a",)
    down = FakeBackend(available=False).probe()
    assert (down.available, down.models) == (False, ())
