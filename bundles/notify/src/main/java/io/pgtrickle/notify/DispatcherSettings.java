package io.pgtrickle.notify;

/**
 * How the dispatcher polls and retries.
 *
 * @param pollIntervalMs milliseconds between two claims for an idle sink
 * @param batchSize      notifications claimed at once for one sink
 * @param leaseMs        how long a claimed notification is reserved for this container
 * @param retryBaseMs    delay after a first failed delivery; doubles with every further attempt
 * @param retryMaxMs     upper bound of that delay
 * @param parallelDeliveries notifications of one sink in flight at once (of different stream tables)
 */
record DispatcherSettings(long pollIntervalMs, int batchSize, int leaseMs, long retryBaseMs, long retryMaxMs,
                          int parallelDeliveries) {

    /**
     * The default of {@code parallelDeliveries}. On 2 cores, to a receiver in another process, 8 at
     * once kept half of the slots idle waiting for claims and delivered about 3,200/s; 16 and 50 about
     * 4,300 and 5,000/s (docs/benchmarks/subscriptions.md). A claim holds at most one notification per
     * stream table, so this only matters for sinks of many stream tables; threads are started as needed.
     */
    static final int PARALLEL_DELIVERIES = 32;

    DispatcherSettings {
        if (pollIntervalMs < 1 || batchSize < 1 || leaseMs < 1 || retryBaseMs < 0 || retryMaxMs < retryBaseMs
                || parallelDeliveries < 1) {
            throw new IllegalArgumentException("invalid notify settings: pollIntervalMs " + pollIntervalMs + ", batchSize "
                    + batchSize + ", leaseMs " + leaseMs + ", retryBaseMs " + retryBaseMs + ", retryMaxMs " + retryMaxMs
                    + ", parallelDeliveries " + parallelDeliveries);
        }
    }

    static DispatcherSettings defaults() {
        return new DispatcherSettings(200, 50, 60_000, 1_000, 300_000, PARALLEL_DELIVERIES);
    }
}
