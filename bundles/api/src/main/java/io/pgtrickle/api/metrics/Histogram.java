package io.pgtrickle.api.metrics;

import java.util.Arrays;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.DoubleAdder;
import java.util.concurrent.atomic.LongAdder;

/**
 * A Prometheus histogram kept in memory: fixed upper bounds, counts per bucket, sum and count.
 * Thread-safe and lock-free; {@link #observe} costs a few atomic increments.
 */
public final class Histogram {

    /** Bounds in seconds for durations from half a millisecond to a minute. */
    public static final double[] SECONDS = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};

    private final double[] bounds;
    private final AtomicLongArray buckets;
    private final LongAdder count = new LongAdder();
    private final DoubleAdder sum = new DoubleAdder();

    /** @param upperBounds increasing, finite bucket bounds; the {@code +Inf} bucket is implied */
    public Histogram(double... upperBounds) {
        for (int i = 0; i < upperBounds.length; i++) {
            if (!Double.isFinite(upperBounds[i]) || (i > 0 && upperBounds[i] <= upperBounds[i - 1])) {
                throw new IllegalArgumentException("bucket bounds must be finite and increasing: " + Arrays.toString(upperBounds));
            }
        }
        this.bounds = upperBounds.clone();
        this.buckets = new AtomicLongArray(upperBounds.length);
    }

    /** Counts one observation (in the histogram's unit, seconds for {@link #SECONDS}). */
    public void observe(double value) {
        int i = Arrays.binarySearch(bounds, value);
        // the first bucket whose bound is >= value; past the last: only +Inf
        int at = i >= 0 ? i : -i - 1;
        if (at < bounds.length) {
            buckets.incrementAndGet(at);
        }
        sum.add(value);
        count.increment();
    }

    /** The histogram now, buckets cumulative as the text format wants them. */
    public Snapshot snapshot() {
        long[] cumulative = new long[bounds.length];
        long running = 0;
        for (int i = 0; i < bounds.length; i++) {
            running += buckets.get(i);
            cumulative[i] = running;
        }
        // observations are counted in their bucket before the count: a count below the last bucket
        // (an observation half-way) is raised to it, so that +Inf is never below a bucket
        return new Snapshot(bounds.clone(), cumulative, Math.max(running, count.sum()), sum.sum());
    }

    /**
     * @param upperBounds       the buckets' bounds
     * @param cumulativeCounts  observations at or below each bound
     * @param count             all observations (the {@code +Inf} bucket)
     * @param sum               their sum
     */
    public record Snapshot(double[] upperBounds, long[] cumulativeCounts, long count, double sum) {
    }
}
