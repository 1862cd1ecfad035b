"""Accuracy surrogate on the NAS-Bench-201 cell space, fitted on K sampled architectures (predictor-based NAS).

The cell (Dong & Yang, NAS-Bench-201, ICLR 2020) is a DAG of 4 nodes; node j sums ``op_e(node i)`` over its edges
``e = (j <- i)``. Edge order (NB201 strings): 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2; op order: none, skip_connect,
nor_conv_1x1, nor_conv_3x3, avg_pool_3x3. An architecture is an (6,) int vector of op indices; its relaxation is
``alpha`` (6, 5), a distribution over ops per edge (one-hot at a discrete architecture).

Features (``cell_features``) are smooth functions of ``alpha`` that equal the discrete cell's properties at one-hot
``alpha``: the edge-ops, the 4 input->output paths (0-3, 0-1-3, 0-2-3, 0-1-2-3) with whether each is live (no
``none`` on it) and its op counts, the ops on live edges (an edge no live path uses is dead), whether the cell is
connected, whether a pure-skip path exists, and the deepest conv chain. Known NB201 structure (accuracy rises with
3x3 convs on live paths, collapses for a disconnected cell, a residual path helps) is then linear or nearly so in
the features.

The model is a blend of gradient-boosted trees (several subsample seeds) and small MLPs trained with squared error
plus a pairwise logistic ranking loss (RankNet, Burges et al. 2005), the ordering being what a constrained argmax
depends on. The blend weight is picked by K-fold cross-validated Kendall tau on the K rows only. Since the space is
finite, the fitted model is tabulated over all 15,625 cells; ``AccuracySurrogate`` is a ``torch.nn.Module`` whose
forward is the table's multilinear extension in ``alpha`` (differentiable, equal to the prediction at one-hot
``alpha``) for the gradient searchers, and ``predict`` / ``predict_all`` serve exhaustive search.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import numpy as np
import torch

from profiler.nb201 import EDGES as SPACE_EDGES
from profiler.nb201 import N_EDGES, N_OPS, OPS

EDGES = tuple((to, src) for src, to in SPACE_EDGES)  # (to, from), NB201 string order
NONE, SKIP, CONV1, CONV3, POOL = range(N_OPS)
# input->output paths as edge indices: 0-3, 0-1-3, 0-2-3, 0-1-2-3
PATHS = ((3,), (0, 4), (1, 5), (0, 2, 5))


def all_archs() -> np.ndarray:
    """All 5**6 = 15,625 architectures as an (15625, 6) int array, the first edge varying slowest."""
    return np.array(list(itertools.product(range(N_OPS), repeat=N_EDGES)), dtype=np.int64)


def one_hot(archs) -> torch.Tensor:
    """(N, 6) op indices -> (N, 6, 5) float64 one-hot ``alpha``."""
    a = torch.as_tensor(np.asarray(archs), dtype=torch.long)
    if a.ndim != 2 or a.shape[1] != N_EDGES:
        raise ValueError(f"archs must be (N, {N_EDGES}) op indices, got shape {tuple(a.shape)}")
    if a.numel() and (a.min() < 0 or a.max() >= N_OPS):
        raise ValueError(f"op indices must lie in 0..{N_OPS - 1}, got {int(a.min())}..{int(a.max())}")
    return torch.nn.functional.one_hot(a, N_OPS).to(torch.float64)


def feature_names() -> list:
    """Names of ``cell_features``' columns, in order."""
    names = [f"e{e}:{op}" for e in range(N_EDGES) for op in OPS]
    for p in PATHS:
        tag = "path" + "".join(str(EDGES[e][1]) for e in p) + "3"
        names += [f"{tag}:live", *(f"{tag}:{OPS[o]}" for o in (SKIP, CONV1, CONV3, POOL)), f"{tag}:identity"]
    names += [f"e{e}:effective" for e in range(N_EDGES)]
    names += [f"live:{OPS[o]}" for o in (SKIP, CONV1, CONV3, POOL)]
    return names + ["connected", "conv_depth", "live:nor_conv_3x3^2"]


