"""Which journaled results a resumed job may pool: only those of workers that finished their whole run.

A worker of a multi-process job times a set of entries interleaved in rounds, then prints one line per entry. A run
killed while those lines were being written (or a journal line lost to corruption) leaves the worker *partial*: some
of its entries have a result, others not. Re-measuring only the missing ones would time them alone, not interleaved
with the rest, under other cache and scheduling conditions (0.93 ms against 1.59-1.64 ms seen here), and pooling that
with the interleaved workers would bias the entry. So a partial worker's results are set aside and the worker is run
again over its whole set; what it measured stays in the journal, unused.

The host journals a ``run`` record (worker index and keys) before each agent run; a worker's run is complete when
every key of its last run record has an entry line for that worker after it. Journals written before run records
existed are judged by the job's plan: a worker below ``need`` must cover every key.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Sequence


def run_record(worker: int, keys: Sequence[str]) -> dict:
    """The journal line written before an agent run of ``worker`` over ``keys``."""
    return {"type": "run", "worker": int(worker), "keys": list(keys)}


def usable_by_worker(lines: Iterable[dict], keys: Sequence[str], need: int) -> Dict[str, Dict[int, dict]]:
    """{key: {worker: entry line}} from the journal's lines, leaving out every partial worker's results.

    Args:
        lines: the journal's records in order (fingerprint, run, entry, error, done ...).
        keys: the job's entry keys.
        need: workers every key gets in the main phase (1 for one adaptive process, which is never partial: each
            of its lines is a finished entry on its own).
    """
    groups: List[dict] = []  # one per run: worker, planned keys (None: unknown), entries by key
    current: Dict[int, dict] = {}
    for obj in lines:
        kind = obj.get("type")
        if kind == "run":
            g = {"worker": int(obj.get("worker", 0)), "keys": list(obj.get("keys") or []), "entries": {}}
            groups.append(g)
            current[g["worker"]] = g
        elif kind == "entry":
            w = int(obj.get("worker", 0))
            g = current.get(w)
            if g is None:  # a journal without run records: one group per worker
                g = {"worker": w, "keys": None, "entries": {}}
                groups.append(g)
                current[w] = g
            g["entries"].setdefault(obj["key"], obj)
    wanted = set(keys)
    out: Dict[str, Dict[int, dict]] = {}
    for g in groups:
        planned = g["keys"]
        if planned is None:
            planned = list(keys) if need > 1 and g["worker"] < need else list(g["entries"])
        planned = [k for k in planned if k in wanted]
        if need > 1 and any(k not in g["entries"] for k in planned):
            continue  # partial: measured again, whole
        for k, line in g["entries"].items():
            if k in wanted:
                out.setdefault(k, {}).setdefault(g["worker"], line)
    return out
