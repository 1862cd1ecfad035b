"""Append-only journal of agent lines: every result is on disk the moment it arrives, so nothing measured is lost.

One JSON object a line, flushed and fsynced after each. A run killed while writing can leave one truncated last line
(no newline): that line never counted, so loading drops it and the entry is measured again. An unreadable line
elsewhere (a damaged file) is skipped with one warning naming it: the good lines before and after it are
measurements and are kept; what the bad line held is measured again (see resume.py). Only a journal with no readable
line at all is refused.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Dict, List

from .errors import CorruptJournal, NotWritable
from .protocol import decode


def job_id(*parts) -> str:
    """12 hex digits naming a job by everything that defines it (JSON of ``parts``): another setting, another job."""
    return hashlib.sha256(json.dumps(list(parts), sort_keys=True).encode()).hexdigest()[:12]


def journal_path(directory, job: str, kind: str = "") -> Path:
    """Where the journal of job ``job`` lives: ``<directory>/.journal-[<kind>-]<job>.jsonl`` (hidden: a LUT
    directory lists LUTs; .gitignore'd)."""
    return Path(directory) / f".journal-{kind + '-' if kind else ''}{job}.jsonl"


class Journal:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.lines: List[dict] = []
        if self.path.exists():
            self.lines = self._read()
        self._f = None

    def _read(self) -> List[dict]:
        raw = self.path.read_bytes()
        parts = raw.split(b"\n")
        complete, tail = parts[:-1], parts[-1]  # tail is b"" when the file ends with a newline
        out, bad = [], []
        for no, line in enumerate(complete, 1):
            if not line.strip():
                continue
            try:
                obj = decode(line)
            except ValueError as exc:
                bad.append((no, exc))
                continue
            out.append(obj)
        if bad and not out:
            raise CorruptJournal(f"journal {self.path} has no readable line (line {bad[0][0]}: {bad[0][1]}); it is "
                                 "not a journal of this job: move the file away to start the job over")
        if bad:
            nos = ", ".join(str(no) for no, _ in bad[:5]) + (" ..." if len(bad) > 5 else "")
            print(f"warning: journal {self.path}: line(s) {nos} corrupt ({bad[0][1]}); skipped, the {len(out)} good "
                  "lines are kept and what the bad ones held is measured again", file=sys.stderr, flush=True)
        if tail.strip():
            # truncated by a kill mid-write: rewrite the file without it so appends start on a clean line
            with open(self.path, "r+b") as f:
                f.truncate(len(raw) - len(tail))
        return out

    def append(self, obj: dict) -> None:
        if self._f is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._f = open(self.path, "a")
            except OSError as exc:
                raise NotWritable(f"cannot write journal {self.path}: {exc.strerror}") from None
        self._f.write(json.dumps(obj, sort_keys=True) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())
        self.lines.append(obj)

    def by_worker(self) -> Dict[str, Dict[int, dict]]:
        """Results by key and worker process: {key: {worker: line}}; a (key, worker) is never measured twice."""
        out: Dict[str, Dict[int, dict]] = {}
        for obj in self.lines:
            if obj["type"] == "entry":
                out.setdefault(obj["key"], {}).setdefault(obj.get("worker", 0), obj)
        return out

    def fingerprint(self) -> dict:
        fps = [o for o in self.lines if o["type"] == "fingerprint"]
        return fps[-1] if fps else {}

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
