package dev.edge.core;

/** A bundle an app must not run: one line naming the file and the problem (missing, damaged, wrong schema...). */
public final class BundleException extends Exception {
    public BundleException(String message) {
        super(message);
    }

    public BundleException(String message, Throwable cause) {
        super(message, cause);
    }
}
