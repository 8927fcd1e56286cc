"""The price table: seed prices, cost per cache convention, upper bounds, bad files."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from arbiter.errors import ConfigError, PriceMissing
from arbiter.ledger.prices import PriceTable
from arbiter.usage import Usage

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "rules" / "prices.toml"

ENTRY = """
[anthropic."claude-sonnet-4-5"]
input = 3.00
output = 15.00
cached_input = 0.30
cache_write = 3.75
source = "https://platform.claude.com/docs/en/about-claude/pricing"
date = "2026-11-24"
"""


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.load(SEED)


@pytest.mark.parametrize(
    ("provider", "model", "inp", "out"),
    [
        ("anthropic", "claude-sonnet-4-5", "3", "15"),
        ("anthropic", "claude-sonnet-4-6", "3", "15"),
        ("anthropic", "claude-opus-4-5", "5", "25"),
        ("anthropic", "claude-haiku-4-5", "1", "5"),
        ("openai", "gpt-5.4", "2.5", "15"),
        ("openai", "gpt-5.4-mini", "0.75", "4.5"),
        ("openai", "gpt-5.4-nano", "0.2", "1.25"),
    ],
)
def test_seed_prices(table: PriceTable, provider: str, model: str, inp: str, out: str) -> None:
    price = table.price(provider, model)
    assert (price.input, price.output) == (Decimal(inp), Decimal(out))
    assert price.source.startswith("https://")
    assert len(price.date) == 10


def test_aliases_share_the_entry(table: PriceTable) -> None:
    assert table.price("anthropic", "claude-sonnet-4-5-20250929") == table.price(
        "anthropic", "claude-sonnet-4-5"
    )


def test_anthropic_cache_reads_and_writes_are_apart_from_input(table: PriceTable) -> None:
    price = table.price("anthropic", "claude-sonnet-4-5")
    usage = Usage(1000, 500, cached_tokens=2000, cache_write_tokens=100, convention="separate")
    # 1000*3 + 2000*0.30 + 100*3.75 + 500*15 = 11475 per million
    assert PriceTable.cost_nusd(price, usage) == 11_475_000
    assert PriceTable.cost(price, usage) == pytest.approx(0.011475)


def test_openai_cached_tokens_are_inside_prompt_tokens(table: PriceTable) -> None:
    price = table.price("openai", "gpt-5.4-nano")
    usage = Usage(1000, 500, cached_tokens=400, convention="included")
    # 600*0.20 + 400*0.02 + 500*1.25 = 753 per million
    assert PriceTable.cost_nusd(price, usage) == 753_000


def test_estimate_is_an_upper_bound_of_any_real_cost(table: PriceTable) -> None:
    price = table.price("anthropic", "claude-sonnet-4-5")
    bound = PriceTable.estimate_nusd(price, 1000, 200)
    for usage in (
        Usage(1000, 200, convention="separate"),
        Usage(0, 200, cache_write_tokens=1000, convention="separate"),
        Usage(500, 200, cached_tokens=500, convention="separate"),
    ):
        assert PriceTable.cost_nusd(price, usage) <= bound
    assert bound == 1000 * 3750 + 200 * 15000  # input at the dearest (cache-write) rate


def test_local_models_are_free_without_an_entry(table: PriceTable) -> None:
    assert table.price("ollama", "qwen2.5:14b", "local").free
    assert table.price("embedded", "smollm2-135m").free
    assert table.price("openai_compat", "anything", "local").free


def test_cloud_model_without_price_names_the_file_and_model(table: PriceTable) -> None:
    with pytest.raises(PriceMissing) as caught:
        table.price("openai", "gpt-9", "cloud")
    message = str(caught.value)
    assert "openai/gpt-9" in message and str(SEED) in message
    assert "\n" not in message
    assert table.missing([{"tier": "cloud", "provider": "openai", "model": "gpt-9"}]) == [
        "openai/gpt-9"
    ]


def _load(tmp_path: Path, text: str) -> str:
    path = tmp_path / "prices.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        PriceTable.load(path)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    message = _load(tmp_path, ENTRY + '\n[openai."gpt-5.4"]\ninput = 2.50 USD\n')
    assert message.startswith(f"{tmp_path / 'prices.toml'}:11:"), message


def test_unknown_field_names_its_line(tmp_path: Path) -> None:
    message = _load(tmp_path, ENTRY.replace("output = 15.00", "output = 15.00\ncahced = 0.3"))
    assert f"{tmp_path / 'prices.toml'}:5:" in message and "cahced" in message


def test_negative_price_names_its_line(tmp_path: Path) -> None:
    message = _load(tmp_path, ENTRY.replace("output = 15.00", "output = -15.00"))
    assert message.startswith(f"{tmp_path / 'prices.toml'}:4:") and "negative" in message


def test_missing_source_names_the_entry(tmp_path: Path) -> None:
    text = ENTRY.replace(
        'source = "https://platform.claude.com/docs/en/about-claude/pricing"\n', ""
    )
    message = _load(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'prices.toml'}:2:") and "'source'" in message


def test_bad_date_and_non_numeric_price(tmp_path: Path) -> None:
    assert "date" in _load(tmp_path, ENTRY.replace('"2026-11-24"', '"last week"'))
    assert ":3:" in _load(tmp_path, ENTRY.replace("input = 3.00", 'input = "3"'))


def test_missing_file_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the price table"):
        PriceTable.load(tmp_path / "nope.toml")
