"""When a relaxed searcher may stop before its step cap: the discrete argmax settled, or the Frank-Wolfe gap closed.

With a stochastic oracle (search/oracle.py) a fixed step count is the wrong unit of work: the relaxed point keeps
moving by ever smaller steps long after the architecture it decodes to (HardCoRe-NAS eq. (12), the argmax of α and
β) has stopped changing, and every step costs a supernet pass. Two rules, either ends the loop:

* **argmax unchanged** for ``patience`` consecutive steps (after at least ``min_steps``): the searchers end with a
  discrete step (polish.py) from the relaxed point, which a point decoding to the same architecture feeds alike;
* **Frank-Wolfe gap** g_t = ⟨d_t, ζ_t − ξ_t⟩ (d_t the searcher's gradient estimate, ξ_t the LP vertex; BCSFW only)
  at most ``gap_tol`` times |f(ζ_t)|, averaged over the last ``patience`` steps (one noisy estimate proves nothing).
  g_t ≥ f(ζ_t) − f* for a convex f on the block's feasible set, so a small gap bounds the loss still to gain there.

The argmax is the decoded architecture for BCSFW, CONNAS and DCA; for the hypernetwork it is its whole family on a
coarse grid of S, restricted to the groups it has decided (``decided``), and "unchanged" allows 10 % of those choices
to differ (``tolerance``): its Gumbel-sampled training keeps flipping some of them to the end.

``patience=0`` turns both rules off: the step cap alone, as before. The searchers default to the rule their oracle
asks for (``default_patience``): ``SupernetOracle.patience``, and 0 for analytic objectives, whose results (and the
golden tests) stay as they were. Every searcher reports ``steps_used`` and ``stopped`` (why) in its info.
"""
from __future__ import annotations

from collections import deque
from typing import Deque, Optional

import numpy as np

# the supernet oracle's defaults for its searchers (search/oracle.py), chosen in docs/BENCHMARKS.md
ORACLE_PATIENCE = 12  # steps with the argmax unchanged
# the final local search (polish.py; 64, 8 and no stall else): until no move improves, its model taken again after
# POLISH_STALL evaluations in a row without improvement (docs/BENCHMARKS.md, issue 17, 2026-11-30 evening)
POLISH_EVALS, POLISH_PATIENCE, POLISH_STALL = 500, 200, 20


def default_patience(objective, patience: Optional[int] = None) -> int:
    """``patience`` if given, else the objective's own ``patience`` attribute, else 0 (no early stop)."""
    if patience is not None:
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience!r}")
        return int(patience)
    return int(getattr(objective, "patience", 0) or 0)


class Stopping:
    """Tracks a searcher's loop; ``update`` after each step says whether to stop, ``info`` says why it stopped.

    Args:
        patience: steps the argmax must stay unchanged (0: never stop early).
        min_steps: no early stop before this many steps (a schedule's warm-up, say).
        gap_tol: stop when the mean Frank-Wolfe gap of the last ``patience`` steps is ≤ gap_tol · |f| (0: off).
        tolerance: with array keys (many choices, e.g. a hypernetwork's whole family), "unchanged" means at most
            this fraction of the choices differs from where the unchanged run began.
    """

    def __init__(self, patience: int = 0, min_steps: int = 0, gap_tol: float = 0.0, tolerance: float = 0.0):
        if patience < 0 or min_steps < 0 or gap_tol < 0 or not 0 <= tolerance < 1:
            raise ValueError(f"need patience, min_steps, gap_tol >= 0 and 0 <= tolerance < 1; got {patience}, "
                             f"{min_steps}, {gap_tol}, {tolerance}")
        self.patience, self.min_steps, self.gap_tol, self.tolerance = patience, min_steps, gap_tol, tolerance
        self.anchor = None  # the argmax where the current unchanged run began
        self.same = 0  # steps since then
        self.gaps: Deque[float] = deque(maxlen=max(patience, 1))
        self.steps = 0
        self.reason = "step cap"

    def update(self, argmax_key, gap: Optional[float] = None, loss: Optional[float] = None) -> bool:
        """Record one finished step (its argmax architecture as a string, or an array of choices; optionally its FW
        gap and loss); True when the loop should end here."""
        self.steps += 1
        if self.anchor is not None and self._changed(argmax_key) <= self.tolerance:
            self.same += 1
        else:
            self.anchor, self.same = argmax_key, 0
        if gap is not None:
            self.gaps.append(float(gap))
        if not self.patience or self.steps < max(self.min_steps, self.patience):
            return False
        if self.same >= self.patience:
            self.reason = f"argmax unchanged for {self.patience} steps"
            return True
        if self.gap_tol and loss is not None and len(self.gaps) == self.gaps.maxlen:
            mean = sum(self.gaps) / len(self.gaps)
            if mean <= self.gap_tol * max(abs(loss), 1e-12):
                self.reason = f"Frank-Wolfe gap {mean:.3g} <= {self.gap_tol:g} x |f|"
                return True
        return False

    def _changed(self, key) -> float:
        if isinstance(key, str):
            return float(key != self.anchor)
        return float(np.mean(np.asarray(key) != np.asarray(self.anchor)))

    def info(self) -> dict:
        return {"steps_used": self.steps, "stopped": self.reason, "patience": self.patience}


def decided(logits: np.ndarray, at: float = 0.5) -> np.ndarray:
    """Each group's (last axis) argmax where its softmax gives it probability ≥ ``at``, else −1, flattened: the key of
    a family of distributions (hypernet.py) whose undecided groups — near uniform under an entropy bonus, where the
    task is indifferent — flip their argmax at every step without meaning anything."""
    z = logits - logits.max(-1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    return np.where(p.max(-1) >= at, p.argmax(-1), -1).ravel()
