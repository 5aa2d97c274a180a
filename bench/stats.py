"""Medians and spread of repeated measurements."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float
    runs: int

    def format(self, digits: int = 0, unit: str = "") -> str:
        """``median (low–high)``, or the value alone for a single run."""
        text = f"{self.median:,.{digits}f}{unit}"
        if self.runs > 1:
            text += f" ({self.low:,.{digits}f}–{self.high:,.{digits}f})"
        return text

    def format_percent(self) -> str:
        text = f"{self.median:.1%}"
        if self.runs > 1:
            text += f" ({self.low:.1%}–{self.high:.1%})"
        return text


def spread(values: Sequence[float]) -> Spread:
    if not values:
        raise ValueError("spread() needs at least one value")
    return Spread(statistics.median(values), min(values), max(values), len(values))


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile, ``fraction`` from 0 to 1."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile() needs at least one value")
    index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
    return ordered[index]
