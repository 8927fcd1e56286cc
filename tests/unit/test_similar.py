"""Meaning-level duplicates with the real offline model (all-MiniLM-L6-v2, int8 ONNX)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tasks.embedding import embedder
from tasks.similar import THRESHOLD, find_duplicate, normalize, similarities, threshold_for

DATA = Path(__file__).resolve().parent.parent / "data"
# Precision each labelled set must keep at THRESHOLD (docs in tasks/similar.py): the
# tuning set chose the threshold; the hold-out set was written after it was fixed and
# holds harder negatives (one word swapped, and French and German ones the English
# model reads as fragments).
FLOORS = {"paraphrases.jsonl": (0.9, 0.9), "paraphrases_holdout.jsonl": (0.7, 0.8)}


def load(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines()]


def test_the_issue_example_is_a_repeat() -> None:
    candidates = [
        "open-source licences for museum software",
        "open-source typefaces for museum signage",
        "pricing a logo for a bakery",
    ]
    found = find_duplicate("Which open-source fonts suit museum signs?", candidates)
    assert found == "open-source typefaces for museum signage"


def test_a_different_question_is_not_a_repeat() -> None:
    assert find_duplicate("How do we back up large video projects?", ["Best day rate"]) is None
    assert find_duplicate("anything", []) is None


def test_the_same_text_differently_written_is_a_repeat_without_the_model() -> None:
    assert find_duplicate("  research: Museum signs?? ", ["museum signs"]) == "museum signs"


def test_normalize_drops_what_says_nothing_of_the_topic() -> None:
    assert normalize("  1. Research: how do we price a logo?? ") == "price a logo"
    assert normalize("- Which   fonts suit signs？") == "fonts suit signs"  # noqa: RUF001
    assert normalize("What?") == "What"
    assert normalize("") == ""


def test_cjk_text_must_be_near_identical() -> None:
    assert threshold_for("博物馆标识适合用哪些开源字体", "fonts") > THRESHOLD
    assert threshold_for("museum fonts", "signage") == THRESHOLD


def test_vectors_are_unit_length_and_the_model_loads_once() -> None:
    model = embedder()
    assert embedder() is model
    vectors = model.embed(["a short text", "🎨", ""])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    # Batching pads shorter texts; their vectors must not change.
    alone = model.embed(["a short text"])[0]
    assert np.allclose(alone, vectors[0], atol=1e-5)


def test_a_long_text_is_cut_not_refused() -> None:
    text = "museum signage " * 1000
    assert similarities(text, ["museum signage"])[0] > 0.5


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_precision_on_labelled_pairs(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    pairs = load(name)
    tp = fp = fn = 0
    for pair in pairs:
        similar = similarities(pair["a"], [pair["b"]])[0] >= threshold_for(pair["a"], pair["b"])
        tp += similar and pair["same"]
        fp += similar and not pair["same"]
        fn += (not similar) and pair["same"]
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    with capsys.disabled():
        print(f"\n{name}: {len(pairs)} pairs, precision {precision:.2f}, recall {recall:.2f}")
    min_precision, min_recall = FLOORS[name]
    assert precision >= min_precision
    assert recall >= min_recall
