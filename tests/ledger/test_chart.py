"""`sovereign spend --chart`: the figures plotted are the ledger's per-day sums, and the PNG
is written."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from arbiter.lang.caps import policy_caps
from arbiter.ledger import Ledger
from arbiter.usage import Usage
from sovereign.chart import chart_data, draw
from sovereign.cli import cli
from tests.ledger.helpers import ManualClock

POLICY = """
rule DailySpendCap priority 20 {
    when { route.tier == "cloud" and budget.daily_spend_usd + route.estimated_cost_usd > 2.5 }
    then Deny { reason: "the daily cloud budget is spent" }
}
"""


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))


@pytest.fixture
def ledger(database_url: str, clock: ManualClock) -> Iterator[Ledger]:
    led = Ledger(database_url, timezone="Europe/Paris", clock=clock)
    led.upgrade()
    yield led
    led.close()


def _spend(
    ledger: Ledger, clock: ManualClock, when: datetime, task: str, provider: str, usd: float
) -> None:
    clock.set(when)
    ledger.settle(task, 1, Usage(1000, 10), provider, "m", cost_usd=usd, tier="cloud")


def _seed(ledger: Ledger, clock: ManualClock) -> None:
    _spend(ledger, clock, datetime(2026, 2, 20, 12, 0, tzinfo=UTC), "long-ago", "openai", 7.0)
    _spend(ledger, clock, datetime(2026, 3, 7, 9, 0, tzinfo=UTC), "a", "openai", 1.25)
    _spend(ledger, clock, datetime(2026, 3, 7, 10, 0, tzinfo=UTC), "b", "anthropic", 0.5)
    # 23:30 UTC on the 8th is already the 9th in Paris.
    _spend(ledger, clock, datetime(2026, 3, 8, 23, 30, tzinfo=UTC), "c", "anthropic", 2.0)
    _spend(ledger, clock, datetime(2026, 3, 10, 8, 0, tzinfo=UTC), "d", "openai", 0.125)
    ledger.settle("local", 1, Usage(500, 50), "ollama", "qwen", cost_usd=0.0, tier="local")
    clock.set(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))


def test_the_chart_plots_the_ledgers_per_day_sums(ledger: Ledger, clock: ManualClock) -> None:
    _seed(ledger, clock)
    data = chart_data(ledger, 7, policy_caps({"p.arb": POLICY}))
    assert data.days == [f"2026-03-{d:02d}" for d in range(4, 11)]
    assert data.providers == ["anthropic", "ollama", "openai"]
    # Each day's bar is the ledger's own sum for that day.
    report = {row.key: row.cost_usd for row in ledger.spend_report(days=7, by="day").rows}
    assert dict(zip(data.days, data.totals(), strict=True)) == {
        day: pytest.approx(report.get(day, 0.0)) for day in data.days
    }
    assert data.usd["anthropic"] == [0, 0, 0, 0.5, 0, 2.0, 0]
    assert data.usd["openai"] == [0, 0, 0, 1.25, 0, 0, 0.125]
    assert data.cap is not None and (data.cap.limit, data.cap.rule) == (2.5, "DailySpendCap")


def _png_size(path: Path) -> tuple[int, int]:
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR"
    width, height = struct.unpack(">II", raw[16:24])
    return width, height


def test_draw_writes_a_png(ledger: Ledger, clock: ManualClock, tmp_path: Path) -> None:
    _seed(ledger, clock)
    out = tmp_path / "spend.png"
    draw(chart_data(ledger, 30, policy_caps({"p.arb": POLICY})), out)
    width, height = _png_size(out)
    assert width > 600 and height == 400
    import matplotlib.image

    pixels = matplotlib.image.imread(out)
    assert pixels.shape[:2] == (height, width)


def test_spend_chart_command(database_url: str, tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "policy.arb").write_text(POLICY, encoding="utf-8")
    ledger = Ledger(database_url)
    ledger.upgrade()
    ledger.settle("a", 1, Usage(1000, 10), "openai", "m", cost_usd=0.75, tier="cloud")
    ledger.close()
    env = {
        "SOVEREIGN_DATABASE_URL": database_url,
        "SOVEREIGN_POLICY_PATH": str(tmp_path / "rules"),
        "SOVEREIGN_PRICES_PATH": str(Path(__file__).resolve().parents[2] / "rules" / "prices.toml"),
    }
    out = tmp_path / "chart.png"
    result = CliRunner().invoke(cli, ["spend", "--chart", str(out), "--days", "5"], env=env)
    assert result.exit_code == 0, result.output
    assert f"wrote the spend chart of the last 5 days to {out}" in result.stdout
    assert _png_size(out)[1] == 400
    missing = tmp_path / "nowhere" / "chart.png"
    result = CliRunner().invoke(cli, ["spend", "--chart", str(missing)], env=env)
    assert result.exit_code == 1 and "does not exist" in result.stderr
