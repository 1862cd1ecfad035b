"""How the agent measures (warm-up and stopping rule); a LUT records the one it was measured with."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    """How the agent measures: warm-up, then interleaved rounds until each entry's CI is tight enough."""

    warmup_n: int = 5  # warm-up rounds, at least
    warmup_s: float = 1.0  # seconds of warm-up rounds, at least
    min_n: int = 30  # samples before the first stopping check
    target_ci: float = 0.01  # stop when the 95 % CI half-width of the median <= this fraction of it
    budget_s: float = 4.0  # seconds of timed calls per entry before giving up on the CI target
    max_n: int = 5000
    bootstrap: int = 1000  # bootstrap resamples for the reported CI
    seed: int = 0
    pin: str = "auto"  # cores to pin to: auto (the last ones), none, or a list like "2,3"
    pairs: int = 6  # block pairs measured per boundary shape (for the in-context correction)
    processes: int = 20  # worker processes, one after another, whose samples are pooled (1: one adaptive process)
    rounds: int = 40  # interleaved rounds each worker times
    max_processes: int = 40  # more workers, for entries still above target_ci after `processes`
