"""The price table: USD per million tokens for each cloud model, from ``rules/prices.toml``.

Local providers cost nothing unless the table says otherwise. A cloud model without an
entry has no price and is never dispatched. Costs are computed exactly (prices are read as
decimals) in whole nano-dollars, rounded up.
"""

from __future__ import annotations

import functools
import math
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from arbiter.errors import ConfigError, PriceMissing
from arbiter.ledger.models import NANO
from arbiter.usage import Usage

LOCAL_PROVIDERS = frozenset({"ollama", "openai_compat", "embedded", "fake", "local"})
PRICE_FIELDS = ("input", "output", "cached_input", "cache_write")
# Long-context pricing: past ``long_above`` input tokens, a request's input is billed at
# ``long_input`` and its output at ``long_output`` (cached rates scale like input).
LONG_FIELDS = ("long_above", "long_input", "long_output")
ENTRY_FIELDS = frozenset(
    {
        *PRICE_FIELDS,
        *LONG_FIELDS,
        "source",
        "date",
        "aliases",
        "note",
        "max_output",
        "limits_source",
    }
)
_PER_TOKEN_NANO = Decimal(NANO) / Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens of one model."""

    provider: str
    model: str
    input: Decimal
    output: Decimal
    cached_input: Decimal
    cache_write: Decimal
    source: str = ""
    date: str = ""
    max_output: int | None = None  # the model's output limit, in tokens
    long_above: int | None = None
    long_input: Decimal | None = None
    long_output: Decimal | None = None

    @property
    def free(self) -> bool:
        return not any((self.input, self.output, self.cached_input, self.cache_write))

    def for_input(self, input_tokens: int) -> Price:
        """The rates that apply to a request of ``input_tokens`` (long-context pricing)."""
        if self.long_above is None or input_tokens <= self.long_above:
            return self
        scale = (self.long_input / self.input) if self.long_input and self.input else Decimal(1)
        return Price(
            self.provider,
            self.model,
            max(self.input, self.long_input or self.input),
            max(self.output, self.long_output or self.output),
            self.cached_input * max(scale, Decimal(1)),
            self.cache_write * max(scale, Decimal(1)),
            self.source,
            self.date,
            self.max_output,
        )


@functools.lru_cache(maxsize=256)
def free_price(provider: str, model: str) -> Price:
    """The price of a local model without an entry."""
    zero = Decimal(0)
    return Price(provider, model, zero, zero, zero, zero, source="local", date="")


def _nusd(amount: Decimal) -> int:
    return math.ceil(amount * _PER_TOKEN_NANO)


@dataclass(frozen=True)
class PriceTable:
    """Prices by ``(provider, model)``; aliases point at the same entry."""

    path: Path
    prices: dict[tuple[str, str], Price] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> PriceTable:
        """Read and validate a price file; any problem is a ConfigError naming file and line."""
        return cls(Path(path), _parse(Path(path)))

    @classmethod
    def empty(cls, path: str | Path = "rules/prices.toml") -> PriceTable:
        return cls(Path(path), {})

    def lookup(self, provider: str, model: str) -> Price | None:
        """The entry for this model, or None."""
        return self.prices.get((provider, model))

    def price(self, provider: str, model: str, tier: str | None = None) -> Price:
        """The price of a route; local models are free without an entry."""
        found = self.prices.get((provider, model))
        if found is not None:
            return found
        if tier == "local" or (tier is None and provider in LOCAL_PROVIDERS):
            return free_price(provider, model)
        raise PriceMissing(
            f"the cloud model {provider}/{model} has no price, so it is never dispatched; "
            f'add [{provider}."{model}"] with its source and date to {self.path}'
        )

    def missing(self, routes: list[dict[str, Any]]) -> list[str]:
        """``provider/model`` of every cloud route without a price (to check a policy)."""
        names = []
        for route in routes:
            provider, model = str(route.get("provider")), str(route.get("model"))
            try:
                self.price(provider, model, route.get("tier"))
            except PriceMissing:
                names.append(f"{provider}/{model}")
        return names

    @staticmethod
    def cost_nusd(price: Price, usage: Usage) -> int:
        """What a call cost, in nano-dollars, following the usage's cache convention."""
        price = price.for_input(usage.total_input_tokens)
        return _nusd(
            usage.uncached_input_tokens * price.input
            + usage.cached_tokens * price.cached_input
            + usage.cache_write_tokens * price.cache_write
            + usage.output_tokens * price.output
        )

    @staticmethod
    def estimate_nusd(price: Price, input_tokens: int, max_tokens: int) -> int:
        """An upper bound: every input token at its dearest rate, plus ``max_tokens`` out
        (at long-context rates when the input may reach them)."""
        price = price.for_input(input_tokens)
        dearest = max(price.input, price.cached_input, price.cache_write)
        return _nusd(max(0, input_tokens) * dearest + max(0, max_tokens) * price.output)

    @classmethod
    def cost(cls, price: Price, usage: Usage) -> float:
        """What a call cost, in USD."""
        return cls.cost_nusd(price, usage) / NANO

    @classmethod
    def estimate(cls, price: Price, input_tokens: int, max_tokens: int) -> float:
        """The reservation for a call, in USD."""
        return cls.estimate_nusd(price, input_tokens, max_tokens) / NANO


# --- parsing ------------------------------------------------------------------------------

_HEADER = re.compile(r"^\s*\[(?!\[)(?P<key>[^\]]*)\]\s*(#.*)?$")
_KEY_PART = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|([A-Za-z0-9_-]+))\s*(\.|$)')


