package io.pgtrickle.notify;

import io.pgtrickle.api.notify.Notification;
import io.pgtrickle.api.notify.NotificationSink;
import io.pgtrickle.api.notify.SinkGoneException;
import java.sql.Connection;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.List;
import java.util.Queue;
import java.util.Set;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.Semaphore;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import javax.sql.DataSource;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One bound sink: its registration state and its own threads. Claimed rows are delivered by the
 * lane's runner with up to {@code parallelDeliveries} notifications at a time: a claim takes at most
 * one notification per stream table (the oldest queued) and none of a stream table whose oldest is
 * still claimed, so delivering them concurrently keeps refresh order per stream table. The poll
 * thread claims again as soon as fewer rows than that are outstanding, without waiting for the
 * slowest of the claim before: a slow delivery holds back only its own stream table. Each delivery
 * runs on a call thread of its own, which calls the sink and records the outcome; a timer gives up
 * on a call after the sink's {@code timeoutMs}: it interrupts the call, records the failure and
 * frees the call's slot, whether or not the call ever returns. So a slow or hung sink holds only
 * its own lane, never the poll thread or another sink.
 */
final class Lane {

    private static final Logger LOG = LoggerFactory.getLogger(Lane.class);

    /**
     * A row that had to wait for a free slot is delivered only while at least this much of its lease is
     * left beyond the call's timeout; else it is handed back for the next claim.
     */
    static final long LEASE_MARGIN_MS = 1_000;

    /** The whiteboard's candidate for a sink id: the service, what it says, and its rank. */
    record Candidate(NotificationSink sink, SinkSpec spec, int ranking, long key) {
        boolean same(Candidate other) {
            return other != null && sink == other.sink && key == other.key && spec.equals(other.spec);
        }
    }

    private final Candidate candidate;
    private final DataSource dataSource;
    private final Backoff backoff;
    private final SinkFigures figures;
    private final ExecutorService runner;
    private final ExecutorService calls;
    private final ScheduledThreadPoolExecutor timer;
    /**
     * Notifications in flight at once. One at a time, a loopback webhook managed about
     * 200 deliveries/s (docs/benchmarks/subscriptions.md): the sink's round trip, not the outbox,
     * is the cost, and notifications of different stream tables need not wait for each other.
     */
    private final Semaphore slots;
    private final int parallel;
    /** Rows claimed for this lane whose outcome is not recorded yet. */
    private final AtomicInteger outstanding = new AtomicInteger();
    /** What the poll thread gave with the last claim: a request to claim again soon. */
    private volatile Runnable wake = () -> { };
    private final Queue<Outbox.Row> delivered = new ConcurrentLinkedQueue<>();
    private final AtomicBoolean completing = new AtomicBoolean();
    private volatile boolean registered;
    private volatile boolean closed;
    private volatile boolean releaseOnClose;
    private String lastProblem; // poll thread only

    Lane(Candidate candidate, DataSource dataSource, Backoff backoff, SinkFigures figures, int parallelDeliveries) {
        this.candidate = candidate;
        this.slots = new Semaphore(parallelDeliveries);
        this.parallel = parallelDeliveries;
        this.dataSource = dataSource;
        this.backoff = backoff;
        this.figures = figures;
        String name = "pgtrickle-notify-" + candidate.spec().sinkId();
        this.runner = Executors.newSingleThreadExecutor(threads(name));
        // a delivery is one hand-off from the runner to a call thread, which stays with it to the end:
        // every further hand-off per delivery costs CPU that the deliveries need (subscriptions.md)
        this.calls = Executors.newCachedThreadPool(threads(name + "-call"));
        this.timer = new ScheduledThreadPoolExecutor(1, threads(name + "-timeout"));
        timer.setRemoveOnCancelPolicy(true); // a delivery that finishes in time leaves nothing behind
    }

    private static ThreadFactory threads(String name) {
        AtomicInteger n = new AtomicInteger();
        return r -> {
            Thread t = new Thread(r, name + "-" + n.incrementAndGet());
            t.setDaemon(true);
            return t;
        };
    }

    Candidate candidate() {
        return candidate;
    }

    String sinkId() {
        return candidate.spec().sinkId();
    }

    boolean registered() {
        return registered;
    }

    boolean closed() {
        return closed;
    }

    /** Room for more: fewer rows outstanding than delivery slots, so the poll thread may claim again. */
    boolean idle() {
        return !closed && outstanding.get() < parallel;
    }

    /** Poll thread: registers the sink (again after a failure); true when registered. */
    boolean register(Connection c) {
        try {
            Outbox.register(c, sinkId(), candidate.spec().channels());
            registered = true;
            lastProblem = null;
            LOG.info("Notification sink {} registered for channels {}", sinkId(), candidate.spec().channels());
            return true;
        } catch (SQLException e) {
            problem("could not register notification sink " + sinkId() + ", retrying: " + e.getMessage());
            return false;
        }
    }

    /** Poll thread: a claim failed (logged once until it works again). */
    void claimFailed(SQLException e) {
        problem("could not claim notifications for sink " + sinkId() + ": " + e.getMessage());
    }

