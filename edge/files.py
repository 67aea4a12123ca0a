"""Reading and writing the files users hand edge and get back: one error line naming the file, never half a file."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from edge.errors import EdgeError


def read_json(path: Path) -> object:
    """A JSON file's content; EdgeError naming the file when it is not JSON or not UTF-8."""
    return parse_json(Path(path).read_bytes(), path)


def parse_json(content: bytes, path: Path) -> object:
    """JSON bytes read from `path`; EdgeError naming it when they are not JSON or not UTF-8."""
    try:
        return json.loads(content.decode())
    except json.JSONDecodeError as err:
        raise EdgeError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err
    except UnicodeDecodeError as err:
        raise EdgeError(f"{path}: not UTF-8 text (byte {err.start})") from err


def require_folder(out: Path) -> None:
    """Fail before any work when OUT's folder is missing."""
    if not out.parent.is_dir():
        raise EdgeError(f"{out}: folder {out.parent} does not exist")


def require_writable(out: Path) -> None:
    """Fail before any work when OUT cannot be written: its folder missing or not writable, or OUT a folder."""
    require_folder(out)
    if out.is_dir():
        raise EdgeError(f"{out}: is a folder, not a file")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    except OSError as err:
        raise EdgeError(f"{out}: cannot write in {out.parent} ({err.strerror})") from err
    os.close(fd)
    os.unlink(probe)


def write_atomically(out: Path, write: Callable[[str], None]) -> None:
    """write(tmp_path) next to the destination, then rename: an interrupted run leaves no half-written file."""
    require_folder(out)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a result or report is meant to be shared
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_folder_atomically(out: Path, write: Callable[[Path], None]) -> None:
    """write(tmp_folder_path) next to the destination, then rename. When the destination appeared meanwhile
    (another process wrote the same thing), it is kept and this copy dropped."""
    require_folder(out)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        write(staging / out.name)
        try:
            os.replace(staging / out.name, out)
        except OSError:  # a non-empty folder is there: written meanwhile by another process
            if not out.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_text_atomically(out: Path, text: str) -> None:
    write_atomically(out, lambda tmp: Path(tmp).write_text(text))
