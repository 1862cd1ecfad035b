"""How the agent measures (warm-up, timing mode and stopping rule); a LUT records the one it was measured with."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    """How the agent measures: warm-up, then rounds until each entry's CI is tight enough.

    ``mode`` steady (the default: warm bursts of one entry, their first calls dropped, the time a deployed model
    sees) or interleaved (one call per entry per round: caches hold another model at every call); see the agent's
    docstring and docs/latency-model.md.
    """

    # -- issue 18: the timing mode (a LUT without it was measured interleaved) --
    mode: str = "steady"
    burst: int = 10  # steady: consecutive calls of one entry per sample
    burst_warmup: int = 3  # steady: first calls of a burst dropped (caches still hold the previous entry)
    # --

    warmup_n: int = 1  # warm-up rounds, at least (steady: each burst's dropped first calls warm its entry again)
    warmup_s: float = 0.0  # seconds of warm-up rounds, at least
    min_n: int = 30  # samples before the first stopping check
    target_ci: float = 0.01  # stop when the 95 % CI half-width of the median <= this fraction of it
    budget_s: float = 4.0  # seconds of timed calls per entry before giving up on the CI target
    max_n: int = 5000
    bootstrap: int = 1000  # bootstrap resamples for the reported CI
    seed: int = 0
    pin: str = "auto"  # cores to pin to: auto (the last ones), none, or a list like "2,3"
    pairs: int = 6  # block pairs measured per boundary shape (for the in-context correction)
    processes: int = 3  # worker processes, one after another, whose samples are pooled (1: one adaptive process)
    rounds: int = 30  # rounds each worker times (a burst, or one call, per entry per round)
    max_processes: int = 6  # more workers, for entries still above target_ci after `processes`

    @classmethod
    def preset(cls, mode: str = "steady", **changes) -> "Method":
        """The defaults of a timing mode: steady as the dataclass says; interleaved as before issue 18 (20 workers
        x 40 rounds: one call per sample needs many more samples, and processes, to average cache states out)."""
        if mode == "interleaved":
            changes = dict(dict(warmup_n=5, warmup_s=1.0, processes=20, rounds=40, max_processes=40), **changes)
        elif mode != "steady":
            raise ValueError(f"unknown timing mode {mode!r}; expected 'steady' or 'interleaved'")
        return cls(mode=mode, **changes)

    @classmethod
    def from_dict(cls, d: dict) -> "Method":
        """The method a LUT records; one from before timing modes existed was measured interleaved."""
        return cls(**dict({"mode": "interleaved"}, **{k: v for k, v in d.items() if k in cls.__dataclass_fields__}))