def cell_features(alpha: torch.Tensor) -> torch.Tensor:
    """(N, 6, 5) op distributions -> (N, F) features; exact cell properties at one-hot ``alpha``, smooth between.

    Columns as named by ``feature_names()``: edge-ops; per path: live, its skip/1x1/3x3/pool counts when live, all
    skip; per edge: on a live path; op counts over such edges; connected; longest conv chain; squared live 3x3 count.
    """
    live_e = 1.0 - alpha[:, :, NONE]  # edge carries something
    paths_live = [torch.stack([live_e[:, e] for e in p], 1).prod(1) for p in PATHS]
    feats = [alpha.reshape(len(alpha), -1)]
    depth = []
    for p, live in zip(PATHS, paths_live):
        counts = [live * alpha[:, list(p), o].sum(1) for o in (SKIP, CONV1, CONV3, POOL)]
        identity = torch.stack([alpha[:, e, SKIP] for e in p], 1).prod(1, keepdim=True)
        feats += [live.unsqueeze(1), torch.stack(counts, 1), identity]
        depth.append(counts[1] + counts[2])  # convs in a row on this path
    # an edge is effective when some live path uses it: 1 - prod over its paths of (1 - live)
    eff = torch.stack([1.0 - torch.stack([1.0 - paths_live[i] for i, p in enumerate(PATHS) if e in p], 1).prod(1)
                       for e in range(N_EDGES)], 1)
    eff_ops = (eff.unsqueeze(2) * alpha[:, :, 1:]).sum(1)
    connected = 1.0 - torch.stack([1.0 - lv for lv in paths_live], 1).prod(1)
    feats += [eff, eff_ops, connected.unsqueeze(1), torch.stack(depth, 1).max(1, keepdim=True).values,
              (eff_ops[:, CONV3 - 1] * connected).unsqueeze(1) ** 2]
    return torch.cat(feats, 1)


@dataclass(frozen=True)
class SurrogateConfig:
    """How the ensemble is fitted; the defaults are the ones docs/BENCHMARKS.md reports."""
    n_trees_models: int = 5  # gradient-boosted tree models (differing in subsample seed)
    n_trees: int = 300
    tree_depth: int = 3
    tree_learning_rate: float = 0.05
    n_mlps: int = 3
    hidden: int = 64
    steps: int = 400  # full-batch AdamW steps per MLP
    learning_rate: float = 3e-3
    weight_decay: float = 1e-3
    rank_weight: float = 1.0  # weight of the pairwise logistic ranking loss beside the squared error
    rank_sharpness: float = 4.0  # logistic slope on standardized score differences
    cv_folds: int = 3  # 0: no cross-validation, blend weight fixed at 0.5; folds fit 2 tree models and 1 MLP
    blend_grid: tuple = (0.0, 0.25, 0.5, 0.75, 1.0)  # candidate weights of the trees (1 - w: the MLPs)


