"""`edge serve BUNDLE`: the web demo (web_demo/) and one web bundle on a local address.

Three folders under one origin, nothing else:
  /          web_demo/ (index.html, js/)
  /ort/      onnxruntime-web's files from web_demo/node_modules (`npm ci` in web_demo/ installs them)
  /bundle/   the bundle
Every response carries the cross-origin isolation headers (COOP same-origin, COEP require-corp): without them a
browser gives the page no SharedArrayBuffer, and onnxruntime-web's WASM runs on one thread.
"""

from __future__ import annotations

import http.server
import posixpath
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

from edge.bundle.bundle import open_bundle
from edge.errors import EdgeError

DEMO = Path(__file__).resolve().parents[1] / "web_demo"
ONNXRUNTIME_WEB = DEMO / "node_modules" / "onnxruntime-web" / "dist"
ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
                     "Cross-Origin-Resource-Policy": "same-origin"}
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript",
               ".css": "text/css", ".json": "application/json", ".wasm": "application/wasm", ".png": "image/png"}


def demo_roots(bundle: Path) -> dict[str, Path]:
    """URL prefix -> folder served under it, checked: a web bundle whose hashes hold, the demo, onnxruntime-web."""
    opened = open_bundle(bundle)
    manifest = opened.manifest
    if manifest.backend != "web":
        raise EdgeError(f"{bundle}: is for target {manifest.target}; the web demo runs web bundles "
                        "(edge compile --target web)")
    if manifest.step_graph is None:
        raise EdgeError(f"{bundle}: has no step graph (compiled by an older edge): compile it again")
    if not (DEMO / "index.html").is_file():
        raise EdgeError(f"{DEMO}: the web demo is missing (edge serve runs from a checkout of edge)")
    if not ONNXRUNTIME_WEB.is_dir():
        raise EdgeError(f"{ONNXRUNTIME_WEB}: missing: run `npm ci` in {DEMO} (`make test` does)")
    return {"/ort/": ONNXRUNTIME_WEB, "/bundle/": opened.path, "/": DEMO}


class _DemoHandler(http.server.SimpleHTTPRequestHandler):
    roots: dict[str, Path]  # set on the subclass DemoServer makes

    def translate_path(self, path: str) -> str:
        """The file a URL names under its root; a name outside every root maps to a path that does not exist."""
        url_path = posixpath.normpath(unquote(urlsplit(path).path))
        url_path += "/" if path.endswith("/") and not url_path.endswith("/") else ""
        for prefix, root in self.roots.items():
            if url_path.startswith(prefix) or url_path + "/" == prefix:
                relative = url_path[len(prefix):] or "index.html"
                candidate = (root / relative).resolve()
                if candidate.is_relative_to(root.resolve()) and candidate.is_file():
                    return str(candidate)
        return str(DEMO / "missing")  # 404

    def guess_type(self, path) -> str:
        return MEDIA_TYPES.get(Path(path).suffix, "application/octet-stream")

    def end_headers(self) -> None:
        for name, value in ISOLATION_HEADERS.items():
            self.send_header(name, value)
        self.send_header("Cache-Control", "no-cache")  # the page keeps model files in Cache Storage itself
        super().end_headers()

    def log_message(self, format, *args) -> None:
        pass  # the command prints its address; request lines would bury it


class DemoServer:
    """The demo and a bundle on host:port (port 0: any free port), served from a background thread."""

    def __init__(self, bundle: Path, host: str = "127.0.0.1", port: int = 8000):
        handler = type("Handler", (_DemoHandler,), {"roots": demo_roots(bundle)})
        try:
            self.httpd = http.server.ThreadingHTTPServer((host, port), handler)
        except OSError as err:
            raise EdgeError(f"{host}:{port}: cannot serve there ({err.strerror})") from err
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def __enter__(self) -> DemoServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()
