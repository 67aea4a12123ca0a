"""Reading and writing the files users hand edge and get back: one error line naming the file, never half a file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from edge.errors import EdgeError


def read_json(path: Path) -> object:
    """A JSON file's content; EdgeError naming the file when it is not JSON or not UTF-8."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise EdgeError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err
    except UnicodeDecodeError as err:
        raise EdgeError(f"{path}: not UTF-8 text (byte {err.start})") from err


def require_folder(out: Path) -> None:
    """Fail before any work when OUT's folder is missing."""
    if not out.parent.is_dir():
        raise EdgeError(f"{out}: folder {out.parent} does not exist")


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


def write_text_atomically(out: Path, text: str) -> None:
    write_atomically(out, lambda tmp: Path(tmp).write_text(text))
