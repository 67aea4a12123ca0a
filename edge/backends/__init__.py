"""Backends, one per target runtime, found by name: `edge.backends.<name>.BACKEND` (contract: edge.backends.contract)."""

from __future__ import annotations

import importlib

from edge.backends.contract import Backend
from edge.errors import EdgeError


def get_backend(name: str) -> Backend:
    try:
        module = importlib.import_module(f"edge.backends.{name}")
    except ModuleNotFoundError as err:
        raise EdgeError(f"no backend module edge.backends.{name} ({err.name} missing)") from err
    backend = getattr(module, "BACKEND", None)
    if not isinstance(backend, Backend):
        raise EdgeError(f"edge.backends.{name} has no BACKEND implementing edge.backends.contract.Backend")
    return backend
