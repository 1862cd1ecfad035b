"""Several devices at once: ``profile --device pi4 --device jetson ...``.

The devices do the work and the host only waits, so one thread per device is enough. Each device gets its own
journal and LUT through the same ``runner.profile`` as a single device; a dropped connection, a killed agent or a
restarted sshd is retried with exponential backoff, and since ``profile`` skips what its journal already holds, a
retry measures only what is left: nothing lost, nothing measured twice. One device failing does not stop the others;
failures are reported at the end and make the exit status non-zero.
"""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

from .devices import Device
from .errors import ExitStatus, LutnasError
from .journal import journal_path
from .lut import lut_dir
from .progress import fmt_s
from .protocol import decode, entries_done
from .resume import usable_by_worker
from .runner import Method, export_entry, job_entries, job_id, model_format, profile
from .ssh import ConnectionLost, SSHTransport

MAX_BACKOFF_S = 60.0


@dataclass
class Job:
    """One device's part of a fleet run, and what became of it."""

    device: Device
    runtime: dict
    batch: int
    journal: Path
    total: int
    need: int = 1  # worker processes that measure each entry (the method's ``processes``; 1 when adaptive)
    keys: Optional[List[str]] = None  # the job's entry keys: a worker that did not finish its keys is set aside
    state: str = "waiting"
    attempts: int = 0
    path: Optional[Path] = None
    timing: dict = field(default_factory=dict)
    error: Optional[BaseException] = None

    def done(self) -> int:
        """Entries finished so far, read from the journal (every worker pass counts a fraction of an entry; a worker
        cut off before it finished its keys counts nothing, as when the run resumes)."""
        if self.path:
            return self.total
        try:
            raw = self.journal.read_bytes()
        except OSError:  # no journal yet
            return 0
        records = []
        for line in raw.split(b"\n")[:-1]:  # complete lines only: the device thread may be writing the last one
            try:
                records.append(decode(line))
            except ValueError:
                pass  # the journal's own loader reports a damaged file; progress just skips the line
        if self.keys is None:
            return entries_done(records, self.need)
        have = usable_by_worker(records, self.keys, self.need)  # as the runner counts: partial workers set aside
        return sum(min(len(v), self.need) for v in have.values()) // max(self.need, 1)


def retry_policy(device: Device):
    """(retries, first backoff seconds) from the inventory entry; defaults 5 and 1 s."""
    return int(device.extra.get("retries", 5)), float(device.extra.get("backoff_s", 1.0))


def run_device(job: Job, space, method: Method, out: Path, entries: list, factory: Callable,
               require_resume: bool = False, sleep: Callable[[float], None] = time.sleep) -> None:
    """Profile one device, reconnecting with backoff after a lost connection; the outcome is stored in ``job``."""
    retries, backoff = retry_policy(job.device)
    while True:
        job.attempts += 1
        job.state = "measuring" if job.attempts == 1 else f"measuring (attempt {job.attempts})"
        try:
            job.path, job.timing = profile(job.device, space, job.runtime, job.batch, method, out,
                                           transport_factory=factory, progress=False,
                                           require_resume=require_resume and job.attempts == 1, entries=entries)
            job.state = "done"
            return
        except ConnectionLost as exc:
            if job.attempts > retries:
                job.error, job.state = exc, "failed"
                return
            wait = min(backoff * 2 ** (job.attempts - 1), MAX_BACKOFF_S)
            job.state = f"reconnecting in {wait:.0f}s"
            print(f"profile: {exc}; reconnecting in {wait:.1f} s (attempt {job.attempts + 1} of {retries + 1})",
                  file=sys.stderr)
            sleep(wait)
        except BaseException as exc:  # typed errors are reported at the end; a bug should not hide either
            job.error, job.state = exc, "failed"
            return


