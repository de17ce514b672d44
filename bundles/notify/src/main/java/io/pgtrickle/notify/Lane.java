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
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import javax.sql.DataSource;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One bound sink: its registration state and its own threads. A batch is delivered by the lane's
 * runner with up to {@code parallelDeliveries} notifications at a time: a claimed batch holds at
 * most one notification per stream table (the oldest queued), so delivering them concurrently keeps
 * refresh order per stream table. Each call to the sink runs on a call thread that is waited for at
 * most the sink's {@code timeoutMs}, then interrupted. So a slow or hung sink holds only its own
 * lane, never the poll thread or another sink.
 */
final class Lane {

    private static final Logger LOG = LoggerFactory.getLogger(Lane.class);

    /**
     * After the first row of a batch, a row is delivered only while at least this much of its lease is
     * left beyond the call's timeout; the rest are handed back for the next claim.
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
    private final ExecutorService deliveries;
    private final ExecutorService calls;
    /**
     * Notifications of one batch in flight at once. One at a time, a loopback webhook managed about
     * 200 deliveries/s (docs/benchmarks/subscriptions.md): the sink's round trip, not the outbox,
     * is the cost, and notifications of different stream tables need not wait for each other.
     */
    private final int parallel;
    private final AtomicBoolean inFlight = new AtomicBoolean();
    private final Queue<Outbox.Row> delivered = new ConcurrentLinkedQueue<>();
    private final AtomicBoolean completing = new AtomicBoolean();
    private volatile boolean registered;
    private volatile boolean closed;
    private volatile boolean releaseOnClose;
    private String lastProblem; // poll thread only

    Lane(Candidate candidate, DataSource dataSource, Backoff backoff, SinkFigures figures, int parallelDeliveries) {
        this.candidate = candidate;
        this.parallel = parallelDeliveries;
        this.dataSource = dataSource;
        this.backoff = backoff;
        this.figures = figures;
        String name = "pgtrickle-notify-" + candidate.spec().sinkId();
        this.runner = Executors.newSingleThreadExecutor(threads(name));
        this.deliveries = Executors.newFixedThreadPool(parallel, threads(name + "-delivery"));
        this.calls = Executors.newCachedThreadPool(threads(name + "-call"));
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

    /** Idle: no batch being delivered, so the poll thread may claim the next one. */
    boolean idle() {
        return !closed && !inFlight.get();
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
     * Poll thread: hands a claimed batch to the runner, which runs {@code whenDone} once the lane is
     * idle again. False when the lane has closed meanwhile: the caller releases the rows.
     */
    boolean dispatch(List<Outbox.Row> rows, long leaseDeadlineNanos, Runnable whenDone) {
        if (!inFlight.compareAndSet(false, true)) {
            return false;
        }
        try {
            runner.execute(() -> {
                deliver(rows, leaseDeadlineNanos);
                whenDone.run();
            });
            return true;
        } catch (RejectedExecutionException e) {
            inFlight.set(false);
            return false;
        }
    }

    /**
     * Stops the lane: the runner and any call are interrupted. With {@code release} (the sink left
     * while the container runs on) the undelivered rows of the batch are handed back at once;
     * without (deactivation) their leases simply run out.
     */
    void close(boolean release) {
        releaseOnClose = release;
        closed = true;
        runner.shutdownNow();
        deliveries.shutdownNow();
        calls.shutdownNow();
    }

    /** Waits a little for the runner to notice (tests and clean shutdown). */
    boolean awaitClosed(long millis) throws InterruptedException {
        return runner.awaitTermination(millis, TimeUnit.MILLISECONDS);
    }

    private enum Outcome { DELIVERED, FAILED, GONE }

    private void deliver(List<Outbox.Row> rows, long leaseDeadlineNanos) {
        List<Future<?>> pending = new ArrayList<>();
        try {
            for (int i = 0; i < rows.size(); i++) {
                Outbox.Row row = rows.get(i);
                // the first ones start at once; the others wait for a free delivery thread
                boolean queued = i >= parallel;
                pending.add(deliveries.submit(() -> {
                    deliverWithinLease(row, leaseDeadlineNanos, queued);
                    return null;
                }));
            }
            for (Future<?> f : pending) {
                try {
                    f.get();
                } catch (ExecutionException e) {
                    LOG.error("Notification sink {}: a delivery failed", sinkId(), e.getCause());
                }
            }
        } catch (InterruptedException | RejectedExecutionException e) {
            pending.forEach(f -> f.cancel(true));
        } finally {
            inFlight.set(false);
        }
    }

    /** One row of a batch: delivered, or handed back if the lane closed or (queued) its lease ran short. */
    private void deliverWithinLease(Outbox.Row row, long leaseDeadlineNanos, boolean queued) {
        if (closed) {
            if (releaseOnClose) {
                release(List.of(row), "not attempted: sink " + sinkId() + " left");
            }
            return;
        }
        long leftMs = (leaseDeadlineNanos - System.nanoTime()) / 1_000_000;
        if (queued && leftMs < candidate.spec().timeoutMs() + LEASE_MARGIN_MS) {
            // another container may claim it once the lease is over: hand it back now
            release(List.of(row), "not attempted: lease ran short");
            return;
        }
        try {
            deliver(row);
        } catch (InterruptedException e) {
            if (releaseOnClose) {
                Thread.interrupted(); // the JDBC calls below need a quiet thread
                release(List.of(row), "interrupted: sink " + sinkId() + " left");
            }
        }
    }

    private Outcome deliver(Outbox.Row row) throws InterruptedException {
        SinkSpec spec = candidate.spec();
        Notification notification;
        try {
            notification = row.toNotification(sinkId());
        } catch (RuntimeException e) {
            figures.failed.increment();
            fail(row, "unreadable outbox row: " + e.getMessage());
            return Outcome.FAILED;
        }
        Future<?> call;
        try {
            call = calls.submit(() -> {
                candidate.sink().deliver(notification);
                return null;
            });
        } catch (RejectedExecutionException e) {
            throw new InterruptedException("lane closed");
        }
        try {
            call.get(spec.timeoutMs(), TimeUnit.MILLISECONDS);
        } catch (ExecutionException e) {
            Throwable cause = e.getCause() == null ? e : e.getCause();
            if (cause instanceof SinkGoneException) {
                figures.gone.increment();
                gone(row, cause.getMessage() == null ? "gone" : cause.getMessage());
                return Outcome.GONE;
            }
            figures.failed.increment();
            fail(row, describe(cause));
            return Outcome.FAILED;
        } catch (TimeoutException e) {
            call.cancel(true);
            figures.failed.increment();
            fail(row, "timed out after " + spec.timeoutMs() + " ms");
            return Outcome.FAILED;
        } catch (InterruptedException e) {
            call.cancel(true);
            throw e;
        }
        figures.delivered(row.createdAt());
        completed(row);
        return Outcome.DELIVERED;
    }

    /**
     * Completes delivered rows in groups, like a group commit: the delivery that finds no completion
     * running deletes everything delivered so far in one statement, and goes round again while others
     * queued more meanwhile. Under load one round trip serves many deliveries; alone, a delivery is
     * completed at once. A row queued while another delivery is completing is taken by that
     * delivery's next round (or, if that one has just finished, by its own), so every row is completed
     * before the batch's last delivery task ends: before its stream table's next notification can be
     * claimed.
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
