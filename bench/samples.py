"""The samples of one host count, kept in the order they were taken, and their statistics
(median, largest); RESULTS.json holds them raw."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

# A figure a round may not have (a run that reported no round trips): None, left out of the
# statistics.
Sample = float | None


@dataclass
class Samples:
    """Every measurement of one host count, by key (`hadeploy_cold`, `floor`, ...)."""

    hosts: int
    runs: int
    data: dict[str, list[Sample]] = field(default_factory=dict)

    def add(self, key: str, value: Sample) -> None:
        """Record one sample."""
        self.data.setdefault(key, []).append(value)

    def median(self, key: str) -> float:
        """Median of the samples of `key` (NaN when there are none)."""
        values = [v for v in self.data.get(key, []) if v is not None]
        return statistics.median(values) if values else float("nan")

    def most(self, key: str) -> float:
        """Largest sample of `key` (NaN when there are none)."""
        values = [v for v in self.data.get(key, []) if v is not None]
        return max(values) if values else float("nan")
