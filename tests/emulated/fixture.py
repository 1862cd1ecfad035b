"""An emulated Raspberry Pi for the tests: ``tests/emulated/pi.sh`` builds an arm64 Debian rootfs once (cached per
recipe), and each test session runs its sshd under qemu-user on a free loopback port with throwaway keys.

Where qemu-aarch64 cannot be registered with binfmt_misc (not root, no binfmt_misc, no qemu-user-static or
mmdebstrap), the fixture skips with pi.sh's one-line reason; ``.ci/run`` installs what it needs and runs as root.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import List

import pytest

PI_SH = Path(__file__).with_name("pi.sh")
CANNOT_EMULATE = 3  # pi.sh's exit status when this machine cannot run arm64 binaries
BUILD_TIMEOUT_S = 1800


def _pi_sh(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(PI_SH), *args], capture_output=True, text=True, timeout=timeout)


def _reason(r: subprocess.CompletedProcess) -> str:
    lines = r.stderr.strip().splitlines()
    return lines[-1] if lines else f"pi.sh exited with status {r.returncode}"


class EmulatedPi:
    """A running emulated Pi: its inventory (``devices.toml``, device ``pi4emu``), keys and processes."""

    name = "pi4emu"

    def __init__(self, state: Path):
        self.state = Path(os.path.realpath(state))
        self.root = self.state / "root"
        self.inventory = self.state / "devices.toml"
        self.known_hosts = self.state / "known_hosts"
        self.port = 0

    def start(self) -> "EmulatedPi":
        r = _pi_sh("start", str(self.state), timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"tests/emulated/pi.sh start failed ({r.returncode}): {r.stderr.strip()[-800:]}")
        self.port = int((self.state / "port").read_text())
        return self

    def stop(self) -> None:
        r = _pi_sh("stop", str(self.state))
        if r.returncode != 0:
            raise RuntimeError(f"tests/emulated/pi.sh stop failed ({r.returncode}): {r.stderr.strip()[-800:]}")

    def processes(self) -> List[int]:
        """Pids of every process running in the emulated Pi (its root directory is the overlay)."""
        pids = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    if os.readlink(f"/proc/{d}/root") == str(self.root):
                        pids.append(int(d))
                except OSError:
                    continue
        return pids

    def agents(self) -> List[int]:
        out = []
        for pid in self.processes():
            try:
                if b"lutnas_agent.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    out.append(pid)
            except OSError:
                continue
        return out

    def kill_agent(self) -> bool:
        for pid in self.agents():
            os.kill(pid, signal.SIGKILL)
            return True
        return False


def build() -> Path:
    """The cached rootfs, built if missing (about 5 min for mmdebstrap and 1-3 min for pip under qemu here)."""
    r = _pi_sh("binfmt")
    if r.returncode == CANNOT_EMULATE:
        pytest.skip(f"no emulated Pi: {_reason(r)}")
    if r.returncode != 0:
        pytest.fail(f"tests/emulated/pi.sh binfmt: {_reason(r)}")
    t0 = time.monotonic()
    r = _pi_sh("build", timeout=BUILD_TIMEOUT_S)
    if r.returncode == CANNOT_EMULATE:
        pytest.skip(f"no emulated Pi: {_reason(r)}")
    if r.returncode != 0:
        pytest.fail(f"building the emulated Pi failed ({r.returncode}): {r.stderr.strip()[-1500:]}")
    root = Path(r.stdout.strip().splitlines()[-1])
    if time.monotonic() - t0 > 5:
        print(f"emulated Pi built in {time.monotonic() - t0:.0f} s: {root}")
    return root


@pytest.fixture(scope="session")
def emulated_pi(tmp_path_factory):
    build()
    pi = EmulatedPi(tmp_path_factory.mktemp("emulated-pi")).start()
    try:
        yield pi
    finally:
        pi.stop()
        assert pi.processes() == [], "processes left running in the emulated Pi"
