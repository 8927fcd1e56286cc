"""Token usage of one model call, as the provider reported it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

# How a provider counts cached input. OpenAI counts cached tokens inside the prompt tokens;
# Anthropic reports cache reads and cache writes apart from ``input_tokens``.
CacheConvention = Literal["included", "separate"]


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one call. ``input_tokens`` is what the provider reported as input."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    convention: CacheConvention = "included"

    @property
    def uncached_input_tokens(self) -> int:
        """Input tokens billed at the full input price."""
        if self.convention == "included":
            return max(0, self.input_tokens - self.cached_tokens - self.cache_write_tokens)
        return self.input_tokens

    @property
    def total_input_tokens(self) -> int:
        """Every input token, cached or not."""
        if self.convention == "included":
            return self.input_tokens
        return self.input_tokens + self.cached_tokens + self.cache_write_tokens

    @property
    def total_tokens(self) -> int:
        return self.total_input_tokens + self.output_tokens

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Usage:
        return cls(
            input_tokens=int(data.get("input_tokens") or 0),
            output_tokens=int(data.get("output_tokens") or 0),
            cached_tokens=int(data.get("cached_tokens") or 0),
            cache_write_tokens=int(data.get("cache_write_tokens") or 0),
            convention=data.get("convention", "included"),
        )
