"""Where the shared NB201 data file is: ``$LUTNAS_SHARED_DATA`` or ``<repo>/../shared/data`` (never in the repo)."""
import os
from pathlib import Path

import pytest

NAME = "nb201_accuracy_latency.csv.gz"


def nb201_csv() -> Path:
    root = Path(__file__).resolve().parents[1]
    places = [Path(os.environ["LUTNAS_SHARED_DATA"])] if os.environ.get("LUTNAS_SHARED_DATA") else []
    places.append(root.parent / "shared" / "data")
    for d in places:
        if (d / NAME).exists():
            return d / NAME
    pytest.fail(f"{NAME} not found in {', '.join(map(str, places))}: put the shared data beside the checkout "
                f"(<repo>/../shared/data) or set LUTNAS_SHARED_DATA to its folder")
