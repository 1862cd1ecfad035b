"""A one-line progress display with ETA on stderr (a plain line now and then when stderr is not a terminal)."""
from __future__ import annotations

import sys
import time


def fmt_s(s: float) -> str:
    s = int(round(s))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class Progress:
    def __init__(self, total: int, label: str = "", stream=None, enabled: bool = True):
        self.total, self.label, self.enabled = total, label, enabled
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.monotonic()
        self.done = 0
        self._last = 0.0
        # Work found done at the first update (a resumed run's journal) took no time in this run: the rate, and so
        # the ETA, is taken over the work done since, and the line says how much was resumed.
        self.resumed = None
        self._t_resume = self.t0

    def update(self, done: int, note: str = "") -> None:
        done = min(done, self.total)  # extra work past the plan (more samples for some entries) is said in the note
        self.done = done
        now = time.monotonic()
        if self.resumed is None:
            self.resumed, self._t_resume = done, now
        if not self.enabled or (now - self._last < (0.2 if self.tty else 10.0) and done < self.total):
            return
        self._last = now
        elapsed = now - self.t0
        fresh = done - self.resumed
        eta = f"ETA {fmt_s((now - self._t_resume) / fresh * (self.total - done))}" if 0 < fresh and done < self.total \
            else ""
        width = 30
        fill = int(width * done / max(self.total, 1))
        bar = "=" * fill + (">" if fill < width else "") + " " * (width - fill - 1)
        res = f" ({self.resumed} resumed)" if self.resumed else ""
        line = f"{self.label} [{bar}] {done}/{self.total}{res} {fmt_s(elapsed)} {eta} {note}".rstrip()
        if self.tty:
            self.stream.write("\r" + line[:120].ljust(120))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
