"""Backends, one per target runtime, found by name: `edge.backends.<name>.BACKEND`, or for a backend kept
outside edge, a dotted module path `package.module` whose BACKEND it is (contract: edge.backends.contract)."""

from __future__ import annotations

import importlib

from edge.backends.contract import Backend
from edge.errors import EdgeError


def get_backend(name: str) -> Backend:
    module_name = name if "." in name else f"edge.backends.{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise EdgeError(f"no backend module {module_name} ({err.name} missing)") from err
    backend = getattr(module, "BACKEND", None)
    if not isinstance(backend, Backend):
        raise EdgeError(f"{module_name} has no BACKEND implementing edge.backends.contract.Backend")
    return backend
