"""A real OpenSSH sshd for the SSH tests: a free loopback port, throwaway host and user keys in a temporary folder.

``.ci/run`` installs openssh-server, so these tests run in CI; elsewhere they skip with the command to install it.
"""
from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

import pytest

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> str:
    """A new ed25519 key pair at ``path`` (and ``path``.pub); returns the public key line."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lutnas-test", "-f", str(path)],
                   check=True, capture_output=True)
    return path.with_name(path.name + ".pub").read_text().strip()


def keygen_fingerprint(pub: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(pub)], check=True, capture_output=True,
                         text=True).stdout
    return out.split()[1]


def _children(pid: int) -> List[int]:
    """All descendants of ``pid`` (from /proc)."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class Sshd:
    """``sshd -D -e -f CONFIG`` on 127.0.0.1:port; ``stop``/``start`` restart it on the same port and host key."""

    def __init__(self, root: Path, port: Optional[int] = None):
        if not os.path.exists(SSHD):
            pytest.skip("the SSH tests need a real sshd: apt-get install -y openssh-server")
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.user = getpass.getuser()
        self.host_key = root / "host_ed25519"
        self.host_pub = keygen(self.host_key)
        self.user_key = root / "user_ed25519"
        (root / "authorized_keys").write_text(keygen(self.user_key) + "\n")
        self.known_hosts = root / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {' '.join(self.host_pub.split()[:2])}\n")
        self.config = root / "sshd_config"
        self.config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {self.host_key}", f"PidFile {root}/sshd.pid",
            f"AuthorizedKeysFile {root}/authorized_keys", "UsePAM no", "StrictModes no",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password", "Subsystem sftp internal-sftp", "MaxStartups 100",
            "MaxSessions 100", "LogLevel ERROR", ""]))
        self.proc: Optional[subprocess.Popen] = None
        self.log = root / "sshd.log"

    def start(self) -> "Sshd":
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory (root sshd insists on it)
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "a"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.proc.returncode}: {self.log.read_text()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not listen on port {self.port}")

    def stop(self) -> None:
        """Stop the listener and every session it serves (as a reboot or `systemctl restart ssh` would)."""
        if self.proc is None:
            return
        for pid in [self.proc.pid] + _children(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.proc = None

    def agents(self) -> List[int]:
        """Pids of agent processes this sshd serves."""
        return [p for p in _children(self.proc.pid) if "lutnas_agent.py" in _cmdline(p)] if self.proc else []

    def kill_session(self) -> bool:
        """Kill the sshd process that serves a running agent (the connection drops mid-run)."""
        for agent in self.agents():
            parent = int(Path(f"/proc/{agent}/stat").read_text().rsplit(")", 1)[1].split()[1])
            os.kill(parent, signal.SIGKILL)
            return True
        return False

    def kill_agent(self) -> bool:
        for agent in self.agents():
            os.kill(agent, signal.SIGKILL)
            return True
        return False

    def device_toml(self, name: str, preset: str, workdir: Path, **extra) -> str:
        """An inventory entry for this sshd, run by this test's Python (numpy, onnxruntime, ai-edge-litert)."""
        import json

        entry = {"host": "127.0.0.1", "port": self.port, "user": self.user, "key": str(self.user_key),
                 "known_hosts": str(self.known_hosts), "python": sys.executable, "workdir": str(workdir),
                 "preset": preset, "ssh_config": str(self.root / "no-ssh-config"), **extra}
        body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in entry.items())  # JSON strings are TOML strings
        return f"[devices.{name}]\n{body}\n"
