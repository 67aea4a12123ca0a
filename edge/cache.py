"""Where edge keeps what it can rebuild: calibration recordings, LiteRT and Core ML conversions, the native runner."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$EDGE_CACHE, else ~/.cache/edge."""
    return Path(os.environ.get("EDGE_CACHE", Path.home() / ".cache" / "edge"))
