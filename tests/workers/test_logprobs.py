"""Token log-probabilities: asked for where a backend can give them, their mean carried in
the completion (and its dict), ``None`` where there are none."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tests.workers.wire_fakes import Reply, WireServer, ollama_chat, openai_chat, openai_error
from workers.embedded import EmbeddedBackend
from workers.ollama import OllamaBackend
from workers.openai_cloud import OpenAIBackend
from workers.openai_compat import OpenAICompatBackend
from workers.protocol import Completion, CompletionRequest, mean_logprob

PATH = "/v1/chat/completions"


def request(model: str = "local-model", **kw: Any) -> CompletionRequest:
    args: dict[str, Any] = {"model": model, "max_tokens": 16, "timeout_s": 5.0}
    args.update(kw)
    return CompletionRequest.from_prompt("Say hi.", **args)


def chat_with_logprobs(text: str, logprobs: list[float]) -> dict[str, Any]:
    body = openai_chat(text)
    body["choices"][0]["logprobs"] = {
        "content": [
            {"token": f"t{i}", "logprob": lp, "bytes": None, "top_logprobs": []}
            for i, lp in enumerate(logprobs)
        ],
        "refusal": None,
    }
    return body


def test_mean_ignores_missing_and_infinite_values() -> None:
    assert mean_logprob([-1.0, None, -3.0, -math.inf]) == pytest.approx(-2.0)
    assert mean_logprob([]) is None
    assert mean_logprob([None, -math.inf]) is None


def test_completion_dict_carries_the_mean() -> None:
    done = Completion.from_dict({"text": "x", "logprob_mean": -0.25})
    assert done.logprob_mean == -0.25
    assert Completion.from_dict(done.to_dict()).logprob_mean == -0.25
    assert Completion.from_dict({"text": "x"}).logprob_mean is None


def test_compat_server_is_asked_and_the_mean_read(wire: WireServer) -> None:
    wire.on("POST", PATH, Reply(200, chat_with_logprobs("hi", [-0.1, -0.2, -0.6])))
    done = OpenAICompatBackend(wire.url + "/v1").complete(request())
    assert done.logprob_mean == pytest.approx(-0.3)
    assert wire.requests(PATH)[0].body["logprobs"] is True


def test_compat_server_without_logprobs_gives_none(wire: WireServer) -> None:
    wire.on("POST", PATH, Reply(200, openai_chat("hi")))
    done = OpenAICompatBackend(wire.url + "/v1").complete(request())
    assert done.logprob_mean is None
    assert done.to_dict()["logprob_mean"] is None


def test_compat_server_that_rejects_logprobs_is_asked_again_without(wire: WireServer) -> None:
    def answer(seen: Any) -> Reply:
        if seen.body.get("logprobs"):
            return Reply(
                500,
                openai_error(
                    "logprobs is not supported for models created with logits_all=False",
                    "server_error",
                ),
            )
        return Reply(200, openai_chat("hi"))

    wire.on("POST", PATH, answer)
    backend = OpenAICompatBackend(wire.url + "/v1")
    assert backend.complete(request()).text == "hi"
    assert backend.complete(request()).text == "hi"
    asked = [r.body.get("logprobs") for r in wire.requests(PATH)]
    assert asked == [True, None, None]
    assert backend.logprobs is False


def test_openai_cloud_does_not_ask(wire: WireServer) -> None:
    # OpenAI's reasoning models refuse the field, so the cloud never sends it.
    wire.on("POST", PATH, Reply(200, openai_chat("hi")))
    backend = OpenAIBackend("sk-test", base_url=wire.url + "/v1", api="chat")
    done = backend.complete(request("gpt-test"))
    assert "logprobs" not in wire.requests(PATH)[0].body
    assert done.logprob_mean is None


def test_ollama_is_asked_and_the_mean_read(wire: WireServer) -> None:
    body = ollama_chat("hi")
    body["logprobs"] = [
        {"token": "h", "logprob": -0.5, "top_logprobs": []},
        {"token": "i", "logprob": -1.5, "top_logprobs": []},
    ]
    wire.on("POST", "/api/chat", Reply(200, body))
    done = OllamaBackend(wire.url).complete(request("llama3.2"))
    assert done.logprob_mean == pytest.approx(-1.0)
    assert wire.requests("/api/chat")[0].body["logprobs"] is True


def test_older_ollama_without_logprobs_gives_none(wire: WireServer) -> None:
    wire.on("POST", "/api/chat", Reply(200, ollama_chat("hi")))
    assert OllamaBackend(wire.url).complete(request("llama3.2")).logprob_mean is None


@pytest.mark.inference
def test_embedded_model_reports_a_real_mean(embedded: EmbeddedBackend) -> None:
    done = embedded.complete(
        CompletionRequest.from_prompt(
            "Name three primary colours.", model="smollm2-135m", max_tokens=12, timeout_s=60.0
        )
    )
    assert done.logprob_mean is not None
    assert -30.0 < done.logprob_mean < 0.0
    assert done.to_dict()["logprob_mean"] == done.logprob_mean


@pytest.mark.inference
def test_embedded_mean_matches_llama_cpp_own_logprobs(smollm2_path: Any) -> None:
    """The logits processor reads the same numbers llama-cpp-python reports itself when
    its (much dearer) ``logits_all`` mode is on."""
    from llama_cpp import Llama

    from workers.embedded import _LogprobRecorder, _processors

    llama = Llama(model_path=str(smollm2_path), n_ctx=256, verbose=False, logits_all=True)
    try:
        recorder = _LogprobRecorder()
        out: Any = llama.create_chat_completion(
            messages=[{"role": "user", "content": "Name three primary colours."}],
            max_tokens=8,
            temperature=0.0,
            logprobs=True,
            top_logprobs=1,
            logits_processor=_processors(recorder),
        )
    finally:
        llama.close()
    official = [t["logprob"] for t in out["choices"][0]["logprobs"]["content"]]
    # The last sampled token is never seen again by the processor.
    assert len(recorder._logprobs) == len(official) - 1
    assert recorder._logprobs == pytest.approx(official[:-1], abs=1e-4)


@pytest.mark.inference
def test_llama_cpp_python_server_answers_without_logprobs(llama_server: str) -> None:
    """llama-cpp-python's server takes ``logprobs: true`` but returns them only when asked
    for ``top_logprobs`` too and started with ``logits_all`` (dear: every token's logits
    kept and the vocabulary sorted in Python). The answer comes, with no mean."""
    backend = OpenAICompatBackend(llama_server, timeout_s=60)
    done = backend.complete(
        CompletionRequest.from_prompt("Say hi.", model="smollm2-135m", max_tokens=8)
    )
    assert done.text.strip()
    assert done.logprob_mean is None
