"""What the notes index costs: syncing a folder, syncing it again unchanged, and searching.

It writes a seeded folder of notes (``--files`` Markdown files of about 400 words in
headed sections, drawn from 5,000 words by Zipf's law; queries use the rarer 4,800), then on SQLite (FTS5) and PostgreSQL (GIN) times the first sync, a sync
with nothing changed (the stat walk beat runs before each research cycle), a sync after
one file changed, and ``--queries`` searches of topic-like questions (p50 and p95). Prints
a table and writes bench/results/notes_bench.json.

    .venv/bin/python bench/notes_bench.py [--files 1000] [--queries 200]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arbiter.ledger import Ledger  # noqa: E402
from bench.common import scratch_postgres, write_results  # noqa: E402
from tasks.notes import search_notes, sync_notes  # noqa: E402

STUDIO = [
    "typeface", "signage", "museum", "kerning", "palette", "print", "budget", "client",
    "invoice", "backup", "render", "animation", "storyboard", "logo", "brand", "identity",
    "packaging", "photography", "lighting", "lens", "colour", "grading", "subtitle",
    "accessibility", "contrast", "layout", "grid", "margin", "paper", "stock", "letterpress",
    "screen", "vector", "raster", "export", "archive", "contract", "licence", "font",
    "weight", "rate", "estimate", "deadline", "review", "feedback", "revision", "studio",
    "workshop", "exhibition", "catalogue", "poster",
]  # fmt: skip


def vocabulary(rng: random.Random, size: int = 5000) -> list[str]:
    """The studio words and made-up ones, to be drawn with Zipf's law like real prose."""
    letters = "abcdefghijklmnoprstuvw"
    made = {"".join(rng.choice(letters) for _ in range(rng.randint(4, 9))) for _ in range(size)}
    return STUDIO + sorted(made)


def draw(rng: random.Random, words: list[str], n: int) -> list[str]:
    weights = [1.0 / (rank + 1) for rank in range(len(words))]
    return rng.choices(words, weights=weights, k=n)


def write_folder(root: Path, files: int, rng: random.Random) -> None:
    words = vocabulary(random.Random(3))
    for i in range(files):
        sections = []
        for s in range(4):
            body = " ".join(draw(rng, words, 100))
            sections.append(f"## Section {s} on {draw(rng, words, 1)[0]}\n\n{body}.")
        folder = root / f"area{i % 20}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"note{i}.md").write_text(f"# Note {i}\n\n" + "\n\n".join(sections))


def timed(fn: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def run(url: str, folder: Path, queries: list[str]) -> dict[str, Any]:
    ledger = Ledger(url)
    ledger.upgrade()
    try:
        first_s, first = timed(lambda: sync_notes(ledger, folder))
        again_s, again = timed(lambda: sync_notes(ledger, folder))
        changed = folder / "area0" / "note0.md"
        changed.write_text(changed.read_text() + "\n\nA new paragraph about kilns.\n")
        one_s, one = timed(lambda: sync_notes(ledger, folder))
        latencies = []
        for q in queries:
            s, _ = timed(lambda q=q: search_notes(ledger, q, 3))
            latencies.append(s * 1000)
        latencies.sort()
        return {
            "passages": first.passages,
            "first_sync_s": round(first_s, 3),
            "unchanged_sync_ms": round(again_s * 1000, 1),
            "unchanged": again.unchanged,
            "one_changed_sync_ms": round(one_s * 1000, 1),
            "one_changed_updated": one.updated,
            "search_p50_ms": round(statistics.median(latencies), 2),
            "search_p95_ms": round(latencies[int(len(latencies) * 0.95) - 1], 2),
        }
    finally:
        ledger.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    rng = random.Random(12)
    words = vocabulary(random.Random(3))
    queries = [
        "Which {} suits {} for {}?".format(*draw(rng, words[200:], 3)) for _ in range(args.queries)
    ]
    results: dict[str, Any] = {"files": args.files, "queries": args.queries, "databases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for name in ("sqlite", "postgresql"):
            folder = base / f"notes-{name}"
            write_folder(folder, args.files, random.Random(7))
            if name == "sqlite":
                results["databases"][name] = run(f"sqlite:///{base / 'ledger.db'}", folder, queries)
            else:
                with scratch_postgres() as url:
                    results["databases"][name] = run(url, folder, queries)
    columns = [
        "passages",
        "first_sync_s",
        "unchanged_sync_ms",
        "one_changed_sync_ms",
        "search_p50_ms",
        "search_p95_ms",
    ]
    print(f"{args.files} files, {args.queries} queries")
    print(f"{'database':11}" + "".join(f"{c:>21}" for c in columns))
    for name, row in results["databases"].items():
        print(f"{name:11}" + "".join(f"{row[c]:>21}" for c in columns))
    write_results("notes_bench", results)


if __name__ == "__main__":
    main()
