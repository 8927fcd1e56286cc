"""What local-first saves: a studio's week of work, routed by the default policy and
sent all to the cloud.

The workload is 500 seeded tasks over a working week (Monday to Friday, 9:00 to 18:00),
in the proportions a small studio running the research loop sees; token counts are
typical lengths of each kind of work, drawn log-normally around them (English text,
about 4 characters a token), and the answer is capped at the kind's ``max_tokens``:

    kind           share  prompt tokens  answer tokens  what it stands for
    classify        22 %        350              8       inbox, tickets, invoices
    tag             12 %        500             20       assets, notes
    summarize       18 %      2,500            200       meetings, documents, threads
    research        20 %      2,000            600       the research loop's briefs
    draft           10 %        600            800       emails, posts, proposals
    code             8 %      2,500            700       scripts, fixes, features
    docs             4 %      2,000          1,000       READMEs, guides
    strategy         3 %      1,500          1,200       pricing, plans
    deep_research    3 %      3,000          2,500       long reports

One task in ten is client work marked confidential. Research comes from the beat (60 %)
or as follow-ups (40 %, depth 1 or 2). A seeded share of the local research briefs
(``--unsure``, 20 % by default) comes back with a confidence under 0.6 and is submitted
again as an escalation (``source="escalation"``, ``local_confidence`` set).

Three runs, each through the real gate (``arbiter/gate.py``) on a temporary SQLite ledger
with the real price table: every task is admitted, its fake backend reports the tokens
above, and the reservation is settled with them, as ``tasks/complete.py`` does.

- **default**: ``rules/default.arb`` as shipped, both cloud keys configured.
- **all-cloud**: everything on the cloud model a studio without local models would pick
  for the work: classify and tag on Claude Haiku 4.5; summarize, research, draft, docs
  and strategy on Claude Sonnet 4.6; code on GPT-5.4; deep research on Claude Opus 4.7.
  No caps, no escalations (nothing is local), and no task is confidential (a studio
  sending everything to the cloud has no local place to keep it).
- **frugal cloud** (for reference): the same with GPT-5.4 mini for classify, tag,
  summarize, research and draft.

Targets: at least 80 % of the tasks run locally (an escalated task counts as a cloud
task), and the default run's cloud spend is at most 15 % of the all-cloud run's. Prints a
table with met / not met, writes bench/results/economics_bench.json and a chart,
bench/results/economics_bench.png.

    .venv/bin/python bench/economics_bench.py [--tasks 500] [--seed 7] [--unsure 0.2]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arbiter import Policy, load_policy, load_policy_from_sources  # noqa: E402
from arbiter.bound import input_bound  # noqa: E402
from arbiter.gate import Gate, TaskRequest  # noqa: E402
from arbiter.ledger import Ledger, PriceTable  # noqa: E402
from arbiter.usage import Usage  # noqa: E402
from bench.common import write_results  # noqa: E402
from tasks.kinds import KINDS, RESEARCH_SCHEMA  # noqa: E402
from tasks.research import escalate_below  # noqa: E402
from workers.fake import FakeBackend  # noqa: E402
from workers.protocol import CompletionRequest  # noqa: E402

# kind: (share, prompt tokens, answer tokens)
MIX: dict[str, tuple[float, int, int]] = {
    "classify": (0.22, 350, 8),
    "tag": (0.12, 500, 20),
    "summarize": (0.18, 2_500, 200),
    "research": (0.20, 2_000, 600),
    "draft": (0.10, 600, 800),
    "code": (0.08, 2_500, 700),
    "docs": (0.04, 2_000, 1_000),
    "strategy": (0.03, 1_500, 1_200),
    "deep_research": (0.03, 3_000, 2_500),
}
CONFIDENTIAL_SHARE = 0.10
FOLLOWUP_SHARE = 0.40
CHARS_PER_TOKEN = 4
WEEK = datetime(2026, 3, 9, 9, 0, tzinfo=UTC)  # a Monday
TARGET_LOCAL_SHARE = 0.80
TARGET_SPEND_RATIO = 0.15
HOST: dict[str, dict[str, Any]] = {
    "local": {"available": True, "models": ["qwen2.5:14b", "deepseek-coder:latest"]},
    "cloud": {"providers": ["openai", "anthropic"]},
}


def cloud_policy(small: tuple[str, str], small_provider: str) -> str:
    """Everything on a cloud model: ``small`` for the kinds the default policy keeps local."""
    return f"""
