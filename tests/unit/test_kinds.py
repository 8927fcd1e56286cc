"""Job validation: every mistake is refused with one sentence before anything is queued."""

from __future__ import annotations

import pytest

from arbiter.bound import input_bound
from arbiter.errors import InputError
from arbiter.settings import load_settings
from tasks.kinds import KINDS, Job, make_job

SETTINGS = load_settings({"SOVEREIGN_MAX_PROMPT_CHARS": "100"})


def test_the_kinds() -> None:
    assert set(KINDS) == {
        "classify", "tag", "summarize", "research", "draft",
        "code", "docs", "strategy", "deep_research", "commit",
    }  # fmt: skip
    assert [k for k, spec in KINDS.items() if spec.tool] == ["commit"], "no model call"


def test_a_job_survives_the_message_round_trip() -> None:
    job = make_job(SETTINGS, kind="draft", prompt="a note", tags="commit, urgent", max_tokens=50)
    again = Job.from_message(job.to_message(), SETTINGS)
    assert again == job
    assert job.tags == ("commit", "urgent")
    assert job.estimated_tokens == input_bound([job.system or "", "a note"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"kind": "translate", "prompt": "x"},
            "unknown task kind 'translate'; use one of: classify",
        ),
        ({"kind": "tag", "prompt": " \n"}, "the prompt is empty"),
        ({"kind": "tag", "prompt": "x" * 101}, "over the limit of 100; shorten it or raise"),
        ({"kind": "tag", "prompt": "x", "max_tokens": 0}, "max_tokens must be a positive"),
        ({"kind": "tag", "prompt": "x", "max_tokens": True}, "max_tokens must be a positive"),
        ({"kind": "tag", "prompt": "x", "max_tokens": 99_999_999}, "above the limit of 32,768"),
        ({"kind": "tag", "prompt": "bad \udcff byte"}, "the prompt is not valid UTF-8"),
        (
            {"kind": "tag", "prompt": "x", "confidential": "yes"},
            "confidential must be true or false",
        ),
        ({"kind": "tag", "prompt": "x", "source": "email"}, "unknown task source 'email'"),
        ({"kind": "tag", "prompt": "x", "depth": -1}, "depth must be a whole number"),
    ],
)
def test_refusals_name_the_fix(options: dict[str, object], message: str) -> None:
    with pytest.raises(InputError) as err:
        make_job(SETTINGS, **options)  # type: ignore[arg-type]
    assert message in str(err.value)
    assert "\n" not in str(err.value)