    void claimWorked() {
        lastProblem = null;
    }

    private void problem(String message) {
        if (!message.equals(lastProblem)) {
            LOG.warn(message);
            lastProblem = message;
        } else {
            LOG.debug(message);
        }
    }

    /**
     * Poll thread: hands claimed rows to the runner. {@code whenRoom} runs whenever a row's outcome is
     * recorded while fewer rows than delivery slots are outstanding. False when the lane has closed
     * meanwhile: the caller releases the rows.
     */
    boolean dispatch(List<Outbox.Row> rows, long leaseDeadlineNanos, Runnable whenRoom) {
        wake = whenRoom;
        outstanding.addAndGet(rows.size());
        try {
            runner.execute(() -> deliver(rows, leaseDeadlineNanos));
            return true;
        } catch (RejectedExecutionException e) {
            outstanding.addAndGet(-rows.size());
            return false;
        }
    }

    /**
     * Stops the lane: the runner and any call are interrupted. With {@code release} (the sink left
     * while the container runs on) the claimed rows not delivered are handed back at once;
     * without (deactivation) their leases simply run out.
     */
    void close(boolean release) {
        releaseOnClose = release;
        closed = true;
        runner.shutdownNow();
        calls.shutdownNow();
        timer.shutdownNow();
    }

    /** Waits a little for the runner to notice (tests and clean shutdown). */
    boolean awaitClosed(long millis) throws InterruptedException {
        return runner.awaitTermination(millis, TimeUnit.MILLISECONDS);
    }

    /** Runner: starts the claimed rows' deliveries as slots free up. */
    private void deliver(List<Outbox.Row> rows, long leaseDeadlineNanos) {
        int started = 0;
        try {
            for (int i = 0; i < rows.size(); i++) {
                // the first ones start at once; the others wait for a free slot
                boolean waited = !slots.tryAcquire();
                if (waited) {
                    slots.acquire();
                }
                Delivery d = new Delivery(rows.get(i));
                long leftMs = (leaseDeadlineNanos - System.nanoTime()) / 1_000_000;
                if (closed) {
                    d.handBack("not attempted: sink " + sinkId() + " left");
                } else if (waited && leftMs < candidate.spec().timeoutMs() + LEASE_MARGIN_MS) {
                    // another container may claim it once the lease is over: hand it back now
                    d.handBack("not attempted: lease ran short");
                } else {
                    d.start();
                }
                started = i + 1;
            }
        } catch (InterruptedException | RejectedExecutionException e) {
            // the lane closed: the rows not started are handed back, or their leases run out
            outstanding.addAndGet(started - rows.size());
            if (releaseOnClose && started < rows.size()) {
                Thread.interrupted(); // the JDBC calls below need a quiet thread
                release(rows.subList(started, rows.size()), "not attempted: sink " + sinkId() + " left");
            }
        }
    }

    /**
     * One claimed row, from its start to its outcome. Whoever decides it first records the outcome,
     * then frees its slot: its call thread when the sink returns or throws, or the timer when the call
     * takes longer than the sink's timeout (the call is then interrupted, and whatever it does later
     * is ignored).
     */
    private final class Delivery implements Runnable {
        private final Outbox.Row row;
        private final AtomicBoolean decided = new AtomicBoolean();
        private volatile Future<?> call;
        private volatile ScheduledFuture<?> timeout;

        Delivery(Outbox.Row row) {
            this.row = row;
        }

        void start() {
            try {
                call = calls.submit(this);
            } catch (RejectedExecutionException e) {
                decide(); // closing: the runner hands it back with the rest
                slots.release();
                throw e;
            }
        }

        /** Not attempted: handed back at once, due again, never dead for it. */
        void handBack(String why) {
            if (decide()) {
                release(List.of(row), why);
                finish();
            }
        }

        /** True for the one who records the outcome. */
        private boolean decide() {
            if (!decided.compareAndSet(false, true)) {
                return false;
            }
            ScheduledFuture<?> t = timeout;
            if (t != null) {
                t.cancel(false);
            }
            return true;
        }

        /** The outcome is recorded: the slot is free, and with room for more the poll thread claims again. */
        private void finish() {
            slots.release();
            if (outstanding.decrementAndGet() < parallel) {
                wake.run();
            }
        }

        @Override
        public void run() {
            if (closed) {
                closing();
                return;
            }
            Notification notification;
            try {
                notification = row.toNotification(sinkId());
            } catch (RuntimeException e) {
                if (decide()) {
                    figures.failed.increment();
                    fail(row, "unreadable outbox row: " + e.getMessage());
                    finish();
                }
                return;
            }
            try {
                timeout = timer.schedule(this::timedOut, candidate.spec().timeoutMs(), TimeUnit.MILLISECONDS);
                candidate.sink().deliver(notification);
            } catch (Throwable t) {
                failed(t);
                return;
            }
            if (decide()) {
                figures.delivered(row.createdAt());
                completed(row);
                finish();
            }
        }

