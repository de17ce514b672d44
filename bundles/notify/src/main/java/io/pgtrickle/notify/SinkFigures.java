package io.pgtrickle.notify;

import io.pgtrickle.api.metrics.Histogram;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.util.concurrent.atomic.LongAdder;

/**
 * One sink's deliveries in this container, for {@code /metrics}: how many calls to the sink ended
 * how, and how long a delivered notification took from its creation (the outbox row's
 * {@code created_at}: the start of the refresh's transaction, on the database's clock) to the sink
 * accepting it. Kept per sink id across the sink's services coming and going.
 */
final class SinkFigures {

    /** Bounds in seconds: a loopback delivery takes milliseconds, a retried one minutes. */
    static final double[] LATENCY_BOUNDS = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800};

    final LongAdder delivered = new LongAdder();
    final LongAdder failed = new LongAdder();
    final LongAdder gone = new LongAdder();
    final Histogram latency = new Histogram(LATENCY_BOUNDS);

    void delivered(OffsetDateTime createdAt) {
        delivered.increment();
        // the database's clock against ours: never below zero when they differ a little
        long micros = java.time.Duration.between(createdAt.toInstant(), Instant.now()).toNanos() / 1_000;
        latency.observe(Math.max(0, micros) / 1e6);
    }
}
