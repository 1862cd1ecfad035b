"""Files written atomically: a reader sees the old file or the whole new one, never a half-written one."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator, List, Sequence, Tuple

from .errors import BadInput, NotWritable, WouldOverwrite


@contextlib.contextmanager
def atomic_file(path, overwrite: bool = True) -> Iterator[str]:
    """Yield a temporary name beside ``path``; it becomes ``path`` only if the block finishes without error.

    The file gets the permissions a plain ``open`` would give (mkstemp's are private). With ``overwrite`` False an
    existing ``path`` is never replaced, even by a concurrent writer (the rename is a ``link``, which fails if the
    target exists).

    Raises:
        NotWritable: the directory cannot be created or written.
        WouldOverwrite: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise NotWritable(f"cannot write to {path.parent}: {exc.strerror}; choose another --out") from None
    os.close(fd)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        yield tmp
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise WouldOverwrite(f"{path} exists; LUT files are never overwritten (a new run writes a new "
                                     "version)") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_json(path, data: dict, overwrite: bool = False) -> Path:
    """Write ``data`` as JSON (sorted keys) to ``path`` atomically; refuse to replace a file unless ``overwrite``."""
    path = Path(path)
    with atomic_file(path, overwrite) as tmp:
        with open(tmp, "w") as f:
            json.dump(data, f, sort_keys=True, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
    return path


def read_csv_columns(path, columns: Sequence[str], label: str,
                     missing: Callable[[str, List[str]], str]) -> List[Tuple[str, ...]]:
    """The ``columns`` of every row of a CSV file (gzipped if it ends in .gz), as strings, in file order: row i is
    on line i + 2. The caller parses what it uses.

    Raises:
        BadInput, naming the file: it does not exist or cannot be read (``label`` leads those lines), or it lacks
            one of ``columns`` (``missing(column, header)`` is the line).
    """
    import csv
    import gzip

    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", newline="") as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            for want in columns:
                if want not in header:
                    raise BadInput(missing(want, header))
            return [tuple(r[c] for c in columns) for r in reader]
    except FileNotFoundError:
        raise BadInput(f"{label} {path} does not exist") from None
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise BadInput(f"{label} {path}: cannot read it: {exc}") from None