strategy Routing returns Route {{
    when {{ task.kind in ["classify", "tag"] }} then Cloud {{ provider: "{small_provider}", model: "{small[0]}" }}
    when {{ task.kind == "code" }} then Cloud {{ provider: "openai", model: "gpt-5.4" }}
    when {{ task.kind == "deep_research" }} then Cloud {{ provider: "anthropic", model: "claude-opus-4-7" }}
    when {{ task.kind in ["docs", "strategy"] }} then Cloud {{ provider: "anthropic", model: "claude-sonnet-4-6" }}
    else Cloud {{ provider: "{small_provider}", model: "{small[1]}" }}
}}
"""


ALL_CLOUD = cloud_policy(("claude-haiku-4-5", "claude-sonnet-4-6"), "anthropic")
FRUGAL_CLOUD = cloud_policy(("gpt-5.4-mini", "gpt-5.4-mini"), "openai")


@dataclass(frozen=True)
class Planned:
    """One task of the workload."""

    task_id: str
    kind: str
    at: datetime
    prompt: str
    answer_tokens: int
    confidential: bool
    source: str
    depth: int
    confidence: float | None  # a local research brief's confidence


def tokens(rng: random.Random, typical: int) -> int:
    """A length around ``typical``: log-normal, half of them within about ±40 %."""
    return max(1, round(typical * math.exp(rng.gauss(0.0, 0.5) - 0.125)))


def text(rng: random.Random, n_tokens: int) -> str:
    """English-like text of about ``n_tokens`` tokens."""
    words = ("the", "client", "brief", "studio", "deadline", "invoice", "museum", "signage",
             "typeface", "budget", "schedule", "palette", "review", "draft", "render", "meeting")  # fmt: skip
    out: list[str] = []
    size = 0
    while size < n_tokens * CHARS_PER_TOKEN:
        word = rng.choice(words)
        out.append(word)
        size += len(word) + 1
    return " ".join(out)


def workload(n: int, seed: int, unsure: float, threshold: float) -> list[Planned]:
    """``n`` tasks, spread over a working week in time order; a share ``unsure`` of the
    research briefs is less confident than ``threshold``."""
    rng = random.Random(seed)
    kinds = rng.choices(list(MIX), weights=[m[0] for m in MIX.values()], k=n)
    minutes = sorted(rng.randrange(5 * 24 * 60) for _ in range(n))
    plan = []
    for i, (kind, minute) in enumerate(zip(kinds, minutes, strict=True)):
        day, in_day = divmod(minute, 24 * 60)
        at = WEEK + timedelta(days=day, minutes=in_day * 9 / 24)  # 9:00-18:00
        _, prompt_tokens, answer_tokens = MIX[kind]
        source, depth, confidence = "cli", 0, None
        if kind == "research":
            followup = rng.random() < FOLLOWUP_SHARE
            source, depth = ("followup", rng.choice((1, 2))) if followup else ("beat", 0)
            confidence = (
                rng.uniform(0.2, threshold)
                if rng.random() < unsure
                else rng.uniform(threshold, 0.95)
            )
        plan.append(
            Planned(
                task_id=f"t{i:04d}",
                kind=kind,
                at=at,
                prompt=text(rng, tokens(rng, prompt_tokens)),
                answer_tokens=tokens(rng, answer_tokens),
                confidential=rng.random() < CONFIDENTIAL_SHARE,
                source=source,
                depth=depth,
                confidence=confidence,
            )
        )
    return plan


class Clock:
    """The ledger's and the gate's time: the workload's, not the machine's."""

    def __init__(self) -> None:
        self.now = WEEK

    def __call__(self) -> datetime:
        return self.now


def provider_usage(req: CompletionRequest, answer: str) -> Usage:
    """What a provider reports: the prompt's tokens (system included) and the answer's."""
    chars = sum(len(m.content) for m in req.messages) + len(req.system or "")
    return Usage(
        input_tokens=math.ceil(chars / CHARS_PER_TOKEN) + 8,
        output_tokens=math.ceil(len(answer) / CHARS_PER_TOKEN),
    )


@dataclass
class Run:
    """What one run did."""

    name: str
    tasks: int = 0
    local_tasks: int = 0  # workload tasks answered with no cloud call
    cloud_tasks: int = 0
    escalations: int = 0  # escalations submitted
    escalated: int = 0  # escalations that ran on the cloud
    verdicts: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)  # tier/provider/model -> calls
    spend_usd: dict[str, float] = field(default_factory=dict)  # provider/model -> USD
    spend_by_kind: dict[str, float] = field(default_factory=dict)  # kind -> USD

    @property
    def cloud_spend_usd(self) -> float:
        return sum(self.spend_usd.values())

    @property
    def local_share(self) -> float:
        return self.local_tasks / self.tasks if self.tasks else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "tasks": self.tasks,
            "local_tasks": self.local_tasks,
            "cloud_tasks": self.cloud_tasks,
            "local_share": round(self.local_share, 4),
            "escalations": self.escalations,
            "escalated_to_cloud": self.escalated,
            "verdicts": dict(self.verdicts),
            "calls": dict(self.calls),
            "cloud_spend_usd": round(self.cloud_spend_usd, 6),
            "spend_by_model_usd": {k: round(v, 6) for k, v in self.spend_usd.items()},
            "spend_by_kind_usd": {k: round(v, 6) for k, v in self.spend_by_kind.items()},
        }


class Runner:
    """One run: a fresh ledger, the gate, and fake backends that report real-sized usage."""

    def __init__(self, name: str, policy: Policy, prices: PriceTable, folder: Path) -> None:
        self.run = Run(name)
        self.clock = Clock()
        self.ledger = Ledger(f"sqlite:///{folder / (name + '.db')}", clock=self.clock)
        self.ledger.upgrade()
        self.gate = Gate(self.ledger, lambda: policy, prices, lambda: HOST)
        self.answer_tokens = 0
        self.backends = {
            tier: FakeBackend(tier=tier, reply=self._answer, usage=provider_usage)
            for tier in ("local", "cloud")
        }

    def _answer(self, req: CompletionRequest) -> str:
        return "x" * (min(self.answer_tokens, req.max_tokens) * CHARS_PER_TOKEN)

    def task(self, p: Planned, *, keep_confidential: bool = True, **changes: Any) -> str | None:
        """Admit, call and settle one task; the tier it ran on, or None when refused."""
        kind = KINDS[p.kind]
        schema = RESEARCH_SCHEMA if kind.structured else None
        request = TaskRequest(
            task_id=changes.pop("task_id", p.task_id),
            kind=p.kind,
            estimated_tokens=input_bound([kind.system, p.prompt], schema),
            max_tokens=kind.max_tokens,
            confidential=p.confidential and keep_confidential,
            source=changes.pop("source", p.source),
            depth=p.depth,
            **changes,
        )
        admission = self.gate.admit(request)
        self.run.verdicts[admission.verdict] += 1
        if not admission.admitted or admission.route is None:
            return None
        route = admission.route
        tier = str(route["tier"])
        self.answer_tokens = p.answer_tokens
        call = CompletionRequest.from_prompt(
            p.prompt,
            model=str(route["model"]),
            max_tokens=kind.max_tokens,
            system=kind.system,
            confidential=request.confidential,
        )
        done = self.backends[tier].complete(call)
        self.ledger.begin_attempt(request.task_id, 1)
        record = self.ledger.settle(
            request.task_id, 1, done.usage, str(route["provider"]), str(route["model"])
        )
        where = f"{route['provider']}/{route['model']}"
        self.run.calls[f"{tier} {where}"] += 1
        if tier == "cloud":
            self.run.spend_usd[where] = self.run.spend_usd.get(where, 0.0) + record.cost_usd
            kind_spend = self.run.spend_by_kind.get(p.kind, 0.0)
            self.run.spend_by_kind[p.kind] = kind_spend + record.cost_usd
        return tier

    def workload(
        self, plan: list[Planned], *, threshold: float | None, keep_confidential: bool
    ) -> Run:
        """Run ``plan``; a local research brief under ``threshold`` escalates, as the
        research loop does (``tasks/research.py``)."""
        for p in plan:
            self.clock.now = max(self.clock.now, p.at)
            self.run.tasks += 1
            tier = self.task(p, keep_confidential=keep_confidential)
            unsure = threshold is not None and p.confidence is not None and p.confidence < threshold
            if tier == "local" and unsure:
                # The research loop submits the topic again; the policy decides where.
                self.clock.now += timedelta(minutes=1)
                self.run.escalations += 1
                tier = (
                    self.task(
                        p,
                        task_id=f"{p.task_id}-escalation",
                        source="escalation",
                        local_confidence=p.confidence,
                    )
                    or tier
                )
                self.run.escalated += tier == "cloud"
            self.run.local_tasks += tier == "local"
            self.run.cloud_tasks += tier == "cloud"
        self.ledger.close()
        return self.run


def chart(runs: list[Run], path: Path) -> None:
    """Cloud spend per run, stacked by model, and where the tasks ran."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (spend, share) = plt.subplots(
        1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [3, 2]}
    )
    models = sorted({m for r in runs for m in r.spend_usd})
    bottom = [0.0] * len(runs)
    names = [r.name for r in runs]
    for model in models:
        values = [r.spend_usd.get(model, 0.0) for r in runs]
        spend.bar(names, values, bottom=bottom, label=model)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    for i, total in enumerate(bottom):
        spend.annotate(f"${total:.2f}", (i, total), ha="center", va="bottom")
    spend.set_ylim(0, max(bottom) * 1.15)
    spend.set_ylabel("cloud spend, USD")
    spend.set_title(f"cloud spend of {runs[0].tasks} tasks")
    spend.legend(fontsize=8)
    local = [100 * r.local_share for r in runs]
    share.bar(names, local, color="tab:green", label="local")
    share.bar(names, [100 - v for v in local], bottom=local, color="tab:gray", label="cloud")
    share.axhline(100 * TARGET_LOCAL_SHARE, color="black", linestyle="--", linewidth=1)
    share.set_ylabel("% of tasks")
    share.set_title("where the tasks ran (dashed: 80 % target)")
    share.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--unsure", type=float, default=0.2, help="share of unsure local briefs")
    args = parser.parse_args()
    prices = PriceTable.load(ROOT / "rules" / "prices.toml")
    default_policy = load_policy(ROOT / "rules")
    threshold = escalate_below(default_policy)
    if threshold is None:
        raise SystemExit("rules/default.arb declares no ESCALATE_BELOW; nothing would escalate")
    plan = workload(args.tasks, args.seed, args.unsure, threshold)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        setups = [
            ("default", default_policy, threshold, True),
            ("all-cloud", load_policy_from_sources({"all-cloud.arb": ALL_CLOUD}), None, False),
            ("frugal cloud", load_policy_from_sources({"frugal.arb": FRUGAL_CLOUD}), None, False),
        ]
        for name, policy, below, keep in setups:
            runner = Runner(name, policy, prices, folder)
            runs.append(runner.workload(plan, threshold=below, keep_confidential=keep))
    default, baseline, frugal = runs
    ratio = default.cloud_spend_usd / baseline.cloud_spend_usd
    frugal_ratio = default.cloud_spend_usd / frugal.cloud_spend_usd
    mix = Counter(p.kind for p in plan)
    print(f"{args.tasks} tasks, seed {args.seed}, {args.unsure:.0%} of local briefs unsure; mix: "
          + ", ".join(f"{k} {mix[k]}" for k in MIX))  # fmt: skip
    print(f"{'run':<14}{'local':>8}{'cloud':>8}{'local %':>9}{'escalations':>13}"
          f"{'cloud spend':>13}{'vs all-cloud':>14}")  # fmt: skip
    for r in runs:
        print(f"{r.name:<14}{r.local_tasks:>8}{r.cloud_tasks:>8}{100 * r.local_share:>8.1f}%"
              f"{f'{r.escalated}/{r.escalations}':>13}{f'${r.cloud_spend_usd:.2f}':>13}"
              f"{r.cloud_spend_usd / baseline.cloud_spend_usd:>13.1%}")  # fmt: skip
    print("default run's cloud calls: " + ", ".join(
        f"{k} {v}" for k, v in sorted(default.calls.items()) if k.startswith("cloud")))  # fmt: skip
    targets = {
        "local share >= 80%": default.local_share >= TARGET_LOCAL_SHARE,
        "cloud spend <= 15% of all-cloud": ratio <= TARGET_SPEND_RATIO,
    }
    # What the default policy sends to the cloud by design costs this much in any run.
    by_design = ("code", "docs", "strategy", "deep_research")
    floor = sum(baseline.spend_by_kind.get(k, 0.0) for k in by_design) / baseline.cloud_spend_usd
    print(f"code, docs, strategy and deep research alone are {floor:.1%} of the all-cloud "
          "spend: the default policy sends them to the cloud, so its ratio cannot go below it")  # fmt: skip
    for name, met in targets.items():
        print(f"target {name}: {'met' if met else 'NOT met'}")
    print(f"default spends {ratio:.1%} of the all-cloud run ({1 / ratio:.1f}x less), "
          f"{frugal_ratio:.1%} of the frugal cloud run")  # fmt: skip
    out = ROOT / "bench" / "results" / "economics_bench.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    chart(runs, out)
    print(f"wrote {out.relative_to(ROOT)}")
    write_results(
        "economics_bench",
        {
            "tasks": args.tasks,
            "seed": args.seed,
            "unsure_share": args.unsure,
            "mix": dict(mix),
            "confidential": sum(p.confidential for p in plan),
            "runs": {r.name: r.to_dict() for r in runs},
            "spend_ratio": round(ratio, 4),
            "spend_ratio_frugal": round(frugal_ratio, 4),
            "cloud_by_design_share_of_all_cloud": round(floor, 4),
            "targets": targets,
        },
    )


if __name__ == "__main__":
    main()
