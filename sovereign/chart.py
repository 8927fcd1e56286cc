"""The spend chart: settled spend per day, stacked by provider, with the policy's daily cap.

``chart_data`` reads the figures (a plain function, tested against the ledger's own
per-day sums); ``draw`` writes the PNG with matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arbiter.lang.caps import Cap, limit_of


@dataclass(frozen=True, slots=True)
class ChartData:
    """Spend per local day (oldest first) and provider, and the daily cap if a rule sets one."""

    days: list[str]
    providers: list[str]
    usd: dict[str, list[float]]  # provider -> one value per day
    cap: Cap | None

    def totals(self) -> list[float]:
        """Each day's spend over every provider."""
        return [sum(self.usd[p][i] for p in self.providers) for i in range(len(self.days))]


def chart_data(ledger: Any, days: int, caps: list[Cap]) -> ChartData:
    """The last ``days`` local days of settled spend from ``ledger`` (today included)."""
    by_day = ledger.spend_by_day(days)
    ordered = sorted(by_day)
    providers = sorted({p for spend in by_day.values() for p in spend})
    usd = {p: [by_day[d].get(p, 0.0) for d in ordered] for p in providers}
    return ChartData(ordered, providers, usd, limit_of(caps, "daily_spend_usd"))


def draw(data: ChartData, path: Path, title: str = "spend per day") -> None:
    """Write the chart as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(data.days) + 2), 4.0), dpi=100)
    try:
        positions = list(range(len(data.days)))
        bottom = [0.0] * len(data.days)
        for provider in data.providers:
            values = data.usd[provider]
            ax.bar(positions, values, bottom=bottom, label=provider)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        if data.cap is not None:
            where = f" ({data.cap.tier})" if data.cap.tier else ""
            ax.axhline(
                data.cap.limit,
                color="red",
                linestyle="--",
                label=f"daily cap {data.cap.limit:g} USD{where}, rule {data.cap.rule}",
            )
        ax.set_xticks(positions, [d[5:] for d in data.days], rotation=45, ha="right")
        ax.set_ylabel("USD")
        ax.set_title(title)
        if data.providers or data.cap is not None:
            ax.legend(loc="upper left", fontsize="small")
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
