"""First-improvement local search on a true objective over ordered neighbourhoods: the last part of the final
discrete step of both spaces (search/polish.py for HardCoRe, search/cell.py for NB201)."""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple


def local_search(calls, best, f_best: float, neighbourhoods: Sequence[Callable], max_evals: int,
                 patience: int, moved: Optional[Callable] = None, stall: int = 0, refresh: Optional[Callable] = None,
                 stale: bool = False) -> Tuple[object, float, int, int, bool]:
    """First-improvement local search on the true objective: (best architecture, its value, accepted moves,
    evaluations, whether it ended at a local optimum: no move of any neighbourhood improves).

    ``neighbourhoods`` are functions arch -> [(predicted gain, key, neighbour)], best first, tried in order: the next
    one only once no move of the earlier ones improves, and an improvement starts again from the first. Moves
    evaluated before (``calls.memo``) are skipped. It stops after ``patience`` evaluations in a row without
    improvement, ``max_evals`` in all, or when no neighbourhood improves. ``moved(arch)`` is called after every
    accepted move (e.g. to take the model again there).

    A model that orders the moves goes stale once the search has left the architecture it was taken at (``stale``
    says whether it already has): with ``refresh``, after ``stall`` evaluations in a row without improvement on a
    stale model, ``refresh(best)`` takes it again at the best architecture and the search goes on from the first
    neighbourhood (``patience`` still counts every evaluation since the last improvement)."""
    evals = since = moves = level = 0
    due = lambda: refresh is not None and stall > 0 and stale and since >= stall  # noqa: E731
    while level < len(neighbourhoods) and evals < max_evals and since < patience:
        improved = False
        for _, key, cand in neighbourhoods[level](best):
            if key in calls.memo:
                continue
            evals, since = evals + 1, since + 1
            f = calls.value(cand)
            if f < f_best - 1e-12 * max(1.0, abs(f_best)):
                best, f_best, since, moves, improved, stale = cand, f, 0, moves + 1, True, True
                if moved is not None:
                    moved(best)
                break
            if since >= patience or evals >= max_evals or due():
                break
        if not improved and due() and since < patience and evals < max_evals:
            refresh(best)
            stale, level = False, 0
            continue
        level = 0 if improved else level + 1
    return best, f_best, moves, evals, level >= len(neighbourhoods)
