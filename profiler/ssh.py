"""SSH transport: the same agent and journal as the local path, with paramiko as the pipe (fabric's Connection,
wrapped once: connect lazily, one SFTP client reused, everything closed in ``__exit__``).

A session (one ``with SSHTransport(...)``) pushes the agent into a fresh run directory under the device's ``workdir``;
each ``run`` adds its manifest and the models not pushed yet (a job of several worker processes sends each model
once), runs ``python agent manifest`` there and yields the agent's JSON lines as they arrive; closing the session
removes the directory. Every name and
path that reaches the remote shell goes through ``shlex.quote``. Host keys are strict: an unknown key is refused with
its SHA256 fingerprint unless the user passed ``--trust-new-host`` (which records it); a changed key is always refused.

Errors: ``HostKeyError`` (unknown or changed key), ``ConnectionLost`` (refused, reset or dropped mid-run, agent killed:
worth reconnecting, see fleet.py), ``ConnectionFailed`` (authentication, unknown host: not worth retrying),
``AgentTimeout`` (the agent was silent for ``entry_timeout`` or ran past ``timeout``), ``AgentExit`` (the agent
itself failed).
"""
from __future__ import annotations

import base64
import getpass
import hashlib
import json
import re
import secrets
import shlex
import socket
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, Optional, Sequence, Set, Tuple

import paramiko

from .devices import Device
from .errors import ConnectionFailed, DeviceFailed, HostKeyError
from .protocol import parse_line
from .transport import AGENT, AgentExit

# Shipped next to the agent: the parser of benchmark_model's output (the agent imports it when it drives the binary).
SUPPORT = [AGENT.parent / "benchmark_model.py"]
POLL_S = 0.2  # how often the reader wakes up to drain stderr and check the timeouts

# Run directories a dropped connection could not remove, by (host, port): the next connection removes them.
_LEFTOVERS: Dict[Tuple[str, int], Set[str]] = {}
_LEFTOVERS_LOCK = threading.Lock()


class ConnectionLost(ConnectionFailed):
    """The connection could not be opened or dropped mid-run (or the agent was killed): reconnecting may help."""


class AgentTimeout(DeviceFailed):
    """The agent printed nothing for ``entry_timeout`` seconds, or the run passed ``timeout``; it was killed."""


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of a host key, as ``ssh-keygen -l`` prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


class StrictHostKeys(paramiko.MissingHostKeyPolicy):
    """Refuse an unknown host key with its fingerprint, or record it in ``known_hosts`` when trusted."""

    def __init__(self, device: str, known_hosts: Path, trust_new_host: bool):
        self.device, self.known_hosts, self.trust = device, known_hosts, trust_new_host

    def missing_host_key(self, client, hostname: str, key: paramiko.PKey) -> None:
        fp = fingerprint(key)
        if not self.trust:
            raise HostKeyError(f"device {self.device!r}: unknown host key for {hostname} ({key.get_name()} {fp}), "
                               f"not in {self.known_hosts}; check the fingerprint on the device "
                               "(ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub) and rerun with --trust-new-host to "
                               "record it")
        self.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.known_hosts, "a") as f:
            f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, key.get_name(), key)


def ssh_settings(device: Device) -> dict:
    """Where and how to connect: the inventory entry, completed by ``~/.ssh/config`` as ``ssh`` would be.

    ``host`` may be a Host alias of the SSH config; its HostName, Port, User, IdentityFile, UserKnownHostsFile and
    ProxyCommand apply unless the inventory sets port, user, key or known_hosts itself.
    """
    cfg_path = Path(device.extra.get("ssh_config", "~/.ssh/config")).expanduser()
    cfg = paramiko.SSHConfig.from_path(str(cfg_path)).lookup(device.host) if cfg_path.is_file() else {}
    explicit = set(device.extra.get("explicit", ("port", "user", "key")))
    port = device.port if "port" in explicit or "port" not in cfg else int(cfg["port"])
    user = device.user if "user" in explicit else cfg.get("user") or getpass.getuser()
    keys = [device.key] if device.key else list(cfg.get("identityfile", []))
    known = device.known_hosts or (cfg.get("userknownhostsfile", "").split() or ["~/.ssh/known_hosts"])[0]
    return {
        "hostname": cfg.get("hostname", device.host), "port": port, "user": user,
        "key_filenames": [str(Path(k).expanduser()) for k in keys], "known_hosts": Path(known).expanduser(),
        "proxycommand": cfg.get("proxycommand"),
        "connect_timeout": float(device.extra.get("connect_timeout", 15)),
        "entry_timeout": float(device.extra.get("entry_timeout", 300)),
        "timeout": float(device.extra.get("timeout", 0)) or None,
    }


