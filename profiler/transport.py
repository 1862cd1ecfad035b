"""How the host reaches a device's agent. Local: a subprocess of this Python (pyperf's manager/worker split), the
same code path a remote device takes with SSH as the transport (see ssh.py)."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

from .protocol import parse_line

AGENT = Path(__file__).resolve().parent.parent / "agents" / "lutnas_agent.py"


class AgentExit(Exception):
    """The agent ended with a non-zero status; ``code`` and the last stderr lines say why."""

    def __init__(self, code: int, stderr: str):
        super().__init__(f"agent exited with status {code}: {stderr.strip()[-500:]}")
        self.code, self.stderr = code, stderr


class LocalTransport:
    """Runs the agent as a subprocess; models are read where the host exported them."""

    def __init__(self, python: str = sys.executable):
        self.python = python
        self._tmp = None
        self.proc = None

    def __enter__(self) -> "LocalTransport":
        self._tmp = tempfile.TemporaryDirectory(prefix="lutnas-run-")
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self._tmp is not None:
            self._tmp.cleanup()

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
