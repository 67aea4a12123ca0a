package dev.edge.core;

import java.io.File;

/** Loads one program of a bundle in a runtime (an app has one per runtime: ExecuTorch, LiteRT). */
public interface GraphRunnerFactory {
    GraphRunner open(File program, GraphSpec spec) throws GraphException;
}