class SSHTransport:
    """One device over SSH. Use as a context manager; ``run`` may be called several times on one connection."""

    def __init__(self, device: Device, trust_new_host: bool = False):
        self.device = device
        self.trust_new_host = trust_new_host
        self.settings = ssh_settings(device)
        self._client: Optional[paramiko.SSHClient] = None
        self._sftp: Optional[paramiko.SFTPClient] = None
        self._home: Optional[str] = None
        self._run_dir: Optional[str] = None
        self._pushed: Set[str] = set()
        self._runs = 0

    # --- connection ------------------------------------------------------------------------------------------------
    def __enter__(self) -> "SSHTransport":
        return self  # connect lazily: on the first run, so a job with nothing to do never touches the network

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._run_dir is not None:
            self._cleanup(self._run_dir)
            self._run_dir = None
        for obj in (self._sftp, self._client):
            if obj is not None:
                try:
                    obj.close()
                except Exception:  # closing a dead connection may raise; it is closed either way
                    pass
        self._sftp = self._client = None

    @property
    def where(self) -> str:
        s = self.settings
        return f"device {self.device.name!r} ({s['user']}@{s['hostname']}:{s['port']})"

    @property
    def client(self) -> paramiko.SSHClient:
        if self._client is None:
            self._client = self._connect()
            self._remove_leftovers()
        return self._client

    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            self._sftp = self.client.open_sftp()
        return self._sftp

    def _connect(self) -> paramiko.SSHClient:
        s = self.settings
        missing = [k for k in s["key_filenames"] if not Path(k).is_file()]
        if missing:  # not a transient fault: never retried
            raise ConnectionFailed(f"{self.where}: key file {missing[0]} does not exist; fix `key` in the inventory "
                                   "(or IdentityFile in the SSH config)")
        client = paramiko.SSHClient()
        if s["known_hosts"].is_file():
            client.load_host_keys(str(s["known_hosts"]))
        client.set_missing_host_key_policy(StrictHostKeys(self.device.name, s["known_hosts"], self.trust_new_host))
        sock = paramiko.ProxyCommand(s["proxycommand"]) if s["proxycommand"] else None
        try:
            client.connect(s["hostname"], port=s["port"], username=s["user"], key_filename=s["key_filenames"] or None,
                           look_for_keys=not s["key_filenames"], timeout=s["connect_timeout"],
                           banner_timeout=s["connect_timeout"], auth_timeout=s["connect_timeout"], sock=sock)
        except paramiko.BadHostKeyException as exc:
            client.close()
            name = s["hostname"] if s["port"] == 22 else f"[{s['hostname']}]:{s['port']}"
            raise HostKeyError(
                f"{self.where}: the host key has CHANGED: the server offers {exc.key.get_name()} "
                f"{fingerprint(exc.key)}, {s['known_hosts']} has {fingerprint(exc.expected_key)}; refusing to "
                f"connect (this is never overridden). If the device was reinstalled, remove the old key with: "
                f"ssh-keygen -R {shlex.quote(name)} -f {shlex.quote(str(s['known_hosts']))}") from None
        except HostKeyError:
            client.close()
            raise
        except paramiko.AuthenticationException as exc:
            client.close()
            raise ConnectionFailed(f"{self.where}: authentication failed ({exc}); check `user` and `key` in the "
                                   "inventory") from None
        except socket.gaierror as exc:
            client.close()
            raise ConnectionFailed(f"{self.where}: unknown host ({exc.strerror})") from None
        except (OSError, EOFError, paramiko.SSHException) as exc:
            client.close()
            raise ConnectionLost(f"{self.where}: cannot connect ({type(exc).__name__}: {exc})") from None
        return client

    # --- remote files ----------------------------------------------------------------------------------------------
    def remote_path(self, path: str) -> str:
        """``workdir`` made absolute: ``~`` and relative paths are taken from the login directory."""
        if self._home is None:
            self._home = self.sftp.normalize(".")
        if path == "~" or path.startswith("~/"):
            return self._home + path[1:]
        if path.startswith("~"):
            raise ConnectionFailed(f"{self.where}: workdir {path!r}: '~user' is not supported; use an absolute path")
        return path if path.startswith("/") else f"{self._home}/{path}"

    def makedirs(self, path: str) -> None:
        parts, cur = path.strip("/").split("/"), ""
        for part in parts:
            cur += "/" + part
            try:
                self.sftp.stat(cur)
            except FileNotFoundError:
                self.sftp.mkdir(cur, mode=0o700)

    def put(self, local: Path, remote: str) -> None:
        self.sftp.put(str(local), remote)

    def exec(self, command: str, timeout: float = 60.0) -> Tuple[int, str, str]:
        """Run a (quoted) shell command and wait; (status, stdout, stderr)."""
        _, out, err = self.client.exec_command(command, timeout=timeout)
        o, e = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        return out.channel.recv_exit_status(), o, e

    def _remove_leftovers(self) -> None:
        key = (self.settings["hostname"], self.settings["port"])
        with _LEFTOVERS_LOCK:
            dirs = _LEFTOVERS.pop(key, set())
        for d in dirs:
            try:
                self.exec(f"rm -rf -- {shlex.quote(d)}")
            except Exception:  # a later connection tries again
                with _LEFTOVERS_LOCK:
                    _LEFTOVERS.setdefault(key, set()).add(d)

    # --- one agent run ---------------------------------------------------------------------------------------------
    def run(self, manifest: dict, args: Sequence[str] = ()) -> Iterator[dict]:
        """Push and run the agent on ``manifest`` (or with ``args``, e.g. ``--check``); yield its JSON lines."""
        try:
            name = self._push(manifest)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise ConnectionLost(f"{self.where}: pushing the job failed ({type(exc).__name__}: {exc})") from None
        q = shlex.quote
        tail = " ".join(q(a) for a in args) if args else q(name)
        # `echo $$` then `exec`: the agent keeps the shell's pid, so a timeout can kill exactly it
        cmd = f"cd {q(self._run_dir)} && echo lutnas-pid $$ && exec {q(self.device.python)} lutnas_agent.py {tail}"
        yield from self._stream(cmd)

    def _push(self, manifest: dict) -> str:
        """Push what this run needs; returns the manifest's file name (relative to the run directory)."""
        if self._run_dir is None:
            job = re.sub(r"[^A-Za-z0-9_-]", "", str(manifest.get("job", "check")))[:40] or "job"
            run_dir = f"{self.remote_path(self.device.workdir).rstrip('/')}/run-{job}-{secrets.token_hex(4)}"
            self.makedirs(run_dir + "/models")
            self._run_dir = run_dir
            self.put(AGENT, f"{run_dir}/lutnas_agent.py")
            for path in SUPPORT:
                self.put(path, f"{run_dir}/{path.name}")
        entries = []
        for e in manifest.get("entries", []):
            src = Path(e["model"])
            rel = f"models/{src.name}"  # cache files are named by content hash: same name, same model
            if rel not in self._pushed:
                self.put(src, f"{self._run_dir}/{rel}")
                self._pushed.add(rel)
            entries.append(dict(e, model=rel))  # the agent resolves relative paths against the manifest's folder
        self._runs += 1
        name = f"manifest-{self._runs}.json"
        with self.sftp.open(f"{self._run_dir}/{name}", "w") as f:
            f.write(json.dumps(dict(manifest, entries=entries)))
        return name

    def _stream(self, cmd: str) -> Iterator[dict]:
        s = self.settings
        try:
            chan = self.client.get_transport().open_session()
            chan.exec_command(cmd)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise ConnectionLost(f"{self.where}: cannot start the agent ({exc})") from None
        chan.settimeout(POLL_S)
        buf, err, pid, finished = b"", bytearray(), None, False
        start = last = time.monotonic()
        try:
            while True:
                while chan.recv_stderr_ready():  # drain stderr, or a chatty runtime could block the agent
                    err += chan.recv_stderr(65536)
                try:
                    data = chan.recv(65536)
                except socket.timeout:
                    data = None
                now = time.monotonic()
                if data == b"":
                    break  # stdout closed: the agent ended, or the connection dropped
                if data:
                    last = now
                    buf += data
                    *lines, buf = buf.split(b"\n")  # a partial last line waits for its newline
                    for raw in lines:
                        line = raw.decode(errors="replace").strip()
                        if line.startswith("lutnas-pid "):
                            pid = int(line.split()[1])
                        else:
                            obj = parse_line(line, self.where)
                            if obj is not None:
                                yield obj
                    continue
                if now - last > s["entry_timeout"] or (s["timeout"] and now - start > s["timeout"]):
                    what = (f"printed nothing for {s['entry_timeout']:.0f} s (entry_timeout)"
                            if now - last > s["entry_timeout"] else f"ran past timeout = {s['timeout']:.0f} s")
                    self._kill(pid)
                    raise AgentTimeout(f"{self.where}: the agent {what}; it was killed. Raise the limit in the "
                                       "inventory if entries are that slow on this device")
            status = chan.recv_exit_status()
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            finished = True
        finally:
            if not finished:
                self._kill(pid)  # the generator was abandoned (an error upstream): stop the agent too
            chan.close()
        stderr = err.decode(errors="replace")
        if status == -1 or not self.client.get_transport().is_active():
            # no exit status: the connection dropped, or the agent died by a signal (sshd sends exit-signal)
            raise ConnectionLost(f"{self.where}: the connection or the agent was lost mid-run "
                                 f"{('(' + stderr.strip()[-200:] + ')') if stderr.strip() else ''}".rstrip())
        if status == 127:
            raise ConnectionFailed(f"{self.where}: {self.device.python!r} was not found on the device; install "
                                   "Python 3 there or set `python = PATH` in the inventory")
        if status != 0:
            raise AgentExit(status, stderr)

    def _kill(self, pid: Optional[int]) -> None:
        if pid is None:
            return
        try:
            self.exec(f"kill -9 {int(pid)}", timeout=10)
        except Exception:  # the connection is gone: the agent dies on its next write (SIGPIPE)
            pass

    def _cleanup(self, run_dir: str) -> None:
        try:
            if self._client is None or not self._client.get_transport().is_active():
                raise ConnectionLost("connection closed")
            self.exec(f"rm -rf -- {shlex.quote(run_dir)}")
        except Exception:
            with _LEFTOVERS_LOCK:
                _LEFTOVERS.setdefault((self.settings["hostname"], self.settings["port"]), set()).add(run_dir)
