"""Core ML (Apple Neural Engine): coremltools lowering, and edge's MIL interpreter that runs the packages here."""

from edge.backends.coreml.backend import BACKEND

__all__ = ["BACKEND"]
