package dev.edge.inpaint;

import dev.edge.core.BundleException;
import dev.edge.core.GraphRunnerFactory;

/** The runtime for a bundle, from its manifest's backend: ExecuTorch for .pte bundles, LiteRT for .tflite ones. */
final class GraphRunners {
    private GraphRunners() {
    }

    static GraphRunnerFactory forBackend(String backend) throws BundleException {
        switch (backend) {
            case "xnnpack":
            case "vulkan":
                return ExecuTorchGraph::open;
            case "tflite":
                return LiteRtGraph::open;
            default:
                throw new BundleException("the bundle's backend is " + backend
                        + ": this app runs xnnpack and vulkan (ExecuTorch) and tflite (LiteRT) bundles");
        }
    }
}
