"""The reservation's input bound is never below what a byte-level BPE tokenizer counts,
for text in any script: checked against SmolLM2's real tokenizer."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from arbiter.bound import FRAMING_PER_MESSAGE, input_bound, utf8_len
from arbiter.settings import load_settings
from tasks.kinds import RESEARCH_SCHEMA, make_job
from tests.tokens import count_tokens

SAMPLES = {
    "chinese": "请总结客户的会议记录：他们希望把标志改成青色，并在下周五之前交付。" * 40,  # noqa: RUF001
    "japanese": "クライアントは来週の金曜日までにロゴを青緑色に変更することを望んでいます。" * 40,
    "emoji": "🎨🖌️🧑‍🎨✨🚀👩‍👩‍👧‍👦🏳️‍🌈" * 60,
    "code": "def f(x: int) -> int:\n    return {k: v for k, v in zip(x, x)}  # ∑∂√\n" * 30,
    "english": "The client wants the logo in teal, delivered by next Friday. " * 40,
}
SETTINGS = load_settings({})
# What each message costs a chat template at most (OpenAI documents 3-4 tokens).
TEMPLATE = 4


def test_the_bound_covers_every_script() -> None:
    for name, text in SAMPLES.items():
        tokens = count_tokens(text)
        assert tokens <= utf8_len(text), name
        job = make_job(SETTINGS, kind="summarize", prompt=text)
        billed = count_tokens(job.system or "") + tokens + 2 * TEMPLATE + 3
        assert job.estimated_tokens >= billed, name
    # What the old estimate (characters / 3) would have held for the Chinese sample.
    chinese = SAMPLES["chinese"]
    assert count_tokens(chinese) > len(chinese) / 3


def test_structured_output_counts_its_schema() -> None:
    plain = input_bound(["topic"])
    structured = input_bound(["topic"], RESEARCH_SCHEMA)
    assert structured - plain >= len(json.dumps(RESEARCH_SCHEMA))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=400), min_size=1, max_size=4))
def test_any_text_is_bounded(messages: list[str]) -> None:
    billed = sum(count_tokens(m) + TEMPLATE for m in messages) + 3
    assert input_bound(messages) >= billed
    assert input_bound(messages) >= sum(utf8_len(m) + FRAMING_PER_MESSAGE for m in messages)
