package dev.edge.core;

import java.util.Map;

/**
 * One loaded program: named float32 inputs (row-major, the manifest's shapes) to named float32 outputs.
 * An app implements it over its runtime (ExecuTorch, LiteRT); tests over the native runner or recorded outputs.
 */
public interface GraphRunner extends AutoCloseable {
    Map<String, float[]> run(Map<String, float[]> inputs) throws GraphException;

    @Override
    default void close() {
    }
}