class AccuracySurrogate(torch.nn.Module):
    """Predicted accuracy of every architecture, and its multilinear extension in ``alpha``.

    ``forward(alpha)`` is E[f(a)] for a drawn edge by edge from ``alpha`` (6, 5) or (N, 6, 5): equal to the
    prediction ``f`` at one-hot ``alpha``, differentiable between, exact for any fitted model since the space is
    finite (5**6 architectures).
    """

    def __init__(self, table: np.ndarray, info: dict | None = None):
        super().__init__()
        table = np.asarray(table, dtype=np.float64)
        if table.shape != (N_OPS ** N_EDGES,) or not np.isfinite(table).all():
            raise ValueError(f"surrogate table must be {N_OPS ** N_EDGES} finite predictions, got {table.shape}")
        self.register_buffer("table", torch.as_tensor(table).reshape((N_OPS,) * N_EDGES))
        self.info = dict(info or {})

    def forward(self, alpha: torch.Tensor) -> torch.Tensor:
        single = alpha.ndim == 2
        a = alpha.unsqueeze(0) if single else alpha
        if a.shape[1:] != (N_EDGES, N_OPS):
            raise ValueError(f"alpha must be ({N_EDGES}, {N_OPS}) or (N, {N_EDGES}, {N_OPS}), got {tuple(alpha.shape)}")
        x = self.table.to(a.dtype).reshape(1, N_OPS, -1).expand(len(a), -1, -1)
        for e in range(N_EDGES):  # contract one edge at a time: (N, 5, rest) -> (N, rest)
            x = torch.einsum("nor,no->nr", x, a[:, e])
            if e < N_EDGES - 1:
                x = x.reshape(len(a), N_OPS, -1)
        out = x.reshape(len(a))
        return out[0] if single else out

    def predict(self, archs) -> np.ndarray:
        """(N, 6) op indices -> (N,) predicted accuracy."""
        idx = torch.as_tensor(np.asarray(one_hot(archs).argmax(2)))
        return self.table[tuple(idx.T)].numpy()

    def predict_all(self) -> np.ndarray:
        """Predictions for ``all_archs()``, in that order."""
        return self.table.reshape(-1).numpy().copy()


def _check_rows(archs, acc) -> tuple[np.ndarray, np.ndarray]:
    archs = np.asarray(archs)
    acc = np.asarray(acc, dtype=np.float64)
    one_hot(archs)  # validates shape and op range
    if acc.shape != (len(archs),):
        raise ValueError(f"need one accuracy per architecture: {len(archs)} archs, accuracies of shape {acc.shape}")
    if len(archs) < 10:
        raise ValueError(f"need at least 10 training architectures to fit a surrogate, got {len(archs)}")
    if not np.isfinite(acc).all():
        raise ValueError(f"{int((~np.isfinite(acc)).sum())} training accuracies are NaN or infinite: "
                         "pass only the sampled rows")
    return archs, acc


def _standardize(x_train: np.ndarray, x_all: np.ndarray) -> np.ndarray:
    mu, sd = x_train.mean(0), x_train.std(0)
    return (x_all - mu) / np.where(sd > 0, sd, 1.0)


def _fit_trees(x_tr, y_tr, x_all, cfg: SurrogateConfig, seed: int) -> np.ndarray:
    from sklearn.ensemble import GradientBoostingRegressor
    preds = [GradientBoostingRegressor(n_estimators=cfg.n_trees, max_depth=cfg.tree_depth,
                                       learning_rate=cfg.tree_learning_rate, subsample=0.8,
                                       random_state=seed * 1000 + k).fit(x_tr, y_tr).predict(x_all)
             for k in range(cfg.n_trees_models)]
    return np.mean(preds, 0)


