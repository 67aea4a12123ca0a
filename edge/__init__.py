"""edge: the compiler pipeline that takes the Moebius inpainting model to phones."""

__version__ = "0.1.0"
