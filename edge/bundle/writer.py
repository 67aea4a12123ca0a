"""Writing a bundle: files collect in a temporary sibling folder that is renamed into place at the end,
so an interrupted or failed compile leaves nothing that looks like a bundle."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from edge.bundle.manifest import MANIFEST, Manifest
from edge.errors import EdgeError
from edge.models.weights import file_sha256


class BundleWriter:
    """Collects a bundle's files in a temporary folder next to `out`; `commit` moves it into place."""

    def __init__(self, out: Path, force: bool):
        self.out = Path(out)
        if self.out.exists() and not force:
            raise EdgeError(f"{self.out}: already exists (pass --force to replace it)")
        if not self.out.parent.is_dir():
            raise EdgeError(f"{self.out}: folder {self.out.parent} does not exist")
        self.folder = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", dir=self.out.parent))

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
        """Hash every file into the manifest, write it, and move the folder into place (replacing `out`)."""
        manifest.files.update({p.relative_to(self.folder).as_posix(): file_sha256(p)
                               for p in sorted(self.folder.rglob("*")) if p.is_file() and p.name != MANIFEST})
        self.write(MANIFEST, (json.dumps(manifest.to_json(), indent=1) + "\n").encode())
        previous = None
        if self.out.exists():
            previous = self.out.with_name(f".{self.out.name}.replaced")
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
