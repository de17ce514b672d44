package io.pgtrickle.metrics;

import io.pgtrickle.api.metrics.Histogram;
import io.pgtrickle.api.metrics.MetricWriter;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Pattern;

/**
 * What a {@link io.pgtrickle.api.metrics.MetricSource} writes, checked against the text format and
 * kept aside until the source is done: a source that throws half-way adds nothing, and a family
 * another source (or the catalog) wrote already is dropped with its samples.
 */
final class SourceWriter implements MetricWriter {

    private static final Pattern NAME = Pattern.compile("[a-zA-Z_:][a-zA-Z0-9_:]*");
    private static final Pattern LABEL = Pattern.compile("[a-zA-Z_][a-zA-Z0-9_]*");

    private final TextFormat into;
    private final TextFormat buffer = new TextFormat();
    private String family;
    private Type type;
    private boolean dropped;

    SourceWriter(TextFormat into) {
        this.into = into;
    }

    @Override
    public MetricWriter family(String name, Type type, String help) {
        if (name == null || !NAME.matcher(name).matches() || type == null) {
            throw new IllegalArgumentException("not a metric family: " + name + " " + type);
        }
        family = name;
        this.type = type;
        dropped = into.has(name) || buffer.has(name);
        if (!dropped) {
            buffer.family(name, type.name().toLowerCase(Locale.ROOT), help == null ? "" : help);
        }
        return this;
    }

    @Override
    public MetricWriter sample(Map<String, String> labels, double value) {
        expect(Type.COUNTER, Type.GAUGE);
        check(labels);
        if (!dropped) {
            buffer.sample(family, new TreeMap<>(labels), value);
        }
        return this;
    }

    @Override
    public MetricWriter histogram(Map<String, String> labels, Histogram.Snapshot snapshot) {
        expect(Type.HISTOGRAM, Type.HISTOGRAM);
        check(labels);
        if (labels.containsKey("le")) {
            throw new IllegalArgumentException("'le' is the histogram's own label");
        }
        if (!dropped) {
            labels = new TreeMap<>(labels);
            double[] bounds = snapshot.upperBounds();
            for (int i = 0; i < bounds.length; i++) {
                buffer.sample(family + "_bucket", TextFormat.with(labels, "le", TextFormat.le(bounds[i])), snapshot.cumulativeCounts()[i]);
            }
            buffer.sample(family + "_bucket", TextFormat.with(labels, "le", "+Inf"), snapshot.count());
            buffer.sample(family + "_sum", labels, snapshot.sum());
            buffer.sample(family + "_count", labels, snapshot.count());
        }
        return this;
    }

    private void expect(Type one, Type other) {
        if (family == null) {
            throw new IllegalStateException("a sample before its family");
        }
        if (type != one && type != other) {
            throw new IllegalStateException(family + " is a " + type + " family");
        }
    }

    private static void check(Map<String, String> labels) {
        for (Map.Entry<String, String> l : labels.entrySet()) {
            if (!LABEL.matcher(l.getKey()).matches() || l.getKey().startsWith("__") || l.getValue() == null) {
                throw new IllegalArgumentException("not a label: " + l);
            }
        }
    }

    /** The source is done: what it wrote joins the scrape. */
    void commit() {
        into.append(buffer);
    }
}
