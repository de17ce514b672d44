package io.pgtrickle.notify;

import java.util.concurrent.ThreadLocalRandom;
import java.util.function.DoubleSupplier;

/**
 * Exponential backoff with jitter: after the n-th failed attempt, {@code base * 2^(n-1)} capped at
 * {@code max}, then spread by ±20% so that the retries of many notifications (or containers) do not
 * arrive together.
 */
final class Backoff {

    static final double JITTER = 0.2;

    private final long baseMs;
    private final long maxMs;
    private final DoubleSupplier random;

    Backoff(long baseMs, long maxMs) {
        this(baseMs, maxMs, () -> ThreadLocalRandom.current().nextDouble());
    }

    /** {@code random} yields values in [0, 1). */
    Backoff(long baseMs, long maxMs, DoubleSupplier random) {
        this.baseMs = baseMs;
        this.maxMs = maxMs;
        this.random = random;
    }

    /** Milliseconds to wait after the given failed attempt (1 for the first delivery). */
    int delayMs(int failedAttempt) {
        int doublings = Math.max(0, Math.min(failedAttempt - 1, 62));
        long delay = baseMs;
        for (int i = 0; i < doublings && delay < maxMs; i++) {
            delay = delay * 2;
        }
        delay = Math.min(delay, maxMs);
        double factor = 1 - JITTER + 2 * JITTER * random.getAsDouble();
        return (int) Math.min(Integer.MAX_VALUE, Math.round(delay * factor));
    }
}
