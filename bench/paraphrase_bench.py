"""How well ``tasks.similar`` tells a repeated research question from a different one.

For each labelled pair in ``tests/data/paraphrases.jsonl`` (the set the threshold was
chosen on) and ``tests/data/paraphrases_holdout.jsonl`` (written after it was fixed) it
computes the similarity the way ``find_duplicate`` does, and prints precision and recall
at THRESHOLD (and at a few thresholds around it) as a table, the misjudged pairs, and
writes bench/results/paraphrase_bench.json.

    .venv/bin/python bench/paraphrase_bench.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import write_results  # noqa: E402
from tasks.similar import THRESHOLD, similarities, threshold_for  # noqa: E402

SETS = {
    "tuning": ROOT / "tests" / "data" / "paraphrases.jsonl",
    "holdout": ROOT / "tests" / "data" / "paraphrases_holdout.jsonl",
}
OFFSETS = (-0.06, -0.03, 0.0, 0.03, 0.06)


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def judge(pairs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], float, float]]:
    """Each pair with its similarity and the threshold that applies to it."""
    return [(p, similarities(p["a"], [p["b"]])[0], threshold_for(p["a"], p["b"])) for p in pairs]


def scores(judged: list[tuple[dict[str, Any], float, float]], shift: float) -> dict[str, Any]:
    tp = sum(1 for p, s, t in judged if s >= t + shift and p["same"])
    fp = sum(1 for p, s, t in judged if s >= t + shift and not p["same"])
    fn = sum(1 for p, s, t in judged if s < t + shift and p["same"])
    return {
        "threshold": round(THRESHOLD + shift, 3),
        "precision": round(tp / (tp + fp), 3) if tp + fp else 1.0,
        "recall": round(tp / (tp + fn), 3) if tp + fn else 1.0,
        "true_positives": tp,
        "false_positives": fp,
        "false_negatives": fn,
    }


def main() -> None:
    results: dict[str, Any] = {"threshold": THRESHOLD, "sets": {}}
    rows = []
    for name, path in SETS.items():
        pairs = load(path)
        started = time.perf_counter()
        judged = judge(pairs)
        elapsed = time.perf_counter() - started
        table = [scores(judged, shift) for shift in OFFSETS]
        wrong = [
            {"a": p["a"], "b": p["b"], "same": p["same"], "similarity": round(s, 3)}
            for p, s, t in judged
            if (s >= t) != p["same"]
        ]
        results["sets"][name] = {
            "pairs": len(pairs),
            "paraphrases": sum(1 for p in pairs if p["same"]),
            "seconds": round(elapsed, 3),
            "at_threshold": scores(judged, 0.0),
            "sweep": table,
            "misjudged": wrong,
        }
        for row in table:
            rows.append((name, len(pairs), row))
    print(
        f"{'set':8} {'pairs':>5} {'threshold':>9} {'precision':>9} {'recall':>6} {'fp':>3} {'fn':>3}"
    )
    for name, n, row in rows:
        mark = " <" if row["threshold"] == round(THRESHOLD, 3) else ""
        print(
            f"{name:8} {n:5d} {row['threshold']:9.3f} {row['precision']:9.3f} "
            f"{row['recall']:6.3f} {row['false_positives']:3d} {row['false_negatives']:3d}{mark}"
        )
    for name, data in results["sets"].items():
        for miss in data["misjudged"]:
            kind = "missed" if miss["same"] else "false match"
            print(f"{name}: {kind} at {miss['similarity']:.3f}: {miss['a']!r} / {miss['b']!r}")
    write_results("paraphrase_bench", results)


if __name__ == "__main__":
    main()