def _fit_mlps(x_tr, y_tr, x_all, cfg: SurrogateConfig, seed: int) -> np.ndarray:
    """MLPs on standardized features: squared error + RankNet loss over all ordered pairs of training rows."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # nets this small gain nothing from threads; on a loaded host 2 cost 6x the CPU time
    try:
        return _train_mlps(x_tr, y_tr, x_all, cfg, seed)
    finally:
        torch.set_num_threads(threads)


def _train_mlps(x_tr, y_tr, x_all, cfg: SurrogateConfig, seed: int) -> np.ndarray:
    xs = torch.as_tensor(_standardize(x_tr, x_all), dtype=torch.float32)
    xt = torch.as_tensor(_standardize(x_tr, x_tr), dtype=torch.float32)
    mu, sd = float(y_tr.mean()), float(y_tr.std()) or 1.0
    yt = torch.as_tensor((y_tr - mu) / sd, dtype=torch.float32)
    better = (yt[:, None] > yt[None, :]).float()  # pair (i, j) with y_i > y_j
    preds = []
    for k in range(cfg.n_mlps):
        torch.manual_seed(seed * 1000 + k)
        net = torch.nn.Sequential(torch.nn.Linear(xt.shape[1], cfg.hidden), torch.nn.ReLU(),
                                  torch.nn.Linear(cfg.hidden, cfg.hidden), torch.nn.ReLU(),
                                  torch.nn.Linear(cfg.hidden, 1))
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        for _ in range(cfg.steps):
            p = net(xt).squeeze(1)
            loss = ((p - yt) ** 2).mean()
            if cfg.rank_weight:
                diff = p[:, None] - p[None, :]
                rank = (torch.nn.functional.softplus(-cfg.rank_sharpness * diff) * better).sum() / better.sum()
                loss = loss + cfg.rank_weight * rank
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            preds.append(net(xs).squeeze(1).double().numpy() * sd + mu)
    return np.mean(preds, 0)


def _kendall(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import kendalltau
    return float(kendalltau(a, b)[0])


def fit_surrogate(archs, acc, config: SurrogateConfig = SurrogateConfig(), seed: int = 0) -> AccuracySurrogate:
    """Fit the ensemble on the K given rows only and tabulate it over the whole space.

    Args:
        archs: (K, 6) op indices of the sampled architectures.
        acc: (K,) their accuracies (finite: the rows not sampled are never passed).
        config: model sizes and the cross-validation grid.
        seed: seeds the trees' subsampling, the MLPs' initialization and the folds.

    Returns:
        the surrogate; ``info`` holds the chosen blend weight and the cross-validated Kendall tau per weight.
    """
    archs, acc = _check_rows(archs, acc)
    x_all = cell_features(one_hot(all_archs())).numpy()
    x_tr = cell_features(one_hot(archs)).numpy()
    weight, cv_tau = 0.5, {}
    if config.cv_folds >= 2:
        folds = np.random.default_rng(seed).permutation(len(acc)) % config.cv_folds
        # the folds choose the blend weight, not the ensemble size: a smaller ensemble keeps that affordable
        light = dataclasses.replace(config, n_trees_models=min(2, config.n_trees_models), n_mlps=1)
        held = np.empty((2, len(acc)))
        for f in range(config.cv_folds):
            tr, te = folds != f, folds == f
            held[0, te] = _fit_trees(x_tr[tr], acc[tr], x_tr[te], light, seed + f + 1)
            held[1, te] = _fit_mlps(x_tr[tr], acc[tr], x_tr[te], light, seed + f + 1)
        cv_tau = {w: _kendall(w * held[0] + (1 - w) * held[1], acc) for w in config.blend_grid}
        weight = max(cv_tau, key=lambda w: (cv_tau[w], -abs(w - 0.5)))
    table = (weight * _fit_trees(x_tr, acc, x_all, config, seed)
             + (1 - weight) * _fit_mlps(x_tr, acc, x_all, config, seed))
    return AccuracySurrogate(table, {"blend_weight_trees": weight, "cv_kendall_tau": cv_tau, "k": len(acc)})


def onehot_pairs_ridge(archs, acc, alphas=tuple(np.logspace(-3, 3, 13))) -> AccuracySurrogate:
    """The issue's scale reference: ridge on one-hot edge-ops and all their pairs, strength by leave-one-out CV."""
    from sklearn.linear_model import RidgeCV

    archs, acc = _check_rows(archs, acc)

    def feats(a):
        oh = one_hot(a).numpy()
        pairs = [(oh[:, i, :, None] * oh[:, j, None, :]).reshape(len(a), -1)
                 for i in range(N_EDGES) for j in range(i + 1, N_EDGES)]
        return np.hstack([oh.reshape(len(a), -1), *pairs])

    x_tr = feats(archs)
    model = RidgeCV(alphas=alphas).fit(_standardize(x_tr, x_tr), acc)
    return AccuracySurrogate(model.predict(_standardize(x_tr, feats(all_archs()))), {"ridge_alpha": model.alpha_})


def best_feasible(scores: np.ndarray, latency: np.ndarray, bound: float) -> int | None:
    """Exhaustive search: index of the highest score among entries with ``latency <= bound``; None if none is."""
    ok = np.flatnonzero(np.asarray(latency) <= bound)
    if not len(ok):
        return None
    return int(ok[np.argmax(np.asarray(scores)[ok])])
