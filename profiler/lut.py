"""Versioned latency look-up tables: one immutable JSON file per (device, space, runtime settings, date).

Layout (pyperf's ``_bench.py`` style: metadata common to all entries at the root, ``sort_keys=True``)::

    {"schema_version": 1, "space": {"name", "hash"}, "device": {"name", "fingerprint"},
     "runtime": {"name", "version", "providers", "threads", "opt_level"}, "batch": 1,
     "method": {...warm-up and stopping rule...}, "created": ISO-8601, "tool_version": "0.1.0",
     "entries": {"<block string>": {"median_ms", "p10_ms", "p90_ms", "mean_ms", "std_ms", "ci95_ms", "n",
                                    "samples_ms", "flags", "workers", "worker_medians_ms"}, "pair:<A>+<B>": {...}},
     "boundaries": {"c24r56": {"delta_ms", "pairs"}},
     "calibration": null | {"a", "b", "calibrates", "fit": {...}}}

``boundaries`` holds the measured cost of cutting a network at a tensor of that shape (one runtime call's overhead
plus the layout reorders at the model's input and output; see docs/latency-model.md): a block measured alone pays
it, the same block inside a network does not. ``block_table()`` applies it, so the latency model sees blocks as they
run in context.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, Mapping, Optional

from . import __version__
from .checks import check_block_table, check_lut_data
from .errors import BadLut
from .files import atomic_write_json
from .keys import EntryKey, boundary_key
from .method import Method
from .model import LinearResource
from .space import Space, get_space

# Schema history:
# 1 - first version: entries with raw samples, boundary corrections from pair measurements, optional calibration.
SCHEMA_VERSION = 1

# Migrations from an old schema version to the next one (httpie's FIXERS_TO_VERSIONS): {old: fn(dict) -> dict}.
MIGRATIONS: Dict[int, object] = {}

STAT_KEYS = ("median_ms", "p10_ms", "p90_ms", "mean_ms", "std_ms", "ci95_ms", "n", "samples_ms", "flags")
OPTIONAL_KEYS = ("workers", "worker_medians_ms")  # present when samples were pooled from several processes


class Lut:
    """A loaded LUT file. ``data`` is the JSON dict; ``path`` where it came from (None if new)."""

    def __init__(self, data: dict, path: Optional[Path] = None):
        self.data = data
        self.path = Path(path) if path else None

    # --- construction ----------------------------------------------------------------------------------------------
    @classmethod
    def new(cls, space: Space, device: str, fingerprint: dict, runtime: dict, batch: int, method: dict,
            entries: Mapping[str, dict]) -> "Lut":
        data = {
            "schema_version": SCHEMA_VERSION,
            "space": {"name": space.name, "hash": space.hash},
            "device": {"name": device, "fingerprint": fingerprint},
            "runtime": runtime, "batch": batch, "method": method,
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tool_version": __version__,
            "entries": {k: {s: v[s] for s in STAT_KEYS + OPTIONAL_KEYS if s in v} for k, v in entries.items()},
            "calibration": None,
        }
        lut = cls(data)
        data["boundaries"] = lut.fit_boundaries()
        return lut

    @classmethod
    def load(cls, path, space: Optional[Space] = None, device: Optional[str] = None) -> "Lut":
        """Load and check a LUT; with ``space``/``device`` given, refuse one made for another."""
        path = Path(path)
        try:
            with open(path) as f:
                data = json.load(f)
        except FileNotFoundError:
            raise BadLut(f"LUT file {path} does not exist") from None
        except (OSError, ValueError) as exc:
            raise BadLut(f"LUT file {path} is not readable JSON: {exc}") from None
        if not isinstance(data, dict) or "schema_version" not in data:
            raise BadLut(f"{path} is not a lutnas LUT (no schema_version)")
        version = data["schema_version"]
        if type(version) is not int:
            raise BadLut(f"{path} has schema_version {version!r}, not a version number: the file is damaged; "
                         "re-profile, or restore it from git")
        while version in MIGRATIONS:
            data = MIGRATIONS[version](data)
            version = data["schema_version"]
        if version != SCHEMA_VERSION:
            raise BadLut(f"{path} has schema_version {version!r}; this lutnas ({__version__}) reads version "
                         f"{SCHEMA_VERSION}; upgrade lutnas or re-profile")
        check_lut_data(data, path)
        lut = cls(data, path)
        if space is not None:
            lut.check_space(space)
        if device is not None and lut.device != device:
            raise BadLut(f"{path} was measured on device {lut.device!r}, not {device!r}")
        return lut

    def check_space(self, space: Space) -> None:
        got = self.data["space"]
        if got["name"] != space.name or got["hash"] != space.hash:
            raise BadLut(f"{self.path} was measured for space {got['name']!r} (hash {got['hash']}), not "
                         f"{space.name!r} (hash {space.hash}); re-profile with this version of the space")

    def save(self, path) -> Path:
        self.path = atomic_write_json(Path(path), self.data)
        return self.path

    # --- views -----------------------------------------------------------------------------------------------------
    @property
    def space(self) -> Space:
        return get_space(self.data["space"]["name"])

    @property
    def device(self) -> str:
        return self.data["device"]["name"]

    @property
    def entries(self) -> Dict[str, dict]:
        return self.data["entries"]

    def median(self, key: str) -> float:
        try:
            return self.entries[key]["median_ms"]
        except KeyError:
            raise BadLut(f"{self.path} has no entry for block {key!r}") from None

    @property
    def partial(self) -> Optional[dict]:
        """``{"entries": n, "of": N, "blocks_missing": m}`` for a LUT of only some entries (``--limit``/``--blocks``)."""
        return self.data.get("partial")

    @property
    def emulated(self) -> bool:
        """Whether the agent found itself under an emulator (qemu-user) while measuring."""
        return bool(self.data["device"].get("fingerprint", {}).get("emulated"))

    def caveats(self) -> list:
        """One line per reason this LUT's numbers are not a whole real device's (an emulated device, a partial LUT)."""
        out = []
        if self.emulated:
            out.append(f"{self.path} was measured on an emulated {self.device!r} (qemu-user): its timings are not "
                       "a real device's")
        p = self.partial
        if p:
            out.append(f"{self.path} is partial ({p['entries']} of {p['of']} entries, {p['blocks_missing']} blocks "
                       "missing): profile the whole space without --limit/--blocks")
        return out

    def fit_boundaries(self) -> Dict[str, dict]:
        """Per boundary shape, the mean over measured pairs of t(A) + t(B) - t(A then B)."""
        found: Dict[str, list] = {}
        for key in self.entries:
            parsed = EntryKey.parse(key)
            if parsed.kind != "pair":
                continue
            a, b = parsed.blocks()
            delta = self.median(str(a)) + self.median(str(b)) - self.median(key)
            found.setdefault(boundary_key(a), []).append(delta)
        return {k: {"delta_ms": sum(v) / len(v), "pairs": len(v)} for k, v in sorted(found.items())}

    def block_table(self, in_context: bool = True, calibrated: bool = True) -> Dict[str, float]:
        """Block string -> milliseconds for every block of the space, as the block costs inside a network.

        A block that hands a tensor on to another block is charged its measured time minus that boundary's cost
        (the network pays it once, at its own input and output, which the stem and head measurements include).
        A stored calibration ``measured = a * predicted + b`` is folded in: every block scaled by ``a``, and ``b``
        added to the head, which every network has once, so any sum over a network's blocks is calibrated.
        """
        space = self.space
        bounds = self.data.get("boundaries") or {}
        cal = self.calibration if calibrated else None
        missing = [str(b) for b in space.unique_blocks() if str(b) not in self.entries]
        if missing:
            what = "a partial LUT" if self.partial else "incomplete"
            raise BadLut(f"{self.path} is {what}: {len(missing)} of the space's blocks are not measured (e.g. "
                         f"{missing[0]!r}); profile the whole space without --limit/--blocks")
        table, raw = {}, {}
        for b in space.unique_blocks():
            t = self.median(str(b))
            if in_context and b.kind != "head":
                t -= bounds.get(boundary_key(b), {}).get("delta_ms", 0.0)
            raw[str(b)] = t
            if cal:
                t = cal["a"] * t + (cal["b"] if b.kind == "head" else 0.0)
            table[str(b)] = t
        check_block_table(self, table, raw)
        return table

    def latency_model(self, in_context: bool = True, calibrated: bool = True,
                      name: Optional[str] = None) -> LinearResource:
        """The LUT's prediction, eq. (3), as a ``LinearResource`` over its space (``profiler.model``).

        Args:
            in_context, calibrated: passed to ``block_table``.
            name: the resource's name; default ``"<device>:latency"``.

        For the NB201 cell space the model is a ``profiler.nb201_model.CellLatency``: from a fitted table's weights
        (``"kind": "fitted"``, ``profile import``) or from the measured pieces' medians.
        """
        if self.data["space"]["name"] == "nb201":
            from .nb201_model import CellLatency

            name = name or f"{self.device}:latency"
            m = self.data.get("model")
            if self.data.get("kind") == "fitted" and m:
                return CellLatency.from_weights(m["names"], m["weights"], m["kinds"], name=name,
                                                info={"provenance": self.data.get("provenance")},
                                                floor=m.get("floor_ms"))
            return CellLatency.from_pieces({k: v["median_ms"] for k, v in self.entries.items()}, name=name)
        return LinearResource.from_table(self.space, self.block_table(in_context, calibrated),
                                         name=name or f"{self.device}:latency", unit="ms")

    # --- the settings it was measured with ---------------------------------------------------------------------
    @property
    def run_settings(self) -> dict:
        """runtime name, providers, opt_level, threads and batch exactly as the LUT was measured with."""
        rt = self.data["runtime"]
        return {"runtime": rt["name"], "providers": list(rt.get("providers") or []), "opt_level": rt.get("opt_level"),
                "threads": rt.get("threads"), "batch": self.data["batch"]}

    def method(self) -> Method:
        """The measuring method the LUT was made with (keys this version does not know are ignored; a LUT from
        before timing modes was measured interleaved)."""
        return Method.from_dict(self.data["method"])

    def runtime_for(self, device) -> dict:
        """The runtime dict for measuring on ``device`` (a ``devices.Device``) with this LUT's settings: the
        device's own additions (a benchmark_model path, say) with the LUT's runtime, threads, providers and
        opt_level, so a check runs as the LUT was measured."""
        rs = self.run_settings
        out = device.runtime_settings(rs["runtime"], rs["threads"])
        if rs["providers"]:
            out["providers"] = rs["providers"]
        if rs["opt_level"] is not None:
            out["opt_level"] = rs["opt_level"]
        return out

    @property
    def calibration(self) -> Optional[dict]:
        return self.data.get("calibration")

    def calibrated(self, a: float, b: float, fit: dict) -> "Lut":
        """A new LUT version carrying ``measured = a * predicted + b``, recording which LUT it calibrates."""
        data = json.loads(json.dumps(self.data))
        data["calibration"] = {"a": a, "b": b, "calibrates": str(self.path.name) if self.path else None, "fit": fit}
        data["created"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return Lut(data)


def lut_dir(out: Path, device: str, space: Space) -> Path:
    return Path(out) / device / space.name


def lut_filename(runtime: dict, batch: int, when: Optional[datetime] = None, suffix: str = "") -> str:
    """A name that sorts by date: ``20261122T221500Z-onnxruntime-t1-b1.json``."""
    when = when or datetime.now(timezone.utc)
    return f"{when.strftime('%Y%m%dT%H%M%SZ')}-{runtime['name']}-t{runtime['threads']}-b{batch}{suffix}.json"


def pick_trusted(measured, stream=None) -> Path:
    """The newest of ``measured`` (sorted oldest first) with at most 10 % of its entries flagged; if every one has
    more, the newest, saying so in one line on stderr (as when a newer, flagged one is passed over)."""
    import sys

    from .trust import flagged_warning

    stream = stream or sys.stderr
    readable = False
    for p in reversed(measured):
        try:
            why = flagged_warning(Lut.load(p))
        except BadLut:
            continue  # an unreadable file is reported where it is loaded (and refused) by the caller
        readable = True
        if why is None:
            if p != measured[-1]:
                print(f"note: using {p.name}, the newest LUT with at most 10 % of its entries flagged; newer ones "
                      f"have more (pass --lut to choose)", file=stream, flush=True)
            return p
    if readable:
        print(f"note: using {measured[-1].name} although more than 10 % of its entries are flagged: every LUT in "
              f"{measured[-1].parent} has as many (re-profile on a quiet device)", file=stream, flush=True)
    return measured[-1]


def latest(out: Path, device: str, space: Space, calibrated: bool = False, trusted: bool = True) -> Optional[Path]:
    """The newest measured LUT file for a device and space whose entries are mostly unflagged, or None.

    Flagged entries (CI target missed, unstable, outliers) make a rough table: a LUT with more than 10 % of them
    is passed over for an older one with fewer; if all have more, the newest is taken and a note says so. With
    ``trusted=False`` the newest, flagged or not (for a caller that checks it against the device first).

    With ``calibrated``, the newest calibrated version of that LUT (``<name>-cal-<stamp>.json``, written by
    ``validate --calibrate``) when one exists. A calibration of an older LUT is never preferred over a newer
    measurement.
    """
    d = lut_dir(out, device, space)
    files = [p for p in d.glob("*.json") if not p.name.startswith(".")]
    measured = sorted(p for p in files if "-cal-" not in p.name)
    if not measured:
        return None
    newest = pick_trusted(measured) if trusted else measured[-1]  # issue 18: few flagged entries, or says why not
    if calibrated:
        cal = sorted(p for p in files if p.name.startswith(newest.stem + "-cal-"))
        if cal:
            return cal[-1]
    return newest
