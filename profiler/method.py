"""How the agent measures (warm-up, timing mode and stopping rule); a LUT records the one it was measured with."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    """How the agent measures: warm-up, then rounds until each entry's CI is tight enough.

    ``mode`` interleaved (the default: one call per entry per round, caches hold another model at every call) or
    steady (warm bursts of one entry, their first calls dropped). Whole networks read the same both ways within 2 %
    in one run here, and interleaved more repeatably (docs/latency-model.md, section 4); see the agent's docstring.
    """

    # -- issue 18: the timing mode (a LUT without it was measured interleaved) --
    mode: str = "interleaved"
    burst: int = 10  # steady: consecutive calls of one entry per sample
    burst_warmup: int = 3  # steady: first calls of a burst dropped (caches still hold the previous entry)
    # --

    warmup_n: int = 2  # warm-up rounds, at least (a session's first round read 3.5x, its second 2x, then steady)
    warmup_s: float = 0.0  # seconds of warm-up rounds, at least
    min_n: int = 30  # samples before the first stopping check
    target_ci: float = 0.01  # stop when the 95 % CI half-width of the median <= this fraction of it
    budget_s: float = 4.0  # seconds of timed calls per entry before giving up on the CI target
    max_n: int = 5000
    bootstrap: int = 1000  # bootstrap resamples for the reported CI
    seed: int = 0
    pin: str = "auto"  # cores to pin to: auto (the last ones), none, or a list like "2,3"
    pairs: int = 6  # block pairs measured per boundary shape (for the in-context correction)
    # worker processes, one after another, whose samples are pooled (1: one adaptive process). 10 x 80, not 20 x 40:
    # each process costs ~1.6 s outside timed calls, and on the VM here a worker's common shift is mostly the host's
    # second-to-second speed (it changes within a worker as much as between workers), which the run's length, not
    # the number of processes, averages; the per-process part is ~3 % sd (docs/BENCHMARKS.md, issue 18)
    processes: int = 10
    rounds: int = 80  # rounds each worker times (a burst, or one call, per entry per round)
    max_processes: int = 20  # more workers, for entries still above target_ci after `processes`
    # start each worker on the other cores while the one before measures (issue 18): 12 % of a profile's wall time
    # saved here, but the measuring worker reads 3-5 % slow while the next one loads (benchmarks/bench_ahead.py)
    prepare_ahead: bool = False
    # validate's same-run table (issue 18), k >= 1: each round times one kind of entry after the other (blocks, then
    # networks), each in a fresh random order, in the same worker, and the blocks only every k-th round: blocks and
    # networks read the host's speed of the same seconds (the agent's round_order); 0: all entries in one order
    phases: int = 0

    @classmethod
    def preset(cls, mode: str = "interleaved", **changes) -> "Method":
        """The defaults of a timing mode: interleaved as the dataclass says (10 workers x 80 rounds: one call per
        sample needs many samples, and processes, to average cache states out); steady: 3 workers x 30 bursts."""
        if mode == "steady":
            changes = dict(dict(warmup_n=1, warmup_s=0.0, processes=3, rounds=30, max_processes=6), **changes)
        elif mode != "interleaved":
            raise ValueError(f"unknown timing mode {mode!r}; expected 'steady' or 'interleaved'")
        return cls(mode=mode, **changes)

    @classmethod
    def from_dict(cls, d: dict) -> "Method":
        """The method a LUT records; one from before timing modes existed was measured interleaved."""
        return cls(**dict({"mode": "interleaved"}, **{k: v for k, v in d.items() if k in cls.__dataclass_fields__}))