class FleetProgress:
    """One status line for all devices (a plain line every 10 s when stderr is not a terminal)."""

    def __init__(self, jobs: List[Job], enabled: bool = True, stream=None):
        self.jobs, self.enabled = jobs, enabled
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def line(self) -> str:
        parts = [f"{j.device.name} {min(j.done(), j.total)}/{j.total}"
                 + (f" {j.state}" if j.state not in ("measuring", "done") else "") for j in self.jobs]
        return f"profile [{fmt_s(time.monotonic() - self.t0)}] " + " | ".join(parts)

    def _loop(self) -> None:
        while not self._stop.wait(0.5 if self.tty else 10.0):
            self._show()

    def _show(self) -> None:
        line = self.line()
        self.stream.write(("\r" + line[:150].ljust(150)) if self.tty else line + "\n")
        self.stream.flush()

    def __enter__(self) -> "FleetProgress":
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.enabled:
            self._thread.join()
            self._show()
            if self.tty:
                self.stream.write("\n")


def transport_for(device: Device, trust_new_host: bool) -> Callable:
    if device.is_local:
        from .transport import LocalTransport

        return LocalTransport
    return lambda: SSHTransport(device, trust_new_host)


def profile_fleet(devices: List[Device], space, args, method: Method, entries: Optional[list] = None,
                  factories: Optional[dict] = None) -> int:
    """Profile ``devices`` concurrently; print each LUT path on stdout (the last lines) and return the exit status.

    Args:
        devices: resolved devices (``local`` may be among them).
        args: the ``profile`` CLI namespace (runtime, threads, out, quiet, resume, check, trust_new_host).
        entries: a subset of ``runner.job_entries`` to measure (tests, benchmarks); default: the whole space.
        factories: transport factory by device name, to override SSH (tests).
    """
    trust = bool(getattr(args, "trust_new_host", False))
    if getattr(args, "check", False):
        from .check import check_local, check_remote

        status = 0
        for dev in devices:
            rt = dev.runtime_settings(args.runtime, args.threads)
            status = max(status, check_local(dev, rt) if dev.is_local else check_remote(dev, rt, trust))
        return status
    entries = entries if entries is not None else job_entries(space, method)
    keys = [k for k, _, _ in entries]
    out = Path(args.out)
    jobs = []
    for dev in devices:
        rt = dev.runtime_settings(args.runtime, args.threads)
        jid = job_id(dev, space, rt, dev.preset.batch, method, keys)
        jobs.append(Job(dev, rt, dev.preset.batch, journal_path(lut_dir(out, dev.name, space), jid),
                        len(keys), need=1 if method.processes <= 1 else method.processes, keys=list(keys)))
    # Export on the host first, one model at a time (torch's exporters are not thread-safe), so the device threads
    # find every model in the cache and only wait on their devices.
    for fmt, batch in sorted({(model_format(j.runtime["name"]), j.batch) for j in jobs}):
        for _, a, b in entries:
            try:
                export_entry(a, b, batch, fmt)
            except ImportError:
                break  # the device's own run reports the missing converter as a typed error
    factories = factories or {}
    threads = []
    with FleetProgress(jobs, enabled=not getattr(args, "quiet", False)):
        for job in jobs:
            factory = factories.get(job.device.name) or transport_for(job.device, trust)
            t = threading.Thread(target=run_device, name=f"profile-{job.device.name}", daemon=True,
                                 args=(job, space, method, out, entries, factory, bool(getattr(args, "resume", 0))))
            t.start()
            threads.append(t)
        for t in threads:
            while t.is_alive():  # join in slices so Ctrl-C reaches the main thread
                t.join(0.2)
    failed = [j for j in jobs if j.error is not None]
    if len(jobs) == 1 and failed:
        raise failed[0].error  # one device: its own one-line error and exit status, as for `local`
    for j in jobs:
        if j.path is not None:
            t = j.timing
            print(f"profiled {j.device.name}: export {t['export_s']:.1f}s, measurement {t['measure_s']:.1f}s, "
                  f"overhead {t['overhead_s']:.1f}s, total {t['total_s']:.1f}s"
                  + (f" ({j.attempts} connections)" if j.attempts > 1 else ""), file=sys.stderr)
    for j in failed:
        print(f"profile: device {j.device.name!r} FAILED after {j.attempts} attempt(s): {j.error}", file=sys.stderr)
    for j in jobs:
        if j.path is not None:
            print(j.path)
    if not failed:
        return 0
    codes = {int(j.error.status) if isinstance(j.error, LutnasError) else int(ExitStatus.ERROR) for j in failed}
    return codes.pop() if len(codes) == 1 else int(ExitStatus.DEVICE_FAILED)
