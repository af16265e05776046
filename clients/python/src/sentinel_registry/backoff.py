"""Exponential backoff with full jitter, as the TypeScript client does it.

The wait before retry ``attempt`` (0-based) is drawn uniformly from
``[0, min(max_s, base_s * multiplier ** attempt))`` ("Exponential Backoff And
Jitter", AWS Architecture Blog, 2015). Full jitter rather than a fixed
schedule because every worker of a fleet sees a registry restart at the same
instant; a shared schedule would bring them all back in the same millisecond.
"""

from __future__ import annotations

import random as _random
from dataclasses import dataclass, field
from typing import Callable

RandomSource = Callable[[], float]
"""A source of uniform floats in [0, 1), like ``random.random``."""


@dataclass(frozen=True)
class Backoff:
    """A backoff policy. Times are in seconds.

    Raises:
        ValueError: unless 0 <= base_s <= max_s and multiplier >= 1.
    """

    base_s: float
    """Ceiling of the first wait (attempt 0)."""
    max_s: float
    """The ceiling never grows past this."""
    multiplier: float = 2.0
    random: RandomSource = field(default=_random.random, compare=False)
    """Uniform source in [0, 1); injected so that tests can fix the schedule."""

    def __post_init__(self) -> None:
        if not (0 <= self.base_s <= self.max_s) or not self.multiplier >= 1:
            raise ValueError(
                "backoff must satisfy 0 <= base_s <= max_s and multiplier >= 1, "
                f"got base_s={self.base_s} max_s={self.max_s} multiplier={self.multiplier}"
            )

    def ceiling_s(self, attempt: int) -> float:
        """The largest wait before retry ``attempt``: ``min(max_s, base_s * multiplier ** attempt)``."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        # Past ~1000 attempts the power overflows; the cap still holds.
        try:
            return min(self.max_s, self.base_s * self.multiplier**attempt)
        except OverflowError:
            return self.max_s

    def delay_s(self, attempt: int) -> float:
        """The wait before retry ``attempt``, drawn with full jitter."""
        draw = self.random()
        if not 0 <= draw < 1:
            raise ValueError(f"random source must return a number in [0, 1), got {draw}")
        return draw * self.ceiling_s(attempt)
