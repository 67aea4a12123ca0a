"""The web target: ONNX graphs for onnxruntime-web (WebGPU, WASM), and the sampling step as a graph of its own."""

from edge.backends.web.backend import BACKEND

__all__ = ["BACKEND"]
