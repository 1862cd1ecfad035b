"""The device inventory: a TOML file naming the devices the host reaches over SSH.

Found via ``--devices FILE``, else ``$LUTNAS_DEVICES``, else ``./devices.toml``, else
``~/.config/lutnas/devices.toml``. One table per device under ``[devices]``; an optional ``[defaults]`` table applies
to every device (an entry's own keys win)::

    [defaults]
    known_hosts = "~/.ssh/known_hosts"

    [devices.pi4]
    host = "pi4.local"      # or a Host alias of ~/.ssh/config
    user = "pi"
    preset = "pi4"          # xeon, jetson, pi4, phone (see devices.PRESETS)
    threads = 4             # any preset setting may be overridden here

See docs/devices.md for every key.
"""
from __future__ import annotations

import os
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Dict, Optional

from .checks import check_entry_value, check_key_file
from .devices import LOCAL, PRESETS, RUNTIMES, Device
from .errors import BadInput, UnknownDevice

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python < 3.11
    import tomli as tomllib

# Keys of a device entry that are not preset settings, with their types. SSH timeouts are in seconds.
DEVICE_KEYS = {
    "host": str, "port": int, "user": str, "key": str, "known_hosts": str, "python": str, "workdir": str,
    "preset": str, "ssh_config": str,
    "connect_timeout": (int, float),  # seconds to open the TCP connection and authenticate
    "entry_timeout": (int, float),  # seconds without any line from the agent before it is declared hung
    "timeout": (int, float),  # seconds for a whole agent run (0: no limit)
    "retries": int,  # reconnections after a dropped connection before the device is given up
    "backoff_s": (int, float),  # first wait before reconnecting; doubles each time, at most 60 s
}
PRESET_KEYS = {f.name: f.type for f in fields(PRESETS["xeon"])}
DEFAULT_PATHS = ("./devices.toml", "~/.config/lutnas/devices.toml")


def find_inventory(path: Optional[str] = None) -> Optional[Path]:
    """The inventory file to use, or None when there is none (only ``local`` is known then)."""
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise BadInput(f"--devices {path!r}: no such file")
        return p
    env = os.environ.get("LUTNAS_DEVICES")
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise BadInput(f"$LUTNAS_DEVICES={env!r}: no such file")
        return p
    for cand in DEFAULT_PATHS:
        p = Path(cand).expanduser()
        if p.is_file():
            return p
    return None


def _check(file: Path, where: str, key: str, value, typ) -> None:
    ok = isinstance(value, typ) and not (isinstance(value, bool) and typ in (int, (int, float)))
    if not ok:
        want = {int: "an integer", str: "a string", (int, float): "a number"}[typ]
        raise BadInput(f"{file}: {where}.{key} = {value!r} should be {want}")
    if typ != str:
        check_entry_value(file, where, key, value)


def _device(file: Path, name: str, entry: dict) -> Device:
    where = f"devices.{name}"
    preset_name = entry.get("preset", "xeon")
    if preset_name not in PRESETS or preset_name == "local":
        known = ", ".join(k for k in PRESETS if k != "local")
        raise BadInput(f"{file}: {where}.preset = {preset_name!r} is not a preset; known: {known}")
    preset = PRESETS[preset_name]
    dev_kw, preset_kw, extra = {}, {}, {}
    for key, value in entry.items():
        if key in DEVICE_KEYS:
            _check(file, where, key, value, DEVICE_KEYS[key])
            if key in ("host", "port", "user", "key", "known_hosts", "python", "workdir"):
                dev_kw[key] = value
            elif key != "preset":
                extra[key] = value
        elif key in PRESET_KEYS:
            if key in ("providers", "benchmark_model_args"):
                if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                    raise BadInput(f"{file}: {where}.{key} = {value!r} should be a list of strings")
                value = tuple(value)
            elif key in ("threads", "batch", "port", "runs_per_sample"):
                _check(file, where, key, value, int)
                if value < 1:
                    raise BadInput(f"{file}: {where}.{key} = {value!r} should be at least 1")
            else:
                _check(file, where, key, value, str)
            if key == "runtime" and value not in RUNTIMES:
                raise BadInput(f"{file}: {where}.runtime = {value!r} is not a runtime; known: "
                               f"{', '.join(sorted(RUNTIMES))}")
            preset_kw[key] = value
        else:
            known = ", ".join(sorted(set(DEVICE_KEYS) | set(PRESET_KEYS)))
            raise BadInput(f"{file}: unknown key {where}.{key!r}; known keys: {known}")
    if "host" not in dev_kw:
        raise BadInput(f"{file}: {where} has no host")
    if "key" in dev_kw:
        check_key_file(file, where, dev_kw["key"])
    # Which settings the user gave: ~/.ssh/config fills only the others (as `ssh -p` beats the config's Port).
    extra["explicit"] = sorted(k for k in ("port", "user", "key") if k in entry)
    extra["preset_name"] = preset_name
    dev_kw.setdefault("port", preset.port)
    return Device(name=name, preset=replace(preset, **preset_kw), extra=extra, **dev_kw)


def load_inventory(path: Optional[str] = None) -> Dict[str, Device]:
    """Devices by name from the inventory file (see ``find_inventory``); empty when there is no file.

    Raises:
        BadInput: one line naming the file and the bad key or value.
    """
    file = find_inventory(path)
    if file is None:
        return {}
    try:
        data = tomllib.loads(file.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"{file}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise BadInput(f"{file}: cannot read ({exc.strerror})") from None
    unknown = set(data) - {"devices", "defaults"}
    if unknown:
        raise BadInput(f"{file}: unknown table {sorted(unknown)[0]!r}; expected [devices.NAME] and [defaults]")
    defaults = data.get("defaults", {})
    devices = data.get("devices", {})
    if not isinstance(defaults, dict) or not isinstance(devices, dict):
        raise BadInput(f"{file}: [defaults] and [devices.NAME] must be tables")
    out = {}
    for name, entry in devices.items():
        if name == "local":
            raise BadInput(f"{file}: devices.local: 'local' is built in (this machine); pick another name")
        if not isinstance(entry, dict):
            raise BadInput(f"{file}: devices.{name} must be a table ([devices.{name}])")
        out[name] = _device(file, name, {**defaults, **entry})
    return out


def resolve_device(name: str, inventory: Optional[str] = None) -> Device:
    """The device called ``name``: ``local`` is built in; others come from the inventory file."""
    if name == "local":
        return LOCAL
    devices = load_inventory(inventory)
    if name not in devices:
        known = ", ".join(["local (built in)"] + sorted(devices))
        file = find_inventory(inventory)
        if file is None:
            raise UnknownDevice(f"unknown device {name!r}: no inventory found (looked for $LUTNAS_DEVICES, "
                                f"{', '.join(DEFAULT_PATHS)}); pass --devices FILE naming [devices.{name}] "
                                "(docs/devices.md)")
        raise UnknownDevice(f"unknown device {name!r} in {file}; known: {known}; add [devices.{name}] to it or "
                            "pass another --devices FILE")
    return devices[name]