        /** The lane closed before or under the call: the row is handed back (the sink left) or keeps its lease. */
        private void closing() {
            if (decide()) {
                if (releaseOnClose) {
                    Thread.interrupted(); // the JDBC calls below need a quiet thread
                    release(List.of(row), "interrupted: sink " + sinkId() + " left");
                }
                finish();
            }
        }

        private void failed(Throwable cause) {
            if (closed) {
                closing();
                return;
            }
            if (!decide()) {
                return; // timed out meanwhile: the timer recorded it
            }
            Thread.interrupted(); // an interrupt meant for the call is not one for the JDBC calls below
            if (cause instanceof SinkGoneException) {
                figures.gone.increment();
                gone(row, cause.getMessage() == null ? "gone" : cause.getMessage());
            } else {
                figures.failed.increment();
                fail(row, describe(cause));
            }
            finish();
        }

        /** Timer: the call took longer than the sink's timeout. */
        private void timedOut() {
            if (!decide()) {
                return;
            }
            Future<?> c = call;
            if (c != null) {
                c.cancel(true);
            }
            figures.failed.increment();
            fail(row, "timed out after " + candidate.spec().timeoutMs() + " ms");
            finish();
        }
    }

    /**
     * Completes delivered rows in groups, like a group commit: the delivery that finds no completion
     * running deletes everything delivered so far in one statement, and goes round again while others
     * queued more meanwhile. Under load one round trip serves many deliveries; alone, a delivery is
     * completed at once. A row queued while another delivery is completing is taken by that
     * delivery's next round (or, if that one has just finished, by its own). Until it is deleted the
     * row keeps its claim, so no claim can take its stream table's next notification before.
     */
    private void completed(Outbox.Row row) {
        delivered.add(row);
        while (!delivered.isEmpty() && completing.compareAndSet(false, true)) {
            try {
                List<Outbox.Row> group = new ArrayList<>();
                for (Outbox.Row r; (r = delivered.poll()) != null; ) {
                    group.add(r);
                }
                complete(group);
            } finally {
                completing.set(false);
            }
        }
    }

    private void complete(List<Outbox.Row> group) {
        if (group.isEmpty()) {
            return;
        }
        try (Connection c = dataSource.getConnection()) {
            c.setAutoCommit(true);
            Set<Long> done = Outbox.complete(c, group);
            for (Outbox.Row row : group) {
                if (!done.contains(row.outboxId())) {
                    LOG.warn("Notification sink {}: notification {} was delivered after its lease ran out and was claimed again; "
                            + "it will come again (raise the lease above the sink's timeout)", sinkId(), row.id());
                }
            }
        } catch (SQLException e) {
            LOG.warn("Notification sink {}: {} delivered notifications could not be completed ({}); they will come again",
                    sinkId(), group.size(), e.getMessage());
        }
    }

    private static String describe(Throwable t) {
        String message = t.getMessage();
        return message == null || message.isBlank() ? t.getClass().getName() : t.getClass().getName() + ": " + message;
    }

    private void fail(Outbox.Row row, String error) {
        int delay = backoff.delayMs(row.attempts());
        try (Connection c = dataSource.getConnection()) {
            c.setAutoCommit(true);
            String verdict = Outbox.fail(c, row, error, delay, candidate.spec().maxAttempts());
            if ("DEAD".equals(verdict)) {
                LOG.warn("Notification sink {}: notification {} ({}, refresh {}) is a dead letter after {} attempts; last error: {}",
                        sinkId(), row.id(), row.streamTable(), row.refreshId(), row.attempts(), Outbox.clean(error));
            } else {
                LOG.debug("Notification sink {}: attempt {} of notification {} failed, retrying in {} ms: {}",
                        sinkId(), row.attempts(), row.id(), delay, error);
            }
        } catch (SQLException e) {
            LOG.warn("Notification sink {}: could not record the failure of notification {} ({}); it comes again after its lease",
                    sinkId(), row.id(), e.getMessage());
        }
    }

    private void gone(Outbox.Row row, String reason) {
        LOG.warn("Notification sink {} is gone and is disabled (pgtrickle.enable_sink('{}') re-enables it): {}",
                sinkId(), sinkId(), reason);
        try (Connection c = dataSource.getConnection()) {
            c.setAutoCommit(true);
            Outbox.disable(c, sinkId(), reason);
            Outbox.fail(c, row, reason, 0, Integer.MAX_VALUE);
        } catch (SQLException e) {
            LOG.warn("Notification sink {}: could not disable it ({}); retrying with the next notification", sinkId(), e.getMessage());
        }
    }

    /** Hands claimed rows back undelivered: due at once, never dead for it. */
    private void release(List<Outbox.Row> rows, String why) {
        if (rows.isEmpty()) {
            return;
        }
        try (Connection c = dataSource.getConnection()) {
            c.setAutoCommit(true);
            for (Outbox.Row row : rows) {
                Outbox.fail(c, row, why, 0, Integer.MAX_VALUE);
            }
        } catch (SQLException e) {
            LOG.debug("Notification sink {}: could not release {} notifications ({}); their leases run out", sinkId(),
                    rows.size(), e.getMessage());
        }
    }
}
