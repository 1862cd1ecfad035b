"""The progress line's count and ETA when a run resumes from a journal."""
import io

from profiler import progress as progress_mod
from profiler.progress import Progress


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_eta_of_a_resumed_run_counts_only_the_work_done_in_this_run(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress_mod.time, "monotonic", clock)
    out = io.StringIO()
    bar = Progress(100, "profile local", stream=out)
    clock.t += 5.0  # export, before the first count
    bar.update(60)  # found in the journal: done by an earlier run
    clock.t += 20.0
    bar.update(70)  # 10 units in 20 s: 30 left take 60 s (elapsed/done would say 9 s)
    last = out.getvalue().strip().splitlines()[-1]
    assert " 70/100 " in last and "(60 resumed)" in last and "ETA 1m00s" in last, last


def test_a_fresh_run_reports_no_resumed_work(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress_mod.time, "monotonic", clock)
    out = io.StringIO()
    bar = Progress(10, "x", stream=out)
    bar.update(0)
    clock.t += 10.0
    bar.update(5)
    last = out.getvalue().strip().splitlines()[-1]
    assert "resumed" not in last and "ETA 10s" in last, last
