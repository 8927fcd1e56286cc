"""The confidence formula: its documented cases and its properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.confidence import MISSING_RATING, NO_SOURCE_CAP, UNVERIFIED_CAP, score

ratings = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))
logprobs = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))
source_lists = st.lists(st.sampled_from(["a.md", "notes/b.md", "c.txt", "", "x.md"]), max_size=4)
known_lists = st.one_of(st.none(), st.lists(st.sampled_from(["a.md", "notes/b.md"]), max_size=2))


def test_the_rating_alone_counts_when_sources_check_out() -> None:
    c = score(0.9, ["fonts.md"], None, known_sources=["fonts.md", "other.md"])
    assert c.grounding == "verified"
    assert c.value == pytest.approx(0.9)
    assert c.cited_known == ("fonts.md",)


def test_no_sources_caps_a_high_rating() -> None:
    c = score(0.95, [], None, known_sources=["fonts.md"])
    assert c.grounding == "none"
    assert c.value == NO_SOURCE_CAP


def test_sources_that_were_not_shown_count_as_none() -> None:
    c = score(0.95, ["https://example.com/made-up"], None, known_sources=["fonts.md"])
    assert c.grounding == "none"
    assert c.value == NO_SOURCE_CAP


def test_sources_without_notes_to_check_are_unverified() -> None:
    c = score(0.95, ["some book"], None, known_sources=None)
    assert c.grounding == "unverified"
    assert c.value == UNVERIFIED_CAP


def test_a_source_matches_by_file_name_and_case() -> None:
    c = score(0.8, ["./Notes/Fonts.MD"], None, known_sources=["notes/fonts.md"])
    assert c.grounding == "verified"
    c = score(0.8, ["fonts.md"], None, known_sources=["notes/fonts.md"])
    assert c.grounding == "verified"


def test_missing_or_broken_rating_is_neutral() -> None:
    for rating in (None, math.nan, "high"):
        c = score(rating, ["a.md"], None, known_sources=["a.md"])  # type: ignore[arg-type]
        assert c.rating == MISSING_RATING
        assert c.self_rating is None


def test_log_probabilities_pull_a_confident_rating_down() -> None:
    sure = score(0.9, ["a.md"], math.log(0.95), known_sources=["a.md"])
    unsure = score(0.9, ["a.md"], math.log(0.3), known_sources=["a.md"])
    assert unsure.value < sure.value < 0.92
    assert unsure.token_prob == pytest.approx(0.3)
    assert unsure.value == pytest.approx(0.9**0.6 * 0.3**0.4)


def test_to_dict_keeps_every_signal() -> None:
    data = score(0.7, ["a.md"], -0.2, known_sources=["a.md"]).to_dict()
    assert set(data) >= {"self_rating", "sources", "grounding", "cap", "logprob_mean", "value"}
    assert data["sources"] == ["a.md"]


@given(ratings, source_lists, logprobs, known_lists)
def test_value_is_in_unit_interval(rating, sources, logprob, known) -> None:  # type: ignore[no-untyped-def]
    c = score(rating, sources, logprob, known_sources=known)
    assert 0.0 <= c.value <= 1.0
    assert c.value <= c.cap


@given(source_lists, logprobs, known_lists)
def test_no_source_cap_holds(sources, logprob, known) -> None:  # type: ignore[no-untyped-def]
    c = score(1.0, sources, logprob, known_sources=known)
    if c.grounding == "none":
        assert c.value <= NO_SOURCE_CAP
    if not [s for s in sources if s]:
        assert c.value <= NO_SOURCE_CAP


@given(st.floats(0, 1), st.floats(0, 1), source_lists, logprobs, known_lists)
def test_monotone_in_rating(a, b, sources, logprob, known) -> None:  # type: ignore[no-untyped-def]
    lo, hi = sorted((a, b))
    assert (
        score(lo, sources, logprob, known_sources=known).value
        <= score(hi, sources, logprob, known_sources=known).value
    )


@given(
    ratings,
    st.floats(-50, 0),
    st.floats(-50, 0),
    source_lists,
    known_lists,
)
def test_monotone_in_logprob(rating, a, b, sources, known) -> None:  # type: ignore[no-untyped-def]
    lo, hi = sorted((a, b))
    assert (
        score(rating, sources, lo, known_sources=known).value
        <= score(rating, sources, hi, known_sources=known).value
    )


@given(ratings, logprobs)
def test_monotone_in_grounding(rating, logprob) -> None:  # type: ignore[no-untyped-def]
    none = score(rating, [], logprob, known_sources=["a.md"]).value
    unverified = score(rating, ["a.md"], logprob, known_sources=None).value
    verified = score(rating, ["a.md"], logprob, known_sources=["a.md"]).value
    assert none <= unverified <= verified
