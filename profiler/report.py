"""How a prediction compares with measurement: the metrics every validation report prints, and its plot."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence

import numpy as np


def metrics(pred: Sequence[float], meas: Sequence[float]) -> Dict[str, float]:
    """R² of measured vs predicted (no fit), ratio (slope through the origin), MAPE, hit rates, Kendall τ."""
    from scipy.stats import kendalltau

    p, m = np.asarray(pred, float), np.asarray(meas, float)
    err = (p - m) / m
    ss_res, ss_tot = float(((m - p) ** 2).sum()), float(((m - m.mean()) ** 2).sum())
    worst = int(np.argmax(np.abs(err)))
    return {
        "n": int(len(p)), "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
        "ratio": float((m * p).sum() / (p * p).sum()), "mape_pct": float(np.abs(err).mean() * 100),
        "within_5_pct": float((np.abs(err) <= 0.05).mean() * 100),
        "within_10_pct": float((np.abs(err) <= 0.10).mean() * 100),
        "kendall_tau": float(kendalltau(p, m).statistic), "worst_error_pct": float(err[worst] * 100),
        "worst_index": worst,
    }


def plot(path: Path, pred, meas, title: str, same_run=None) -> None:
    """Predicted vs measured with y = x and the ±5 % band; ``same_run`` adds the predictions from the table
    re-measured in the same run (``--cycles``) as a second series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p, m = np.asarray(pred), np.asarray(meas)
    q = np.asarray(same_run if same_run is not None else pred)
    lo, hi = min(p.min(), q.min(), m.min()) * 0.95, max(p.max(), q.max(), m.max()) * 1.05
    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    xs = np.array([lo, hi])
    ax.fill_between(xs, xs * 0.95, xs * 1.05, color="tab:green", alpha=0.15, label="±5 %")
    ax.plot(xs, xs, "k--", lw=1, label="y = x")
    ax.scatter(p, m, s=14, color="tab:blue", label="networks, from the LUT")
    if same_run is not None:
        ax.scatter(q, m, s=14, marker="x", color="tab:orange", label="networks, from blocks re-measured in this run")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel("measured end-to-end latency (ms)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