def _split_key(text: str) -> tuple[str, ...] | None:
    parts: list[str] = []
    pos = 0
    while pos < len(text):
        match = _KEY_PART.match(text, pos)
        if match is None:
            return None
        parts.append(next(g for g in match.groups()[:3] if g is not None))
        pos = match.end()
    return tuple(parts)


def _header_lines(text: str) -> dict[tuple[str, ...], int]:
    """Line number of each ``[table]`` header, by its key path."""
    lines: dict[tuple[str, ...], int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        match = _HEADER.match(line)
        if match:
            key = _split_key(match.group("key"))
            if key is not None:
                lines.setdefault(key, number)
    return lines


def _field_line(text: str, start: int, name: str) -> int:
    """Line of ``name = ...`` at or after line ``start``, else ``start``."""
    pattern = re.compile(rf"^\s*[\"']?{re.escape(name)}[\"']?\s*=")
    for number, line in enumerate(text.splitlines()[start - 1 :], start=start):
        if number > start and _HEADER.match(line):
            break
        if pattern.match(line):
            return number
    return start


def _parse(path: Path) -> dict[tuple[str, str], Price]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read the price table {path} ({exc.strerror}); "
            "create it or set SOVEREIGN_PRICES_PATH"
        ) from None
    try:
        data = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None) or _line_from_message(str(exc))
        message = str(exc).split(" (at line")[0].strip().rstrip(".")
        raise ConfigError(
            f"{path}:{line}: {message[0].lower() + message[1:]}; fix the TOML syntax"
        ) from None
    headers = _header_lines(text)
    prices: dict[tuple[str, str], Price] = {}
    for provider, models in data.items():
        provider_line = headers.get((provider,), 1)
        if not isinstance(models, dict):
            raise ConfigError(
                f"{path}:{_field_line(text, 1, provider)}: {provider!r} must be a table of "
                f'models such as [{provider}."model-id"]'
            )
        for model, entry in models.items():
            line = headers.get((provider, model), provider_line)
            price = _entry(path, text, line, provider, model, entry)
            for name in (model, *price_aliases(entry)):
                if (provider, name) in prices:
                    raise ConfigError(f"{path}:{line}: {provider}/{name} is priced twice")
                prices[(provider, name)] = price
    return prices


def _line_from_message(message: str) -> int:
    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else 1


def price_aliases(entry: dict[str, Any]) -> list[str]:
    aliases = entry.get("aliases", [])
    return [str(a) for a in aliases] if isinstance(aliases, list) else []


def _entry(path: Path, text: str, line: int, provider: str, model: str, entry: Any) -> Price:
    where = f"{path}:{line}"
    name = f"{provider}/{model}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: the price of {name} must be a table of fields")
    unknown = sorted(set(entry) - ENTRY_FIELDS)
    if unknown:
        at = _field_line(text, line, unknown[0])
        raise ConfigError(
            f"{path}:{at}: unknown field {unknown[0]!r} in the price of {name}; "
            f"use {', '.join(sorted(ENTRY_FIELDS))}"
        )
    for required in ("input", "output", "source", "date"):
        if required not in entry:
            raise ConfigError(f"{where}: the price of {name} lacks {required!r}; add it")
    values: dict[str, Decimal] = {}
    for key in PRICE_FIELDS:
        raw = entry.get(key, entry["input"])
        at = _field_line(text, line, key)
        if isinstance(raw, bool) or not isinstance(raw, int | Decimal):
            raise ConfigError(f"{path}:{at}: {key} of {name} must be a number of USD per million")
        if raw < 0:
            raise ConfigError(f"{path}:{at}: {key} of {name} is negative; prices are >= 0")
        values[key] = Decimal(raw)
    source, when = entry["source"], entry["date"]
    if not isinstance(source, str) or not source.strip():
        at = _field_line(text, line, "source")
        raise ConfigError(f"{path}:{at}: source of {name} must name the page the price is from")
    if isinstance(when, date):
        when = when.isoformat()
    if not isinstance(when, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", when):
        at = _field_line(text, line, "date")
        raise ConfigError(f"{path}:{at}: date of {name} must be a date such as 2026-01-31")
    aliases = entry.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        at = _field_line(text, line, "aliases")
        raise ConfigError(f"{path}:{at}: aliases of {name} must be a list of model ids")
    limits = _limits(path, text, line, name, entry)
    return Price(
        provider,
        model,
        values["input"],
        values["output"],
        values["cached_input"],
        values["cache_write"],
        source=source,
        date=when,
        **limits,
    )


def _limits(path: Path, text: str, line: int, name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """The output limit (with its source) and long-context rates of an entry."""
    out: dict[str, Any] = {}
    for key in ("max_output", "long_above"):
        raw = entry.get(key)
        if raw is None:
            continue
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
            at = _field_line(text, line, key)
            raise ConfigError(f"{path}:{at}: {key} of {name} must be a whole number of tokens")
        out[key] = raw
    if "max_output" in out:
        source = entry.get("limits_source")
        if not isinstance(source, str) or not source.strip():
            raise ConfigError(
                f"{path}:{line}: the output limit of {name} lacks 'limits_source'; "
                "name the page it is from"
            )
    for key in ("long_input", "long_output"):
        raw = entry.get(key)
        if raw is None:
            continue
        if isinstance(raw, bool) or not isinstance(raw, int | Decimal) or raw < 0:
            at = _field_line(text, line, key)
            raise ConfigError(f"{path}:{at}: {key} of {name} must be a number of USD per million")
        out[key] = Decimal(raw)
    if ("long_above" in out) != ("long_input" in out and "long_output" in out):
        raise ConfigError(
            f"{path}:{line}: long-context pricing of {name} needs long_above, long_input and "
            "long_output together"
        )
    return out
