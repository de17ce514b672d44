package io.pgtrickle.notify;

import io.pgtrickle.api.notify.NotificationSink;
import io.pgtrickle.api.notify.NotificationSinkType;
import java.sql.Connection;
import java.sql.SQLException;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import javax.sql.DataSource;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Delivers the catalog's outbox to the bound {@link NotificationSink}s.
 *
 * <p>The whiteboard calls {@link #add}/{@link #remove} with each service's properties; of the
 * services claiming one sink id the highest {@code service.ranking} wins, then the lowest service id.
 * Every winner gets a {@link Lane}. One poll thread, every {@code pollIntervalMs} and whenever a lane
 * has room for more, registers lanes not yet registered ({@code pgtrickle.register_sink}) and, for
 * each lane with room, claims a batch ({@code pgtrickle.claim_notifications}) and hands it to that
 * lane. A sink that leaves stays registered in the database: its notifications keep queueing for
 * its return.
 */
final class NotificationDispatcher implements AutoCloseable {

    private static final Logger LOG = LoggerFactory.getLogger(NotificationDispatcher.class);

    /** OSGi's service order: highest ranking, then registered first. */
    private static final Comparator<Lane.Candidate> ORDER =
            Comparator.comparingInt(Lane.Candidate::ranking).reversed().thenComparingLong(Lane.Candidate::key);

    private final DataSource dataSource;
    private final DispatcherSettings settings;
    private final Backoff backoff;
    private final Map<Long, Lane.Candidate> candidates = new HashMap<>(); // guarded by this
    private final Set<Long> untyped = new HashSet<>(); // guarded by this: services already warned about
    private final Map<String, Lane> lanes = new ConcurrentHashMap<>();
    /** Per sink id: its deliveries so far, kept while its services come and go. */
    private final Map<String, SinkFigures> figures = new ConcurrentHashMap<>();
    private final ScheduledExecutorService poller;
    private volatile boolean closed;
    /** A poll is queued on the poll thread: lanes asking for one meanwhile need not queue another. */
    private final AtomicBoolean pollQueued = new AtomicBoolean();
    private boolean databaseDown; // poll thread only

    NotificationDispatcher(DataSource dataSource, DispatcherSettings settings) {
        this.dataSource = dataSource;
        this.settings = settings;
        this.backoff = new Backoff(settings.retryBaseMs(), settings.retryMaxMs());
        this.poller = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "pgtrickle-notify-poll");
            t.setDaemon(true);
            return t;
        });
    }

    /** Starts polling. */
    void start() {
        poller.scheduleWithFixedDelay(this::poll, 0, settings.pollIntervalMs(), TimeUnit.MILLISECONDS);
    }

    /** A sink service arrived, or its properties changed. */
    synchronized void add(NotificationSink sink, Map<String, ?> properties) {
        long key = key(properties);
        SinkSpec spec = SinkSpec.of(properties);
        Lane.Candidate previous;
        if (spec == null) {
            if (untyped.add(key)) {
                LOG.warn("Ignoring notification sink service {} ({}): it has no {} property", key, sink.getClass().getName(),
                        NotificationSinkType.TYPE);
            }
            previous = candidates.remove(key);
        } else {
            untyped.remove(key);
            previous = candidates.put(key, new Lane.Candidate(sink, spec, ranking(properties), key));
            reconcile(spec.sinkId());
        }
        if (previous != null && (spec == null || !previous.spec().sinkId().equals(spec.sinkId()))) {
            reconcile(previous.spec().sinkId());
        }
    }

    /** A sink service left. Its registration and queue stay in the database. */
    synchronized void remove(Map<String, ?> properties) {
        long key = key(properties);
        untyped.remove(key);
        Lane.Candidate previous = candidates.remove(key);
        if (previous != null) {
            reconcile(previous.spec().sinkId());
        }
    }

    /** Makes the lane of a sink id follow the best candidate for it. */
    private void reconcile(String sinkId) {
        Optional<Lane.Candidate> best = candidates.values().stream().filter(c -> c.spec().sinkId().equals(sinkId)).min(ORDER);
        Lane lane = lanes.get(sinkId);
        if (lane != null && best.isPresent() && lane.candidate().same(best.get())) {
            return;
        }
        if (lane != null) {
            lanes.remove(sinkId);
            lane.close(true);
            if (best.isEmpty()) {
                LOG.info("Notification sink {} left; its notifications queue until it returns", sinkId);
            }
        }
        if (best.isPresent() && !closed) {
            Lane.Candidate winner = best.get();
            long rivals = candidates.values().stream().filter(c -> c.spec().sinkId().equals(sinkId)).count() - 1;
            if (rivals > 0) {
                LOG.warn("{} notification sink services claim the sink id {}: service {} (ranking {}) delivers", rivals + 1,
                        sinkId, winner.key(), winner.ranking());
            }
            if (winner.spec().timeoutMs() + Lane.LEASE_MARGIN_MS > settings.leaseMs()) {
                LOG.warn("Notification sink {}: its timeoutMs ({}) is not well below the lease ({} ms): a slow delivery may "
                        + "be claimed and delivered again elsewhere", sinkId, winner.spec().timeoutMs(), settings.leaseMs());
            }
            lanes.put(sinkId, new Lane(winner, dataSource, backoff, figures.computeIfAbsent(sinkId, k -> new SinkFigures()),
                    settings.parallelDeliveries()));
        }
    }

    private static long key(Map<String, ?> properties) {
        Object id = properties.get("service.id");
        if (!(id instanceof Number n)) {
            throw new IllegalArgumentException("a sink service needs its service.id");
        }
        return n.longValue();
    }

    private static int ranking(Map<String, ?> properties) {
        // OSGi: a service.ranking that is not an Integer counts as 0
        Object r = properties.get("service.ranking");
        return r instanceof Integer i ? i : 0;
    }

    /** Every sink's deliveries in this dispatcher's life, by sink id. */
    Map<String, SinkFigures> figures() {
        return new java.util.TreeMap<>(figures);
    }

    /** The sink ids with a lane, i.e. those this dispatcher delivers to. */
    Set<String> sinkIds() {
        return Set.copyOf(lanes.keySet());
    }

    /** True once every bound sink is registered in the database. */
    boolean allRegistered() {
        return lanes.values().stream().allMatch(Lane::registered);
    }

    /** Asks the poll thread for a poll now, besides its schedule (at most one such poll queued). */
    private void pollSoon() {
        if (!closed && pollQueued.compareAndSet(false, true)) {
            try {
                poller.execute(() -> {
                    pollQueued.set(false);
                    poll();
                });
            } catch (java.util.concurrent.RejectedExecutionException e) {
                // closing
            }
        }
    }

    /** One tick of the poll thread. Never throws: a throwing task would stop the schedule. */
    void poll() {
        if (closed || lanes.isEmpty()) {
            return;
        }
        try (Connection c = dataSource.getConnection()) {
            c.setAutoCommit(true);
            if (databaseDown) {
                LOG.info("Notification dispatcher reaches the database again");
                databaseDown = false;
            }
            for (Lane lane : List.copyOf(lanes.values())) {
                if (closed) {
                    return;
                }
                if (!lane.idle() || (!lane.registered() && !lane.register(c))) {
                    continue;
                }
                List<Outbox.Row> rows;
                long deadline = System.nanoTime();
                try {
                    rows = Outbox.claim(c, lane.sinkId(), settings.batchSize(), settings.leaseMs());
                    lane.claimWorked();
                } catch (SQLException e) {
                    lane.claimFailed(e);
                    continue;
                }
                deadline += TimeUnit.MILLISECONDS.toNanos(settings.leaseMs());
                // a lane that has work claims again as soon as it has room, not a poll interval later:
                // a claim takes one notification per stream table, so busy sinks need many claims
                if (!rows.isEmpty() && !lane.dispatch(rows, deadline, this::pollSoon)) {
                    for (Outbox.Row row : rows) { // the lane closed meanwhile: hand them back
                        Outbox.fail(c, row, "not attempted: sink " + lane.sinkId() + " left", 0, Integer.MAX_VALUE);
                    }
                }
            }
        } catch (SQLException e) {
            if (!databaseDown) {
                LOG.warn("Notification dispatcher cannot reach the database, retrying: {}", e.getMessage());
                databaseDown = true;
            }
        } catch (RuntimeException e) {
            LOG.error("Notification dispatcher: poll failed", e);
        }
    }

    /** Stops polling and every lane; unfinished rows keep their leases, which run out. */
    @Override
    public void close() {
        closed = true;
        poller.shutdownNow();
        List<Lane> open;
        synchronized (this) {
            open = List.copyOf(lanes.values());
            lanes.clear();
        }
        for (Lane lane : open) {
            lane.close(false);
        }
        try {
            poller.awaitTermination(5, TimeUnit.SECONDS);
            for (Lane lane : open) {
                lane.awaitClosed(1_000);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
