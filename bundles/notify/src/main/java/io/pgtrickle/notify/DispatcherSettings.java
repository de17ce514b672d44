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
     * The default of {@code parallelDeliveries}. On loopback, 8 at once left about half of them idle
     * while the lane claimed (docs/benchmarks/subscriptions.md); to an endpoint across a network, a
     * sink's rate is at most this many over the round trip (32 at 20 ms: 1,600/s). A claim holds at
     * most one notification per stream table, so a sink of few stream tables uses fewer; threads are
     * started as needed.
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
}
