package io.pgtrickle.api.metrics;

import java.util.Map;
import org.osgi.annotation.versioning.ProviderType;

/**
 * Where a {@link MetricSource} writes: a family, then its samples, then the next family. Labels are
 * name/value pairs, written in the order of their names (use the same names for every sample of a
 * family).
 */
@ProviderType
public interface MetricWriter {

    /** Prometheus' metric types that a source may write. */
    enum Type {
        COUNTER, GAUGE, HISTOGRAM
    }

    /** Starts a family: {@code name} such as {@code pgtrickle_scheduler_ticks_total}, its type and one line of help. */
    MetricWriter family(String name, Type type, String help);

    /** A sample of the current counter or gauge family. */
    MetricWriter sample(Map<String, String> labels, double value);

    /** The buckets, sum and count of the current histogram family, for one set of labels. */
    MetricWriter histogram(Map<String, String> labels, Histogram.Snapshot snapshot);
}
