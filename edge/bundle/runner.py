"""The runner over a bundle: its three programs loaded in their runtime, as the sampling loop's graphs."""

from __future__ import annotations

from edge.bundle.bundle import Bundle
from edge.compile.graphs import GRAPH_NAMES
from edge.pipeline.loop import CallableGraphs


class BundleGraphs(CallableGraphs):
    """A bundle's three programs in their runtime, as InpaintGraphs for the shared sampling loop."""

    def __init__(self, bundle: Bundle):
        super().__init__(*(bundle.load_program(name) for name in GRAPH_NAMES))
