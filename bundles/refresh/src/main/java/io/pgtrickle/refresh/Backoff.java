package io.pgtrickle.refresh;

import java.util.Collection;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;

/**
 * When a stream table whose refresh failed may be tried again: 1 s after the first failure, doubling
 * per further failure in a row, at most 60 s (pg_trickle's retry policy). Kept in memory only: the
 * durable count that suspends a stream table is {@code pgt_stream_tables.consecutive_errors}; a
 * restarted container merely retries a little sooner.
 */
final class Backoff {

    static final long BASE_NANOS = TimeUnit.SECONDS.toNanos(1);
    static final long CAP_NANOS = TimeUnit.SECONDS.toNanos(60);

    private record Entry(int failures, long notBeforeNanos) {
    }

    private final Map<Long, Entry> entries = new ConcurrentHashMap<>();

    /** The pause after {@code failures} failures in a row (at least 1). */
    static long delayNanos(int failures) {
        // 2^6 s already exceeds the cap; stop shifting there so large counts cannot overflow
        int doublings = Math.min(Math.max(failures, 1) - 1, 6);
        return Math.min(BASE_NANOS << doublings, CAP_NANOS);
    }

    boolean ready(long pgtId, long nowNanos) {
        Entry e = entries.get(pgtId);
        return e == null || nowNanos - e.notBeforeNanos >= 0;
    }

    /** Records a failure; returns the pause before the next attempt, in nanoseconds. */
    long failed(long pgtId, long nowNanos) {
        Entry e = entries.compute(pgtId, (id, old) -> {
            int failures = old == null ? 1 : old.failures + 1;
            return new Entry(failures, nowNanos + delayNanos(failures));
        });
        return e.notBeforeNanos - nowNanos;
    }

    void succeeded(long pgtId) {
        entries.remove(pgtId);
    }

    /**
     * Forgets stream tables that are no longer due (suspended, dropped, refreshed elsewhere) and
     * whose pause is over, so the map does not grow with every stream table that ever failed and a
     * resumed stream table starts again at the base delay.
     */
    void forgetAllBut(Collection<Long> due, long nowNanos) {
        entries.entrySet().removeIf(e -> !due.contains(e.getKey()) && nowNanos - e.getValue().notBeforeNanos >= 0);
    }

    int size() {
        return entries.size();
    }
}
