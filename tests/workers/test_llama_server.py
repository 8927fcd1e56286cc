"""Real inference: llama-cpp-python's OpenAI-compatible server with SmolLM2, answered
through the openai_compat backend."""

from __future__ import annotations

import pytest

from workers.openai_compat import OpenAICompatBackend
from workers.protocol import CompletionRequest

pytestmark = pytest.mark.inference

MODEL = "smollm2-135m"


def test_probe_sees_the_served_model(llama_server: str) -> None:
    probe = OpenAICompatBackend(llama_server).probe()
    assert probe.available is True
    assert MODEL in probe.models


def test_real_prompt_through_openai_compat(llama_server: str) -> None:
    backend = OpenAICompatBackend(llama_server, timeout_s=60)
    done = backend.complete(
        CompletionRequest.from_prompt(
            "What is the capital of France?", model=MODEL, max_tokens=24, system="Answer briefly."
        )
    )
    assert done.text.strip()
    assert done.usage.input_tokens > 8
    assert 0 < done.usage.output_tokens <= 24
    assert done.provider == "openai_compat"


def test_structured_output_through_the_server(llama_server: str) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
    }
    backend = OpenAICompatBackend(llama_server, timeout_s=60)
    done = backend.complete(
        CompletionRequest.from_prompt(
            "Reply with a JSON object holding one answer: the colour of the sky.",
            model=MODEL,
            max_tokens=40,
            json_schema=schema,
        )
    )
    assert done.json_error is None, done.text
    assert isinstance(done.json["answer"], str)
    # llama-cpp-python's server accepts only {"type": "json_object", "schema": ...}.
    assert backend.schema_style == "json_object"
