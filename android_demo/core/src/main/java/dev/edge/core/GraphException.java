package dev.edge.core;

/** A graph's runtime refused an input or failed while running: one line naming the graph. */
public final class GraphException extends Exception {
    public GraphException(String message) {
        super(message);
    }

    public GraphException(String message, Throwable cause) {
        super(message, cause);
    }
}
