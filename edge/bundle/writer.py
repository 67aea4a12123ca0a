"""Writing a bundle: files collect in a temporary sibling folder that is renamed into place at the end,
so an interrupted or failed compile leaves nothing that looks like a bundle.

The staging folder's name holds the writing process's pid (`.OUT.staging-PID-xxxx`): a later compile into the
same place removes the staging folders of processes that no longer run (killed with SIGKILL, or by power loss).
`--force` replaces only a folder that is an edge bundle; anything else at OUT is the user's, and stays.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from edge.bundle.manifest import MANIFEST, MANIFEST_DIGEST, Manifest, manifest_digest_line
from edge.errors import EdgeError
from edge.models.weights import file_sha256


def is_bundle_folder(path: Path) -> bool:
    """A folder edge wrote: it holds manifest.json and manifest.sha256 (the check --force makes before replacing)."""
    return path.is_dir() and not path.is_symlink() and (path / MANIFEST).is_file() and (path / MANIFEST_DIGEST).is_file()


def remove_stale_staging(out: Path) -> None:
    """Staging folders for `out` left by processes that are gone."""
    for folder in out.parent.glob(f".{out.name}.staging-*"):
        pid = folder.name.removeprefix(f".{out.name}.staging-").split("-")[0]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class BundleWriter:
    """Collects a bundle's files in a temporary folder next to `out`; `commit` moves it into place."""

    def __init__(self, out: Path, force: bool):
        self.out = Path(out)
        if not self.out.parent.is_dir():
            raise EdgeError(f"{self.out}: folder {self.out.parent} does not exist")
        if self.out.exists() or self.out.is_symlink():
            if not force:
                raise EdgeError(f"{self.out}: already exists (pass --force to replace it)")
            if not is_bundle_folder(self.out):
                raise EdgeError(f"{self.out}: not an edge bundle (no {MANIFEST} and {MANIFEST_DIGEST}); --force "
                                "replaces only bundles: remove it yourself or choose another --out")
        if not os.access(self.out.parent, os.W_OK):
            raise EdgeError(f"{self.out}: folder {self.out.parent} is not writable")
        remove_stale_staging(self.out)
        self.folder = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.staging-{os.getpid()}-", dir=self.out.parent))

    def path(self, name: str) -> Path:
        return self.folder / name

    def write(self, name: str, payload: bytes | Path) -> Path:
        """Write one artifact: a file's bytes, or a folder the backend made (a Core ML .mlpackage), moved in."""
        path = self.folder / name
        try:
            if isinstance(payload, Path):
                shutil.move(payload, path)
            else:
                path.write_bytes(payload)
        except OSError as err:
            self.abort()
            raise EdgeError(f"{self.out}: could not write {name} ({err.strerror})") from err
        return path

    def commit(self, manifest: Manifest) -> Path:
        """Hash every file into the manifest, write it and its digest, and move the folder into place (replacing
        `out`, a bundle)."""
        manifest.files.update({p.relative_to(self.folder).as_posix(): file_sha256(p)
                               for p in sorted(self.folder.rglob("*")) if p.is_file() and p != self.folder / MANIFEST})
        manifest_bytes = (json.dumps(manifest.to_json(), indent=1) + "\n").encode()
        self.write(MANIFEST, manifest_bytes)
        self.write(MANIFEST_DIGEST, manifest_digest_line(manifest_bytes).encode())
        previous = None
        if self.out.exists():
            previous = self.out.with_name(f".{self.out.name}.staging-{os.getpid()}-replaced")
            os.replace(self.out, previous)
        os.replace(self.folder, self.out)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
        return self.out

    def abort(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def artifact_bytes(path: Path) -> int:
    """Size of a written artifact: a file, or every file in a folder artifact."""
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
