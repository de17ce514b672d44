package io.pgtrickle.refresh;

import io.pgtrickle.api.metrics.Histogram;
import io.pgtrickle.api.refresh.RefreshEvent;
import io.pgtrickle.api.refresh.RefreshEvent.Initiator;
import io.pgtrickle.refresh.plan.RefreshPlanner;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.Deque;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.PriorityQueue;
import java.util.Queue;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.LongSupplier;
import javax.sql.DataSource;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The refresh scheduler without OSGi: one tick thread and a bounded pool of workers over a
 * {@link DataSource}. The DS component {@link RefreshScheduler} only feeds it configuration and
 * listeners, so the tests drive this class directly.
 *
 * <p>Each tick reads the database's settings, asks {@code pgtrickle.due_stream_tables()} what is due
 * and hands as many of those as there are idle workers to the pool, most urgent first: the order the
 * function returns them in (unpopulated ones, then the longest overdue). What is left stays for the
 * next tick, or for another container whose workers are free: claiming only what can run now
 * spreads the work across containers instead of queueing it behind a busy one. Because what was
 * left has grown more overdue by the next tick while what was just refreshed is no longer due, a
 * saturated pool serves every stream table in turn; a fixed order (it was pgt_id) gave every free
 * worker to the same few stream tables and never refreshed the rest.
 *
 * <p>Within a tick, stream tables go upstream first: one that reads another stream table refreshed
 * in the same tick (directly or through others) starts only once those refreshes are done, however
 * they ended, so a chain catches up in one tick rather than one link per tick. A waiting refresh
 * holds no worker and does not stop the tick: its upstream's worker queues it on finishing. A
 * stream table with schedule {@code 'calculated'} that reads a stream table refreshed in the tick
 * joins the tick even though it was not due when the tick began (its source had not changed yet);
 * it checks once its upstreams are done whether they left it anything to apply
 * ({@link Outcome#NOT_DUE} if not). Waiting refreshes count against the workers like running ones,
 * and an upstream goes as early as the most urgent stream table waiting for it.
 *
 * <p>Two guards keep refreshes of one stream table from overlapping: within this container the
 * in-flight set (a stream table is handed to one worker at a time); across containers
 * {@code run_refresh(..., wait => false)} takes the catalog row with {@code SKIP LOCKED} and returns
 * NULL when another session holds it, and that stream table is skipped, and for a while goes after
 * the rest of what is due ({@link #HELD_ELSEWHERE_DEFER_NANOS}).
 *
 * <p>A failed refresh is retried after a backoff ({@link Backoff}); the durable error count and the
 * suspension are the catalog's ({@code record_refresh_failure}).
 */
final class RefreshEngine implements AutoCloseable {

    /** What became of one scheduled refresh. */
    enum Outcome {
        /** Committed. */
        REFRESHED,
        /** Another session (another container, or a manual refresh) was refreshing it; skipped. */
        LOCKED_ELSEWHERE,
        /** Rolled back and recorded in the catalog. */
        FAILED,
        /** Rolled back without a record: the connection failed or the engine stopped. */
        ABANDONED,
        /**
         * Not due when the tick began, only queued behind an upstream stream table refreshed in the
         * same tick, and that refresh left it nothing to apply: not refreshed.
         */
        NOT_DUE
    }

    /**
     * Counters since start, for operators ({@code /metrics}) and tests. {@code tickFailures}: ticks that
     * could not read what is due (the database unreachable, say).
     */
    record Stats(long refreshed, long lockedElsewhere, long failed, long abandoned, long ticks, long probingTicks, long tickFailures) {
    }

    private record Due(long pgtId, String name) {
    }

    static final long DEFAULT_STOP_GRACE_MILLIS = TimeUnit.SECONDS.toMillis(10);
    /**
     * How long a stream table found being refreshed by another session (another container, a manual
     * refresh) goes after the rest of what is due. Until that refresh commits it stays the most
     * overdue, so every tick would hand it to a worker again, which would find it locked and idle
     * until the next tick: two saturated containers spent many of their workers that way. Deferred,
     * not skipped, and only for a while, since a session that dies takes its lock with it.
     */
    static final long HELD_ELSEWHERE_DEFER_NANOS = TimeUnit.SECONDS.toNanos(1);
    /** A tick woken by a commit waits at least this many times the last tick's duration after it. */
    static final int WAKE_DUTY_FACTOR = 4;
    private static final long ABORT_WAIT_MILLIS = TimeUnit.SECONDS.toMillis(5);
    private static final CompletableFuture<Void> DONE = CompletableFuture.completedFuture(null);

    private static final Logger LOG = LoggerFactory.getLogger(RefreshEngine.class);
    private static final AtomicInteger ENGINES = new AtomicInteger();

    private final DataSource dataSource;
    private final EngineSettings settings;
    private final StreamTableRefresher refresher;
    private final LongSupplier nanoClock;
    private final long stopGraceMillis;
    private final Backoff backoff = new Backoff();
    private final Set<Long> inFlight = ConcurrentHashMap.newKeySet();
    /** Stream tables another session was refreshing, with when (nanoClock) that was found. */
    private final Map<Long, Long> heldElsewhereSince = new ConcurrentHashMap<>();
    private final EngineSettings.InvalidValueLog invalidValues = new EngineSettings.InvalidValueLog();
    private final ThreadPoolExecutor workers;
    private final ScheduledExecutorService ticker;
    private final AtomicLong refreshed = new AtomicLong();
    private final AtomicLong lockedElsewhere = new AtomicLong();
    private final AtomicLong failed = new AtomicLong();
    private final AtomicLong abandoned = new AtomicLong();
    private final AtomicLong ticks = new AtomicLong();
    private final AtomicLong probingTicks = new AtomicLong();
    private final AtomicLong tickFailures = new AtomicLong();
    /** How long each tick took, from its first query to the last refresh handed out. */
    private final Histogram tickSeconds = new Histogram(Histogram.SECONDS);

    private volatile EngineSettings.Effective effective;
    private volatile boolean started;
    private volatile boolean closed;
    private volatile String lastTickError;
    /** When the refresh history is next pruned; 0 = at the first tick. Ticker thread only. */
    private long historyPruneDueNanos;

    /**
     * Stream tables whose planning found a lock held (tick thread only), with when (nanoClock) to try
     * again: planning takes the stream table's lock for its row index, and a session holding that lock
     * must not stop the tick, which plans, probes and dispatches for every stream table.
     */
    private final Map<Long, Long> planPutOffUntil = new HashMap<>();

    /** How long planning waits for a lock before it is put off, and for how long. */
    static final String PLAN_LOCK_TIMEOUT = "200ms";
    static final long PLAN_PUT_OFF_NANOS = TimeUnit.SECONDS.toNanos(5);
    /**
     * What the last tick found due but had no worker for, most urgent first, with the error limit it
     * read; replaced by every tick. Each worker that finishes takes the next of them (drainBacklog).
     */
    private volatile Backlog backlog = Backlog.EMPTY;

    private record Backlog(Queue<Due> items, int maxErrors) {
        static final Backlog EMPTY = new Backlog(new ConcurrentLinkedQueue<>(), 0);
    }

    /** pg_current_snapshot() as the last tick read it before probing; null before the first. */
    private volatile String tickSnapshot;
    /** Whether the last tick's due_stream_tables() returned nothing (false when it failed). */
    private volatile boolean nothingDueLastTick;
    /** System.nanoTime() at which the next tick is due by the interval. Ticker thread only. */
    private long nextTickNanos;
    /** System.nanoTime() before which no commit starts a tick. Ticker thread only. */
    private long wakeNotBeforeNanos;
    /** The wake's connection and statement (see {@link #snapshotMoved}). Ticker thread only, and close(). */
    private Connection wakeConnection;
    private volatile PreparedStatement wakeLook;
    /** The longest a wake waits in the database (see pgtrickle.await_snapshot_change: it holds a snapshot meanwhile). */
    static final long WAKE_WAIT_MAX_MILLIS = 1000;

    RefreshEngine(DataSource dataSource, EngineSettings settings, Listeners listeners) {
        this(dataSource, settings, listeners, System::nanoTime, DEFAULT_STOP_GRACE_MILLIS);
    }

    /**
     * @param nanoClock       the clock the backoff runs on ({@link System#nanoTime()} outside tests)
     * @param stopGraceMillis how long {@link #close()} lets running refreshes finish before cutting them off
     */
    RefreshEngine(DataSource dataSource, EngineSettings settings, Listeners listeners, LongSupplier nanoClock, long stopGraceMillis) {
        this.dataSource = dataSource;
        this.settings = settings;
        this.refresher = new StreamTableRefresher(dataSource, listeners, settings.notifyCoalesceMs());
        this.nanoClock = nanoClock;
        this.stopGraceMillis = stopGraceMillis;
        this.effective = settings.containerDefaults();
        int engine = ENGINES.incrementAndGet();
        // At most `workers` refreshes (and connections) at once; resized when the database's
        // pg_trickle.max_concurrent_refreshes says otherwise. The queue stays short because a tick
        // never hands out more stream tables than there are idle workers.
        this.workers = new ThreadPoolExecutor(settings.workers(), settings.workers(), 0, TimeUnit.MILLISECONDS,
                new LinkedBlockingQueue<>(), threads("pgtrickle-refresh-" + engine + "-worker-"));
        this.ticker = Executors.newSingleThreadScheduledExecutor(threads("pgtrickle-refresh-" + engine + "-scheduler-"));
    }

    private static ThreadFactory threads(String prefix) {
        AtomicInteger n = new AtomicInteger();
        return r -> {
            Thread t = new Thread(r, prefix + n.incrementAndGet());
            // never keep a JVM alive; close() is what stops them
            t.setDaemon(true);
            return t;
        };
    }

    /**
     * Starts ticking: the first tick runs at once, the next one interval after each tick ends, and
     * in between the database's snapshot is watched, every wake interval: once a transaction has
     * completed since the last tick began, the next tick runs at once (see {@link #loop}).
     */
    synchronized void start() {
        if (closed) {
            throw new IllegalStateException("the refresh engine is closed");
        }
        if (!started) {
            started = true;
            nextTickNanos = System.nanoTime();
            ticker.execute(this::loop);
            LOG.info("pgtrickle refresh scheduler started: {} workers, interval {} ms, wake interval {} ms, suspend after {} errors"
                    + " (the database's {}, {}, {} and {} win when set)", settings.workers(), settings.schedulerIntervalMs(),
                    settings.wakeIntervalMs(), settings.maxConsecutiveErrors(), EngineSettings.MAX_CONCURRENT_REFRESHES_GUC,
                    EngineSettings.SCHEDULER_INTERVAL_GUC, EngineSettings.WAKE_INTERVAL_GUC, EngineSettings.MAX_CONSECUTIVE_ERRORS_GUC);
        }
    }

    /**
     * The ticker's loop. A tick every scheduler interval finds what is due by the clock; between
     * ticks, a commit is found by the snapshot moving: a transaction that wrote to a source has an
     * id, and once it completes, pg_current_snapshot() differs from the one the last tick read
     * before it probed (a later xmax, or one id fewer in progress). Then the next tick runs at
     * once, and a 'calculated' stream table is refreshed a few milliseconds after the commit that
     * changed its source, without writers doing anything (a NOTIFY from every writer takes a global
     * lock at commit). The watching is done by the database session (pgtrickle.await_snapshot_change,
     * one call until the next tick or for at most a second): while nothing commits, a call per
     * second, and a look at the snapshot per wake interval inside the database. While
     * transactions complete all the time (any table's), ticks run back to back, so they are spaced
     * at least {@link #WAKE_DUTY_FACTOR} times their own duration apart: with many stream tables a
     * tick costs more and the scheduler falls back towards its interval rather than a core.
     */
    private void loop() {
        long delayNanos = TimeUnit.MILLISECONDS.toNanos(effective.schedulerIntervalMs());
        try {
            long now = System.nanoTime();
            long wake = TimeUnit.MILLISECONDS.toNanos(effective.wakeIntervalMs());
            boolean due = now - nextTickNanos >= 0;
            if (!due && wake > 0 && now - wakeNotBeforeNanos >= 0) {
                // waits in the database until a transaction completes or the next tick is due
                due = snapshotMoved(effective.wakeIntervalMs(),
                        Math.min(WAKE_WAIT_MAX_MILLIS, TimeUnit.NANOSECONDS.toMillis(nextTickNanos - now)));
                now = System.nanoTime();
                due = due || now - nextTickNanos >= 0;
            }
            if (due) {
                tick();
                long end = System.nanoTime();
                nextTickNanos = end + TimeUnit.MILLISECONDS.toNanos(effective.schedulerIntervalMs());
                wakeNotBeforeNanos = end + WAKE_DUTY_FACTOR * (end - now);
                now = end;
            }
            wake = TimeUnit.MILLISECONDS.toNanos(effective.wakeIntervalMs());
            if (wake == 0) {
                closeWakeConnection();
            }
            delayNanos = Math.max(0, nextTickNanos - now);
            if (wake > 0) {
                delayNanos = Math.min(delayNanos, Math.max(wake, wakeNotBeforeNanos - now));
            }
        } catch (RuntimeException e) {
            // a bug here must not end scheduling for good
            LOG.error("pgtrickle refresh tick failed", e);
        } finally {
            if (!closed) {
                try {
                    ticker.schedule(this::loop, delayNanos, TimeUnit.NANOSECONDS);
                } catch (RejectedExecutionException e) {
                    // close() shut the ticker down between the check and the schedule
                }
            }
        }
    }

    /**
     * Whether the database's snapshot differs, or comes to differ within waitMillis, from the one the
     * last tick read before it probed, looked at every lookMillis by the database session. On a
     * connection and prepared statement of its own, held while waking is on (borrowing from the pool
     * per wake cost the container as much again as the query); close() cancels a wait in progress.
     */
    private boolean snapshotMoved(long lookMillis, long waitMillis) {
        String since = tickSnapshot;
        if (since == null) {
            return false;
        }
        try {
            PreparedStatement look = wakeLook;
            if (look == null) {
                wakeConnection = dataSource.getConnection();
                wakeConnection.setAutoCommit(true);
                look = wakeConnection.prepareStatement("SELECT pgtrickle.await_snapshot_change(?, ?, ?)");
                wakeLook = look;
            }
            look.setString(1, since);
            look.setInt(2, (int) Math.min(Integer.MAX_VALUE, lookMillis));
            look.setInt(3, (int) Math.max(0, waitMillis));
            try (ResultSet rs = look.executeQuery()) {
                rs.next();
                return !rs.getString(1).equals(since);
            }
        } catch (SQLException e) {
            // the next tick by the interval reports what is wrong with the database
            closeWakeConnection();
            return false;
        }
    }

    private void closeWakeConnection() {
        if (wakeConnection != null) {
            try {
                wakeConnection.close();
            } catch (SQLException e) {
                // it is being given up anyway
            }
        }
        wakeConnection = null;
        wakeLook = null;
    }

    /**
     * One tick: reads the settings, the due stream tables and the edges between stream tables, hands
     * what it can to the workers, most urgent first but upstreams before their downstreams, and
     * returns their outcomes (the tests wait on them; the scheduler does not).
     */
    List<CompletableFuture<Outcome>> tick() {
        if (closed) {
            return List.of();
        }
        long began = System.nanoTime();
        EngineSettings.Effective now;
        List<Due> due = new ArrayList<>();
        Graph graph;
        try (Connection c = dataSource.getConnection()) {
            now = settings.effective(c, invalidValues);
            // before the probe: a transaction that completes after this is in no probe yet, and moves the snapshot
            String snapshot;
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT pg_current_snapshot()::text")) {
                rs.next();
                snapshot = rs.getString(1);
            }
            // Changes become pending only by commits. When the last tick found nothing due and no
            // transaction has completed since it read the snapshot, none can be pending now: the
            // change buffers are not probed, and an idle tick costs the same for a thousand stream
            // tables as for one. What is due by the clock (schedules, time-dependent queries) is
            // still found.
            boolean probe = !(nothingDueLastTick && snapshot.equals(tickSnapshot));
            tickSnapshot = snapshot;
            nothingDueLastTick = false;
            planNew(c);
            pruneHistory(c);
            try (PreparedStatement s = c.prepareStatement("SELECT pgt_id, name FROM pgtrickle.due_stream_tables(?)")) {
                s.setBoolean(1, probe);
                try (ResultSet rs = s.executeQuery()) {
                    while (rs.next()) {
                        due.add(new Due(rs.getLong(1), rs.getString(2)));
                    }
                }
            }
            nothingDueLastTick = due.isEmpty();
            ticks.incrementAndGet();
            if (probe) {
                probingTicks.incrementAndGet();
            }
            graph = due.isEmpty() ? Graph.EMPTY : readGraph(c);
        } catch (SQLException e) {
            tickFailed(e);
            return List.of();
        }
        if (lastTickError != null) {
            LOG.info("pgtrickle refresh scheduler reaches the database again");
            lastTickError = null;
        }
        effective = now;
        resizeWorkers(now.workers());

        long clock = nanoClock.getAsLong();
        Set<Long> dueIds = new HashSet<>();
        due.forEach(d -> dueIds.add(d.pgtId()));
        backoff.forgetAllBut(dueIds, clock);
        heldElsewhereSince.entrySet().removeIf(e -> !dueIds.contains(e.getKey()) || clock - e.getValue() >= HELD_ELSEWHERE_DEFER_NANOS);
        if (!heldElsewhereSince.isEmpty()) {
            List<Due> deferred = new ArrayList<>();
            due.removeIf(d -> heldElsewhereSince.containsKey(d.pgtId()) && deferred.add(d));
            due.addAll(deferred);
        }

        // This tick's stream tables, most urgent first: what is due, then the 'calculated' stream
        // tables downstream of it, which will have changes to apply once their upstreams have
        // refreshed. Those were not due, so they take only the workers left over, in creation order
        // (a chain is usually created in order, and then catches up in one tick); one that waits
        // too long is due by itself at a later tick, with its own urgency.
        Map<Long, Due> byId = new LinkedHashMap<>();
        due.forEach(d -> byId.put(d.pgtId(), d));
        TreeSet<Long> cascaded = new TreeSet<>();
        Deque<Long> toVisit = new ArrayDeque<>(byId.keySet());
        while (!toVisit.isEmpty()) {
            for (long down : graph.downstreams(toVisit.pop())) {
                if (graph.followers().containsKey(down) && !byId.containsKey(down) && cascaded.add(down)) {
                    toVisit.add(down);
                }
            }
        }
        cascaded.forEach(id -> byId.put(id, graph.followers().get(id)));

        List<CompletableFuture<Outcome>> outcomes = new ArrayList<>();
        // per stream table of this tick already passed: when it (if dispatched) or else the
        // dispatched stream tables upstream of it are done
        Map<Long, CompletableFuture<?>> done = new HashMap<>();
        Set<Long> dispatched = new HashSet<>();
        List<Due> left = new ArrayList<>();
        boolean full = false;
        int maxErrors = now.maxConsecutiveErrors();
        for (long id : dependencyOrder(new ArrayList<>(byId.keySet()), graph)) {
            Due d = byId.get(id);
            List<CompletableFuture<?>> before = new ArrayList<>();
            boolean upstreamDispatched = false;
            for (long up : graph.upstreams(id)) {
                CompletableFuture<?> f = done.get(up);
                if (f != null && !f.isDone()) {
                    before.add(f);
                }
                upstreamDispatched |= dispatched.contains(up);
            }
            CompletableFuture<?> gate = before.isEmpty() ? DONE
                    : before.size() == 1 ? before.get(0) : CompletableFuture.allOf(before.toArray(CompletableFuture[]::new));
            done.put(id, gate);
            if (cascaded.contains(id) && !upstreamDispatched) {
                continue;
            }
            // full once, full for the rest of the tick, even if a worker finishes meanwhile: that
            // worker takes what is left, in order
            full = full || inFlight.size() >= now.workers();
            if (full) {
                // no worker for it now: a worker that finishes takes it, unless it waits for a
                // stream table of this tick (those go with their upstreams, at a later tick)
                if (!cascaded.contains(id) && backoff.ready(id, clock) && !inFlight.contains(id)
                        && graph.upstreams(id).stream().noneMatch(byId::containsKey)) {
                    left.add(d);
                }
                continue;
            }
            if (!backoff.ready(id, clock) || !inFlight.add(id)) {
                continue;
            }
            boolean recheck = cascaded.contains(id);
            CompletableFuture<Outcome> outcome;
            if (gate.isDone()) {
                try {
                    outcome = CompletableFuture.supplyAsync(() -> runScheduled(d, maxErrors, recheck), workers);
                } catch (RejectedExecutionException e) {
                    inFlight.remove(id);
                    break;
                }
            } else {
                outcome = after(gate, d, maxErrors, recheck);
            }
            dispatched.add(id);
            done.put(id, outcome);
            outcomes.add(outcome);
        }
        backlog = started ? new Backlog(new ConcurrentLinkedQueue<>(left), maxErrors) : Backlog.EMPTY;
        tickSeconds.observe((System.nanoTime() - began) / 1e9);
        return outcomes;
    }

    /**
     * Runs a refresh on a worker once its upstreams' refreshes are done, however they ended. The tick
     * thread does not wait, and a waiting refresh holds no worker: the upstream's worker, on
     * finishing, queues it.
     */
    private CompletableFuture<Outcome> after(CompletableFuture<?> upstreams, Due d, int maxErrors, boolean recheck) {
        CompletableFuture<Outcome> outcome = new CompletableFuture<>();
        upstreams.whenComplete((ignored, error) -> {
            try {
                workers.execute(() -> {
                    try {
                        outcome.complete(runScheduled(d, maxErrors, recheck));
                    } catch (Throwable t) {
                        outcome.completeExceptionally(t);
                    }
                });
            } catch (RejectedExecutionException e) {
                // the engine stopped while it waited
                inFlight.remove(d.pgtId());
                abandoned.incrementAndGet();
                outcome.complete(Outcome.ABANDONED);
            }
        });
        return outcome;
    }

    /**
     * Which stream tables read which: edges between stream tables, and the ACTIVE stream tables with
     * schedule 'calculated' that read another stream table (they follow their upstreams' refreshes).
     */
    private record Graph(Map<Long, List<Long>> upstreamsOf, Map<Long, List<Long>> downstreamsOf, Map<Long, Due> followers) {

        static final Graph EMPTY = new Graph(Map.of(), Map.of(), Map.of());

        List<Long> upstreams(long id) {
            return upstreamsOf.getOrDefault(id, List.of());
        }

        List<Long> downstreams(long id) {
            return downstreamsOf.getOrDefault(id, List.of());
        }
    }

    private static Graph readGraph(Connection c) throws SQLException {
        Map<Long, List<Long>> up = new HashMap<>();
        Map<Long, List<Long>> down = new HashMap<>();
        Map<Long, Due> followers = new HashMap<>();
        try (Statement s = c.createStatement();
             ResultSet rs = s.executeQuery("SELECT d.pgt_id, u.pgt_id, format('%I.%I', st.pgt_schema, st.pgt_name),"
                     + " st.status = 'ACTIVE' AND pgtrickle.parse_schedule(st.schedule) IS NULL"
                     + " FROM pgtrickle.pgt_dependencies d"
                     + " JOIN pgtrickle.pgt_stream_tables u ON u.pgt_relid = d.source_relid"
                     + " JOIN pgtrickle.pgt_stream_tables st ON st.pgt_id = d.pgt_id"
                     + " WHERE d.source_type = 'STREAM_TABLE' AND d.pgt_id <> u.pgt_id")) {
            while (rs.next()) {
                long downstream = rs.getLong(1);
                long upstream = rs.getLong(2);
                up.computeIfAbsent(downstream, k -> new ArrayList<>()).add(upstream);
                down.computeIfAbsent(upstream, k -> new ArrayList<>()).add(downstream);
                if (rs.getBoolean(4)) {
                    followers.put(downstream, new Due(downstream, rs.getString(3)));
                }
            }
        }
        return up.isEmpty() ? Graph.EMPTY : new Graph(up, down, followers);
    }

    /**
     * The stream tables in {@code byUrgency}'s order, except that each comes after the stream tables
     * of the list it reads. An upstream takes the urgency of the most urgent stream table waiting
     * for it: a long-overdue downstream must not wait behind everything more urgent than its
     * merely due upstream. A cycle, which the catalog should not allow, is broken at its most urgent
     * member rather than refused.
     */
    private static List<Long> dependencyOrder(List<Long> byUrgency, Graph graph) {
        if (graph.upstreamsOf().isEmpty()) {
            return byUrgency;
        }
        Map<Long, Integer> rank = new HashMap<>();
        for (int i = 0; i < byUrgency.size(); i++) {
            rank.put(byUrgency.get(i), i);
        }
        // urgency inherited from downstream: push each stream table's urgency to its upstreams until
        // nothing changes (a cycle cannot loop forever: a rank only ever falls, and not below 0)
        Map<Long, Integer> inherited = new HashMap<>(rank);
        boolean changed = true;
        while (changed) {
            changed = false;
            for (long id : byUrgency) {
                int mine = inherited.get(id);
                for (long up : graph.upstreams(id)) {
                    Integer theirs = inherited.get(up);
                    if (theirs != null && mine < theirs) {
                        inherited.put(up, mine);
                        changed = true;
                    }
                }
            }
        }
        Comparator<Long> urgency = Comparator.<Long>comparingInt(inherited::get).thenComparingInt(rank::get);
        Map<Long, Integer> waitingFor = new HashMap<>();
        PriorityQueue<Long> ready = new PriorityQueue<>(urgency);
        for (long id : byUrgency) {
            int n = 0;
            for (long up : graph.upstreams(id)) {
                if (rank.containsKey(up)) {
                    n++;
                }
            }
            waitingFor.put(id, n);
            if (n == 0) {
                ready.add(id);
            }
        }
        List<Long> order = new ArrayList<>(byUrgency.size());
        while (order.size() < byUrgency.size()) {
            if (ready.isEmpty()) {
                // a cycle: release its most urgent member
                waitingFor.entrySet().stream().filter(e -> e.getValue() > 0).map(Map.Entry::getKey).min(urgency)
                        .ifPresent(ready::add);
            }
            long id = ready.poll();
            waitingFor.put(id, -1);
            order.add(id);
            for (long down : graph.downstreams(id)) {
                Integer n = waitingFor.get(down);
                if (n != null && n > 0) {
                    waitingFor.put(down, n - 1);
                    if (n == 1) {
                        ready.add(down);
                    }
                }
            }
        }
        return order;
    }

    /**
     * Follows {@code pg_trickle.max_concurrent_refreshes}. A smaller pool cuts no refresh short: its
     * surplus threads end as they become idle, and meanwhile the tick hands out no more than the new
     * size (it counts refreshes in flight, not threads).
     */
    private void resizeWorkers(int size) {
        int current = workers.getMaximumPoolSize();
        if (size == current) {
            return;
        }
        // the core size may never exceed the maximum: grow the maximum first, shrink the core first
        if (size > current) {
            workers.setMaximumPoolSize(size);
            workers.setCorePoolSize(size);
        } else {
            workers.setCorePoolSize(size);
            workers.setMaximumPoolSize(size);
        }
        LOG.info("pgtrickle refresh scheduler now runs up to {} refreshes at once (the database's {}, else this container's workers)",
                size, EngineSettings.MAX_CONCURRENT_REFRESHES_GUC);
    }

    /**
     * Plans stream tables that have just become DIFFERENTIAL (created or altered) before they are
     * refreshed, each in its own transaction, so that one bad plan does not hold up the others.
     */
    private void planNew(Connection c) throws SQLException {
        List<Long> ids = RefreshPlanner.unplanned(c);
        if (ids.isEmpty()) {
            return;
        }
        planPutOffUntil.keySet().retainAll(ids);
        c.setAutoCommit(false);
        try {
            for (long id : ids) {
                Long until = planPutOffUntil.get(id);
                long now = nanoClock.getAsLong();
                if (until != null && now - until < 0) {
                    continue;
                }
                try {
                    try (Statement s = c.createStatement()) {
                        s.execute("SET LOCAL lock_timeout = '" + PLAN_LOCK_TIMEOUT + "'");
                    }
                    RefreshPlanner.planIfNeeded(c, id);
                    c.commit();
                    planPutOffUntil.remove(id);
                } catch (SQLException e) {
                    c.rollback();
                    if ("55P03".equals(e.getSQLState())) {
                        planPutOffUntil.put(id, now + PLAN_PUT_OFF_NANOS);
                        LOG.info("stream table {} not planned yet: another session holds a lock it needs; trying again in {} s",
                                id, TimeUnit.NANOSECONDS.toSeconds(PLAN_PUT_OFF_NANOS));
                    } else {
                        LOG.warn("could not plan stream table {}: {}", id, e.getMessage());
                    }
                }
            }
        } finally {
            c.setAutoCommit(true);
        }
    }

    /** Rows pruned per call: one short statement, so that pruning a long backlog never holds up a tick. */
    static final int HISTORY_PRUNE_BATCH = 10_000;
    static final long HISTORY_PRUNE_INTERVAL_NANOS = TimeUnit.MINUTES.toNanos(1);

    /**
     * Refresh history past {@code pg_trickle.history_retention_days}, a batch about once a minute; the
     * next tick again while whole batches go. Its own transaction (auto-commit). Every container does
     * it: the rows each claims are locked with SKIP LOCKED, so they do not wait for one another.
     */
    private void pruneHistory(Connection c) throws SQLException {
        long now = nanoClock.getAsLong();
        if (historyPruneDueNanos != 0 && now - historyPruneDueNanos < 0) {
            return;
        }
        try (PreparedStatement ps = c.prepareStatement("SELECT pgtrickle.prune_refresh_history(?)")) {
            ps.setInt(1, HISTORY_PRUNE_BATCH);
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                long pruned = rs.getLong(1);
                if (pruned > 0) {
                    LOG.debug("pruned {} refresh history rows past pg_trickle.history_retention_days", pruned);
                }
                historyPruneDueNanos = pruned == HISTORY_PRUNE_BATCH ? now : now + HISTORY_PRUNE_INTERVAL_NANOS;
            }
        }
    }

    private void tickFailed(SQLException e) {
        tickFailures.incrementAndGet();
        String message = e.getMessage();
        // once per distinct problem: a database that is down for an hour must not write 3600 warnings
        if (!String.valueOf(message).equals(lastTickError)) {
            LOG.warn("pgtrickle refresh scheduler cannot read due stream tables, retrying every {} ms: {}",
                    effective.schedulerIntervalMs(), message);
        } else {
            LOG.debug("pgtrickle refresh tick failed again: {}", message);
        }
        lastTickError = String.valueOf(message);
    }

    /**
     * @param recheck the stream table was not due when the tick began but follows an upstream refreshed
     *                in this tick: refresh it only if that left it something to apply
     */
    private Outcome runScheduled(Due d, int maxConsecutiveErrors, boolean recheck) {
        try {
            if (closed) {
                abandoned.incrementAndGet();
                return Outcome.ABANDONED;
            }
            if (recheck && !stillDue(d)) {
                return Outcome.NOT_DUE;
            }
            RefreshEvent event = refresher.refresh(d.pgtId(), d.name(), Initiator.SCHEDULER, false, maxConsecutiveErrors);
            if (event == null) {
                lockedElsewhere.incrementAndGet();
                heldElsewhereSince.put(d.pgtId(), nanoClock.getAsLong());
                LOG.debug("{} is being refreshed by another session; skipped", d.name());
                return Outcome.LOCKED_ELSEWHERE;
            }
            backoff.succeeded(d.pgtId());
            refreshed.incrementAndGet();
            LOG.debug("refreshed {}: refresh {} {} +{} -{}", d.name(), event.refreshId(), event.action(),
                    event.rowsInserted(), event.rowsDeleted());
            return Outcome.REFRESHED;
        } catch (RefreshFailedException e) {
            if (closed && !e.recorded()) {
                abandoned.incrementAndGet();
                LOG.info("{} (the scheduler is stopping)", e.getMessage());
                return Outcome.ABANDONED;
            }
            long delayMillis = TimeUnit.NANOSECONDS.toMillis(backoff.failed(d.pgtId(), nanoClock.getAsLong()));
            if (!e.recorded()) {
                abandoned.incrementAndGet();
                LOG.warn("{}; retrying in {} ms", e.getMessage(), delayMillis);
                return Outcome.ABANDONED;
            }
            failed.incrementAndGet();
            if ("SUSPENDED".equals(e.status())) {
                LOG.error("{}; {} is now SUSPENDED after {} consecutive failures and will not be refreshed until "
                        + "pgtrickle.resume_stream_table is called", e.getMessage(), d.name(), maxConsecutiveErrors);
            } else {
                LOG.warn("{}; status {}, retrying in {} ms", e.getMessage(), e.status(), delayMillis);
            }
            return Outcome.FAILED;
        } finally {
            inFlight.remove(d.pgtId());
            drainBacklog();
        }
    }

    /**
     * Hands what the last tick left for want of a worker to the workers free now, most urgent first;
     * each worker calls it as it finishes. So under a backlog (more due than workers) the workers stay
     * busy between ticks, where they used to wait for the next one: at most one a second, or a commit's
     * wake, which waits four times the tick's own duration. A thousand stream tables over sources of
     * their own, written at 100 a second, fell behind for good that way (docs/benchmarks/subscriptions.md).
     * Claims, like a tick, only what can run now, and only while the scheduler runs: tests that drive
     * tick() themselves see each tick's refreshes alone.
     */
    private void drainBacklog() {
        Backlog b = backlog;
        while (started && !closed && inFlight.size() < effective.workers()) {
            Due d = b.items().poll();
            if (d == null) {
                return;
            }
            if (!backoff.ready(d.pgtId(), nanoClock.getAsLong()) || !inFlight.add(d.pgtId())) {
                continue;
            }
            try {
                workers.execute(() -> runScheduled(d, b.maxErrors(), false));
            } catch (RejectedExecutionException e) {
                // stopping
                inFlight.remove(d.pgtId());
                return;
            }
        }
    }

    /**
     * Whether a 'calculated' stream table downstream of this tick's refreshes has something to
     * apply now. Asked of its own sources only: due_stream_tables() probes every buffer (about
     * 20 ms with a thousand sources) and prepares that probe in each session that asks.
     */
    private boolean stillDue(Due d) {
        try (Connection c = dataSource.getConnection();
             PreparedStatement ps = c.prepareStatement("SELECT s.status = 'ACTIVE' AND (NOT s.is_populated OR s.needs_reinit"
                     + " OR EXISTS (SELECT FROM pgtrickle.pgt_dependencies d WHERE d.pgt_id = s.pgt_id AND d.source_type IN ('TABLE', 'STREAM_TABLE')"
                     + " AND pgtrickle.has_pending_changes(d.source_relid::regclass, pgtrickle.oldest_frontier(s.frontier))))"
                     + " FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_id = ?")) {
            ps.setLong(1, d.pgtId());
            try (ResultSet rs = ps.executeQuery()) {
                return rs.next() && rs.getBoolean(1);
            }
        } catch (SQLException e) {
            // the refresh will meet the same problem and deal with it (backoff, record)
            LOG.debug("could not check whether {} is still due: {}", d.name(), e.getMessage());
            return true;
        }
    }

    /**
     * A manual refresh ({@code initiated_by = 'MANUAL'}): waits for a refresh of the same stream table
     * running elsewhere, then refreshes through the same transaction as the scheduler.
     */
    RefreshEvent refresh(String streamTableName) throws SQLException {
        if (closed) {
            throw new SQLException("the pgtrickle refresh scheduler is stopped");
        }
        long pgtId;
        String label;
        int maxErrors;
        try (Connection c = dataSource.getConnection()) {
            maxErrors = settings.effective(c, invalidValues).maxConsecutiveErrors();
            // the catalog's own name resolution, so SQL, Java and the shell accept the same names;
            // run_refresh itself refuses a SUSPENDED stream table
            try (PreparedStatement ps = c.prepareStatement("SELECT st.pgt_id, format('%I.%I', st.pgt_schema, st.pgt_name)"
                    + " FROM pgtrickle.find_stream_table(?) st")) {
                ps.setString(1, streamTableName);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    pgtId = rs.getLong(1);
                    label = rs.getString(2);
                }
            }
        }
        RefreshEvent event = refresher.refresh(pgtId, label, Initiator.MANUAL, true, maxErrors);
        if (event == null) {
            throw new SQLException("pgtrickle.run_refresh(" + pgtId + ", 'MANUAL', true) returned NULL although it was asked to wait");
        }
        // it works again: the scheduler need not wait out an earlier failure's backoff
        backoff.succeeded(pgtId);
        return event;
    }

    /** The settings the last successful tick used. */
    EngineSettings.Effective effectiveSettings() {
        return effective;
    }

    Stats stats() {
        return new Stats(refreshed.get(), lockedElsewhere.get(), failed.get(), abandoned.get(), ticks.get(), probingTicks.get(),
                tickFailures.get());
    }

    /** The durations of the ticks so far. */
    Histogram.Snapshot tickDurations() {
        return tickSeconds.snapshot();
    }

    /** Workers running a refresh now (a refresh waiting for its upstreams holds none). */
    int busyWorkers() {
        return workers.getActiveCount();
    }

    /** Refreshes this container runs at once: the pool's size, as the last tick set it. */
    int workerCount() {
        return workers.getMaximumPoolSize();
    }

    /** Whether a stream table is waiting out a backoff (or failed and was not retried yet). */
    boolean backingOff(long pgtId) {
        return !backoff.ready(pgtId, nanoClock.getAsLong());
    }

    /**
     * Stops ticking, lets running refreshes finish for the grace period, then cuts off those still
     * running (they roll back and are not counted as failures). Returns once every thread of this
     * engine has ended, or after a bounded wait with a warning naming what is still running.
     */
    @Override
    public void close() {
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
        }
        // a wake waits in the database for up to a second; the ticker cannot stop before it returns
        PreparedStatement look = wakeLook;
        if (look != null) {
            try {
                look.cancel();
            } catch (SQLException e) {
                // the ticker then returns when the wait ends
            }
        }
        ticker.shutdownNow();
        workers.shutdown();
        try {
            long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(stopGraceMillis);
            boolean done = ticker.awaitTermination(stopGraceMillis, TimeUnit.MILLISECONDS)
                    && workers.awaitTermination(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
            if (!done) {
                cutOff();
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            cutOff();
        }
        // the ticker, its only other user, has stopped (or been cut off)
        closeWakeConnection();
        LOG.info("pgtrickle refresh scheduler stopped ({} refreshed, {} failed, {} skipped as locked elsewhere)",
                refreshed.get(), failed.get(), lockedElsewhere.get());
    }

    private void cutOff() {
        refresher.stopping();
        int aborted = refresher.abortRunning();
        // interrupts listeners that wait in Java rather than in the database
        workers.shutdownNow();
        ticker.shutdownNow();
        boolean interrupted = Thread.interrupted();
        try {
            if (!workers.awaitTermination(ABORT_WAIT_MILLIS, TimeUnit.MILLISECONDS)
                    || !ticker.awaitTermination(ABORT_WAIT_MILLIS, TimeUnit.MILLISECONDS)) {
                LOG.warn("pgtrickle refresh threads still running after stop; {} refresh(es) in flight: {}",
                        inFlight.size(), inFlight);
            } else if (aborted > 0) {
                LOG.warn("cut off {} refresh(es) still running {} ms after stop; they were rolled back", aborted, stopGraceMillis);
            }
        } catch (InterruptedException e) {
            interrupted = true;
        } finally {
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
    }

    /** Every thread ended? */
    boolean terminated() {
        return workers.isTerminated() && ticker.isTerminated();
    }
}
