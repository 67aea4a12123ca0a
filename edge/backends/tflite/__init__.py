"""LiteRT (TFLite): litert-torch conversion, ai-edge-quantizer recipes, ahead-of-time NPU compilation."""

from edge.backends.tflite.backend import BACKEND

__all__ = ["BACKEND"]
