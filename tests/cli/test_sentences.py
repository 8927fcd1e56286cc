"""Small pieces of the CLI's sentences: durations and text that is not UTF-8."""

from __future__ import annotations

import os

import pytest

from sovereign.cli import not_utf8
from tasks.broker import human_duration


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.5, "0.5 s"),
        (2.0, "2 s"),
        (42.4, "42 s"),
        (60, "1 min"),
        (219.0937469739997, "3 min 39 s"),
        (300.0, "5 min"),
        (3725, "1 h 2 min"),
        (7200, "2 h"),
    ],
)
def test_durations_read_like_a_person_wrote_them(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_text_that_is_not_utf8_names_its_first_bad_byte() -> None:
    assert not_utf8("café, naïve, 東京") is None
    assert not_utf8(os.fsdecode(b"caf\xe9")) == "byte 0xe9 at character 4"
    assert not_utf8("a\ud800b") == "U+D800 at character 2"
