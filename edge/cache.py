"""Where edge keeps what it can rebuild: calibration recordings, XNNPACK lowerings, LiteRT and Core ML conversions,
the native runner.

The cache never stops a command: an entry that does not read back whole is recomputed, and a cache folder that
cannot be written is skipped, each with one warning (logger `edge`).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from edge.errors import EdgeError
from edge.files import write_atomically

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """$EDGE_CACHE, else ~/.cache/edge."""
    return Path(os.environ.get("EDGE_CACHE", Path.home() / ".cache" / "edge"))


def read_cached_bytes(path: Path) -> bytes | None:
    """A file entry written by write_cached_bytes, when its `.sha256` sidecar still matches; else None."""
    sidecar = path.with_name(path.name + ".sha256")
    if not path.is_file():
        return None
    try:
        payload, expected = path.read_bytes(), sidecar.read_text().strip()
    except (OSError, UnicodeDecodeError):
        expected, payload = None, b""
    if expected != hashlib.sha256(payload).hexdigest():
        log.warning(f"{path}: damaged cache entry; computing it again")
        return None
    return payload


def write_cached_bytes(path: Path, payload: bytes) -> None:
    """The entry and its sidecar (entry first: a reader trusts only an entry whose sidecar matches)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda tmp: Path(tmp).write_bytes(payload))
        write_atomically(path.with_name(path.name + ".sha256"),
                         lambda tmp: Path(tmp).write_text(hashlib.sha256(payload).hexdigest() + "\n"))
    except (OSError, EdgeError) as err:
        log.warning(f"{path.parent}: cache not written ({getattr(err, 'strerror', None) or err})")
