package dev.edge.core;

import java.util.ArrayList;
import java.util.List;
import org.json.JSONArray;
import org.json.JSONObject;

/** Typed reads from one JSON object of a manifest; every error names the manifest file and the key's path. */
final class ManifestFields {
    private final JSONObject raw;
    private final String where;
    private final String source;

    ManifestFields(JSONObject raw, String where, String source) {
        this.raw = raw;
        this.where = where;
        this.source = source;
    }

    String path(String key) {
        return where.isEmpty() ? key : where + "." + key;
    }

    BundleException error(String key, String problem) {
        return new BundleException(source + ": manifest '" + path(key) + "' " + problem);
    }

    /** A problem with this object as a whole. */
    BundleException problem(String text) {
        return new BundleException(source + ": manifest '" + where + "' " + text);
    }

    boolean has(String key) {
        return raw.has(key) && !raw.isNull(key);
    }

    Iterable<String> keys() {
        return raw::keys;
    }

    private Object get(String key) throws BundleException {
        if (!raw.has(key)) {
            throw new BundleException(source + ": manifest lacks '" + path(key) + "'");
        }
        return raw.opt(key);
    }

    ManifestFields child(String key) throws BundleException {
        Object value = get(key);
        if (!(value instanceof JSONObject)) {
            throw error(key, "is " + kind(value) + ", expected an object");
        }
        return new ManifestFields((JSONObject) value, path(key), source);
    }

    JSONArray array(String key) throws BundleException {
        Object value = get(key);
        if (!(value instanceof JSONArray)) {
            throw error(key, "is " + kind(value) + ", expected a list");
        }
        return (JSONArray) value;
    }

    /** A list of objects, each as fields of its own ("graphs.unet.inputs[1]"). */
    List<ManifestFields> objects(String key) throws BundleException {
        JSONArray values = array(key);
        List<ManifestFields> result = new ArrayList<>();
        for (int i = 0; i < values.length(); i++) {
            Object value = values.opt(i);
            if (!(value instanceof JSONObject)) {
                throw error(key, "must be a list of objects");
            }
            result.add(new ManifestFields((JSONObject) value, path(key) + "[" + i + "]", source));
        }
        return result;
    }

    String string(String key) throws BundleException {
        Object value = get(key);
        if (!(value instanceof String)) {
            throw error(key, "is " + kind(value) + ", expected a string");
        }
        return (String) value;
    }

    int integer(String key) throws BundleException {
        Object value = get(key);
        if (!(value instanceof Integer)) {
            throw error(key, "is " + kind(value) + ", expected an integer");
        }
        return (Integer) value;
    }

    double number(String key) throws BundleException {
        Object value = get(key);
        if (!(value instanceof Number) || !Double.isFinite(((Number) value).doubleValue())) {
            throw error(key, "is " + kind(value) + ", expected a finite number");
        }
        return ((Number) value).doubleValue();
    }

    float[] numbers(String key) throws BundleException {
        JSONArray values = array(key);
        float[] result = new float[values.length()];
        for (int i = 0; i < result.length; i++) {
            Object value = values.opt(i);
            if (!(value instanceof Number) || !Double.isFinite(((Number) value).doubleValue())) {
                throw error(key, "must be a list of finite numbers");
            }
            result[i] = ((Number) value).floatValue();
        }
        return result;
    }

    int[] integers(String key) throws BundleException {
        JSONArray values = array(key);
        int[] result = new int[values.length()];
        for (int i = 0; i < result.length; i++) {
            Object value = values.opt(i);
            if (!(value instanceof Integer)) {
                throw error(key, "must be a list of integers");
            }
            result[i] = (Integer) value;
        }
        return result;
    }

    String[] strings(String key) throws BundleException {
        JSONArray values = array(key);
        String[] result = new String[values.length()];
        for (int i = 0; i < result.length; i++) {
            Object value = values.opt(i);
            if (!(value instanceof String)) {
                throw error(key, "must be a list of strings");
            }
            result[i] = (String) value;
        }
        return result;
    }

    /** A file name inside the bundle: relative, normalised, no '..', no backslashes (edge.bundle.manifest.bundle_path). */
    String file(String key) throws BundleException {
        String value = string(key);
        checkBundlePath(value, path(key));
        return value;
    }

    void checkBundlePath(String value, String keyPath) throws BundleException {
        boolean normalised = !value.isEmpty() && !value.startsWith("/") && !value.endsWith("/") && !value.contains("\\");
        for (String part : value.split("/", -1)) {
            normalised &= !part.isEmpty() && !part.equals(".") && !part.equals("..");
        }
        if (!normalised) {
            throw new BundleException(source + ": manifest '" + keyPath + "' = '" + value
                    + "' is not a relative path inside the bundle");
        }
    }

    private static String kind(Object value) {
        if (value == null || value == JSONObject.NULL) {
            return "null";
        }
        if (value instanceof JSONObject) {
            return "an object";
        }
        if (value instanceof JSONArray) {
            return "a list";
        }
        if (value instanceof String) {
            return "a string";
        }
        if (value instanceof Boolean) {
            return "a boolean";
        }
        if (value instanceof Number) {
            return value instanceof Integer || value instanceof Long ? "an integer" : "a number";
        }
        return value.getClass().getSimpleName();
    }
}
