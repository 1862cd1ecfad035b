"""How the host reaches a device's agent. Local: a subprocess of this Python (pyperf's manager/worker split), the
same code path a remote device takes with SSH as the transport (see ssh.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

from .protocol import parse_line

AGENT = Path(__file__).resolve().parent.parent / "agents" / "lutnas_agent.py"


class AgentExit(Exception):
    """The agent ended with a non-zero status; ``code`` and the last stderr lines say why."""

    def __init__(self, code: int, stderr: str):
        super().__init__(f"agent exited with status {code}: {stderr.strip()[-500:]}")
        self.code, self.stderr = code, stderr


class Held:
    """An agent started ahead on a manifest with ``hold`` (issue 18): it loads and warms its sessions on the cores
    the measuring worker leaves free, then waits for ``go``."""

    def __init__(self, proc: subprocess.Popen, where: str):
        self.proc, self.where = proc, where

    def go(self, keys: Sequence[str]) -> Iterator[dict]:
        """Let it time ``keys`` (a subset of its manifest's) and yield its JSON lines as they arrive."""
        try:
            self.proc.stdin.write(json.dumps({"go": True, "keys": list(keys)}) + "\n")
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass  # it died while held: its exit status says why below
        for line in self.proc.stdout:
            obj = parse_line(line, self.where)
            if obj is not None:
                yield obj
        code = self.proc.wait()
        err = self.proc.stderr.read()
        if code != 0:
            raise AgentExit(code, err)

    def cancel(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class LocalTransport:
    """Runs the agent as a subprocess; models are read where the host exported them."""

    def __init__(self, python: str = sys.executable):
        self.python = python
        self._tmp = None
        self.proc = None
        self.held: List[Held] = []
        self._n = 0

    def __enter__(self) -> "LocalTransport":
        self._tmp = tempfile.TemporaryDirectory(prefix="lutnas-run-")
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for h in self.held:
            h.cancel()
        if self._tmp is not None:
            self._tmp.cleanup()

    def prepare(self, manifest: dict) -> Optional[Held]:
        """Start the agent on ``manifest`` held, on the cores its measurement will not use, or None where there are
        none (one core, or no pinning): a worker prepared while the one before it measures."""
        from agents.lutnas_agent import choose_cores

        method, threads = manifest.get("method", {}), int(manifest["runtime"].get("threads", 1))
        _, spare = choose_cores(threads, method.get("pin", "auto"))
        if not spare:
            return None
        self.held = [h for h in self.held if h.proc.poll() is None]
        self._n += 1
        path = Path(self._tmp.name) / f"manifest-held-{self._n}.json"
        path.write_text(json.dumps(dict(manifest, hold=True)))
        env = dict(os.environ, LUTNAS_AGENT_CORES=",".join(map(str, spare)))
        proc = subprocess.Popen([self.python, str(AGENT), str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, bufsize=1, env=env)
        self.held.append(Held(proc, "local agent"))
        return self.held[-1]

    def run(self, manifest: dict, args: Sequence[str] = ()) -> Iterator[dict]:
        """Run the agent on ``manifest`` and yield its JSON lines as they arrive."""
        path = Path(self._tmp.name) / "manifest.json"
        path.write_text(json.dumps(manifest))
        cmd = [self.python, str(AGENT), *args, str(path)] if not args else [self.python, str(AGENT), *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        for line in self.proc.stdout:
            obj = parse_line(line, "local agent")
            if obj is not None:
                yield obj
        code = self.proc.wait()
        err = self.proc.stderr.read()
        self.proc = None
        if code != 0:
            raise AgentExit(code, err)
