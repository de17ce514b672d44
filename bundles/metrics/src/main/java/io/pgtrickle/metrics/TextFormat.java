package io.pgtrickle.metrics;

import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Prometheus' text exposition format 0.0.4, written by hand: a few dozen lines, where a metrics
 * library (Micrometer with its Prometheus registry, HdrHistogram, LatencyUtils, the simpleclient)
 * would add five bundles to read numbers that PostgreSQL already aggregates at each scrape.
 */
final class TextFormat {

    private final StringBuilder out = new StringBuilder();
    private final Set<String> families = new HashSet<>();

    /** Starts a metric family. */
    TextFormat family(String name, String type, String help) {
        families.add(name);
        out.append("# HELP ").append(name).append(' ').append(help.replace("\\", "\\\\").replace("\n", "\\n")).append('\n');
        out.append("# TYPE ").append(name).append(' ').append(type).append('\n');
        return this;
    }

    TextFormat sample(String name, Map<String, String> labels, double value) {
        out.append(name);
        if (!labels.isEmpty()) {
            out.append('{');
            boolean first = true;
            for (Map.Entry<String, String> l : labels.entrySet()) {
                out.append(first ? "" : ",").append(l.getKey()).append("=\"").append(escape(l.getValue())).append('"');
                first = false;
            }
            out.append('}');
        }
        out.append(' ').append(number(value)).append('\n');
        return this;
    }

    static Map<String, String> labels(String... pairs) {
        Map<String, String> m = new LinkedHashMap<>();
        for (int i = 0; i < pairs.length; i += 2) {
            m.put(pairs[i], pairs[i + 1]);
        }
        return m;
    }

    static Map<String, String> with(Map<String, String> labels, String name, String value) {
        Map<String, String> m = new LinkedHashMap<>(labels);
        m.put(name, value);
        return m;
    }

    static String escape(String value) {
        return value.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n");
    }

    static String number(double v) {
        if (Double.isInfinite(v)) {
            return v > 0 ? "+Inf" : "-Inf";
        }
        if (Double.isNaN(v)) {
            return "NaN";
        }
        return v == Math.rint(v) && Math.abs(v) < 1e15 ? Long.toString((long) v) : Double.toString(v);
    }

    /** The {@code le} label of a bucket bound. */
    static String le(double bound) {
        return Double.isInfinite(bound) ? "+Inf" : Double.toString(bound);
    }

    static final List<Double> DURATION_BUCKETS = List.of(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0);

    /** Whether a family of this name has been written. */
    boolean has(String family) {
        return families.contains(family);
    }

    /** Appends what {@code other} holds. */
    void append(TextFormat other) {
        out.append(other.out);
        families.addAll(other.families);
    }

    @Override
    public String toString() {
        return out.toString();
    }
}
