package io.pgtrickle.bench;

/** Fixed-rate loops of the benchmark threads (readers, writers, refreshers), on System.nanoTime. */
final class Pacing {

    private Pacing() {
    }

    /** Sleeps until {@code due}, to the nanosecond Thread.sleep allows; returns at once if it has passed. */
    static void sleepUntil(long due) throws InterruptedException {
        long wait = due - System.nanoTime();
        if (wait > 0) {
            Thread.sleep(wait / 1_000_000L, (int) (wait % 1_000_000L));
        }
    }

    /**
     * The next beat {@code step} after {@code previous}, slept until; a loop that fell behind starts
     * again from now rather than running beats back to back to catch up.
     */
    static long nextBeat(long previous, long step) throws InterruptedException {
        long due = previous + step;
        if (due - System.nanoTime() > 0) {
            sleepUntil(due);
            return due;
        }
        return System.nanoTime();
    }
}
