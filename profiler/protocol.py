"""The agent's line protocol, read in one place: by the local and SSH transports as lines arrive and by the journal
when it reloads them (pyperf's worker lines, parsed by the loader the host uses for files).

The agent prints one JSON object a line, each with a ``type`` (fingerprint, entry, error, done); its fingerprint
line carries ``schema``, the protocol version, which must equal ``PROTOCOL`` here: an agent of another lutnas version
is refused before any of its results are used.
"""
from __future__ import annotations

import json
from typing import Dict, Iterable, Optional

from .errors import DeviceFailed

PROTOCOL = 1  # agents/lutnas_agent.py SCHEMA


def decode(line) -> dict:
    """One record from one line (str or bytes). Raises ValueError if it is not a JSON object with a ``type``."""
    obj = json.loads(line)
    if not isinstance(obj, dict) or "type" not in obj:
        raise ValueError("not an agent record (a JSON object with a 'type')")
    return obj


def parse_line(line: str, where: str) -> Optional[dict]:
    """The record on a line of agent output, or None for a line that is not one (start-up noise).

    Raises:
        DeviceFailed: a broken record, or an agent speaking another protocol version (the message names ``where``).
    """
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        obj = decode(line)
    except ValueError as exc:
        raise DeviceFailed(f"{where}: the agent printed a line that is not a record ({exc}): {line[:120]!r}") from None
    if obj["type"] == "fingerprint" and obj.get("schema") != PROTOCOL:
        raise DeviceFailed(f"{where}: the agent speaks protocol version {obj.get('schema')!r}, this host "
                           f"{PROTOCOL}; run the agent of this lutnas version (agents/lutnas_agent.py)")
    return obj


def entries_done(records: Iterable[dict], need: int = 1) -> int:
    """Finished entries among ``records``: a key counts once ``need`` distinct workers measured it (fractions of a
    key count in proportion, rounded down over the sum), as the runner's own progress counts them."""
    workers: Dict[str, set] = {}
    for obj in records:
        if obj.get("type") == "entry":
            workers.setdefault(obj["key"], set()).add(obj.get("worker", 0))
    return sum(min(len(w), need) for w in workers.values()) // max(need, 1)
