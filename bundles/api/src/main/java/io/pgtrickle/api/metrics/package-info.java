/**
 * Figures a bundle knows and the catalog does not (the scheduler's ticks and workers, deliveries to
 * sinks, connected clients), for {@code /metrics} and {@code pgtrickle:metrics}. A bundle registers a
 * {@link io.pgtrickle.api.metrics.MetricSource} service; the metrics bundle owns the whiteboard and
 * asks every source at each scrape, after the figures it reads from the catalog. The names follow
 * Prometheus' conventions: a {@code pgtrickle_} prefix, the unit in the name ({@code _seconds}),
 * counters ending in {@code _total}.
 */
@Export
@Version("1.0.0")
package io.pgtrickle.api.metrics;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
