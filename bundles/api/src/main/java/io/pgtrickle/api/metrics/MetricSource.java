package io.pgtrickle.api.metrics;

import org.osgi.annotation.versioning.ConsumerType;

/**
 * A bundle's figures, written at each scrape of {@code /metrics} (and each {@code pgtrickle:metrics}).
 * Register it as a service; the metrics bundle calls every registered source in turn. A source
 * writes what it holds in memory, or runs a short query with a timeout of its own: a scrape waits
 * for every source. A family name belongs to one source; one written twice is dropped.
 */
@ConsumerType
public interface MetricSource {

    /** Writes this source's families and samples. An exception drops this source's figures from the scrape. */
    void collect(MetricWriter out) throws Exception;
}
