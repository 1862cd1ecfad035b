"""First-improvement local search on a true objective over ordered neighbourhoods: the last part of the final
discrete step of both spaces (search/polish.py for HardCoRe, search/cell.py for NB201)."""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple


def local_search(calls, best, f_best: float, neighbourhoods: Sequence[Callable], max_evals: int,
                 patience: int, moved: Optional[Callable] = None) -> Tuple[object, float, int, int, bool]:
    """First-improvement local search on the true objective: (best architecture, its value, accepted moves,
    evaluations, whether it ended at a local optimum: no move of any neighbourhood improves).

    ``neighbourhoods`` are functions arch -> [(predicted gain, key, neighbour)], best first, tried in order: the next
    one only once no move of the earlier ones improves, and an improvement starts again from the first. Moves
    evaluated before (``calls.memo``) are skipped. It stops after ``patience`` evaluations in a row without
    improvement, ``max_evals`` in all, or when no neighbourhood improves. ``moved(arch)`` is called after every
    accepted move (e.g. to take the model again there)."""
    evals = since = moves = level = 0
    while level < len(neighbourhoods) and evals < max_evals and since < patience:
        improved = False
        for _, key, cand in neighbourhoods[level](best):
            if key in calls.memo:
                continue
            evals, since = evals + 1, since + 1
            f = calls.value(cand)
            if f < f_best - 1e-12 * max(1.0, abs(f_best)):
                best, f_best, since, moves, improved = cand, f, 0, moves + 1, True
                if moved is not None:
                    moved(best)
                break
            if since >= patience or evals >= max_evals:
                break
        level = 0 if improved else level + 1
    return best, f_best, moves, evals, level >= len(neighbourhoods)
