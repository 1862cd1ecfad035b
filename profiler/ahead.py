"""Workers prepared ahead (``Method.prepare_ahead``, ``profile --prepare-ahead``; issue 18): the next agent
process starts on the device's other cores while the one before it measures. Off by default: on the VM here the
measuring worker read 3-5 % slow while the next one loaded (benchmarks/bench_ahead.py, docs/BENCHMARKS.md)."""
from __future__ import annotations

from typing import Callable, List, Optional, Tuple

from .method import Method


class Ahead:
    """Workers prepared ahead (issue 18): while one worker measures on its core, the next one starts, imports and
    loads its sessions on the device's other cores (``transport.prepare``), so a process's fixed cost is paid
    outside the timed minutes. The next worker is a guess: the next index, timing the entries that lack it (planned
    workers), every entry (the first top-up: the pooled CIs decide) or the same entries again (later top-ups: the
    CIs only ask for fewer); a wrong guess is cancelled and the worker started afresh."""

    def __init__(self, transport, manifest_for: Callable, keys: List[str], method: Method):
        self.transport, self.manifest_for, self.keys, self.method = transport, manifest_for, keys, method
        self.next: Optional[Tuple[int, set, object]] = None

    def start(self, worker: int, todo: List[str], manifest: dict, have: dict, need: int):
        """(the lines of ``worker`` timing ``todo``, whether it had been prepared ahead)."""
        held, was_ready = None, False
        if self.next is not None and self.next[0] == worker and set(todo) <= self.next[1]:
            held, was_ready = self.next[2], True
        elif self.next is not None:
            self.next[2].cancel()
        self.next = None
        if held is None:
            held = self.transport.prepare(manifest)
        if held is None:  # no spare core on this device: one worker after another
            return self.transport.run(manifest), False
        w = worker + 1
        if w < need:
            keys = [k for k in self.keys if w not in have.get(k, {})]
        elif w == need:
            keys = [k for k in self.keys if len(have.get(k, {})) < self.method.max_processes]
        else:
            keys = list(todo)
        return self._lines(held, todo, w, keys if w < self.method.max_processes and self.wants(worker) else []), \
            was_ready

    def wants(self, worker: int) -> bool:
        """Whether to prepare the next worker while ``worker`` measures (benchmarks/bench_ahead.py alternates)."""
        return True

    def _lines(self, held, todo: List[str], w: int, keys: List[str]):
        for msg in held.go(todo):
            if msg.get("type") == "fingerprint" and keys:  # measuring now: prepare the next on the other cores
                nxt = self.transport.prepare(self.manifest_for(w, keys))
                self.next, keys = ((w, set(keys), nxt) if nxt is not None else None), []
            yield msg
