package io.pgtrickle.bench;

import static io.pgtrickle.bench.BenchOutput.log;
import static io.pgtrickle.bench.BenchOutput.ms;
import static io.pgtrickle.bench.BenchOutput.pct;

import com.sun.net.httpserver.HttpServer;
import com.zaxxer.hikari.HikariConfig;
import com.zaxxer.hikari.HikariDataSource;
import io.pgtrickle.api.notify.NotificationSink;
import io.pgtrickle.api.notify.NotificationSinkType;
import io.pgtrickle.api.refresh.RefreshListener;
import io.pgtrickle.catalog.CatalogMigrator;
import io.pgtrickle.notify.TrailingNotifications;
import io.pgtrickle.refresh.plan.RefreshPlanner;
import io.pgtrickle.testing.SqlStatements;
import io.pgtrickle.testing.TestDatabase;
import java.io.IOException;
import java.io.InputStream;
import java.lang.reflect.Constructor;
import java.lang.reflect.Method;
import java.lang.reflect.Proxy;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.sql.DataSource;
import org.postgresql.PGConnection;
import org.postgresql.PGNotification;

/**
 * The subscription benchmark, on one fresh database, side by side in one run:
 *
 * <ol>
 *   <li>commit on a source → NOTIFY received by a LISTEN client (pgjdbc), p50/p99, at about 100 and
 *       1,000 single-row commits/s, coalescing off and on, refreshes driven at a fixed rate by a
 *       refresher thread (and back to back);</li>
 *   <li>writer throughput (single-row INSERT commits/s) with and without a subscription on a stream
 *       table over the written table;</li>
 *   <li>webhook deliveries per second: the outbox drained by the notify bundle's dispatcher and the
 *       webhook sink to a loopback JDK HttpServer answering 200.</li>
 * </ol>
 *
 * <p>Run with {@code mvn -B -f itests/bench/pom.xml -Pbench-subscriptions verify}; the normal build only
 * compiles it. Prints a Markdown report and writes it to {@code bench.report}.
 */
public final class SubscriptionBenchmark implements SqlStatements {

    private static final Pattern REFRESH_ID = Pattern.compile("\"refresh_id\"\\s*:\\s*(\\d+)");

    private final int cellSeconds;
    private final int intervalMs;
    private final int engineTickMs;
    private final int tputSeconds;
    private final int tputReps;
    /** Section 4 under writes: writes a second to random sources, and for how many seconds. */
    private final int loadRate;
    private final int loadSeconds;
    private final int whTables;
    private final int whRounds;
    private final int whSinks;
    private final Path report;
    private final String command;

    private TestDatabase.Database db;
    private Connection c;
    private int nextTable;
    private final Map<String, String> settings = new LinkedHashMap<>();
    private String serverDescription;
    private final List<LatencyCell> cells = new ArrayList<>();
    private final List<Double> tputWithout = new ArrayList<>();
    private final List<Double> tputWith = new ArrayList<>();
    private final List<Drain> drains = new ArrayList<>();
    private final List<String> checks = new ArrayList<>();
    /** The sections to run ({@code bench.subs.sections}, all by default; a subset is for diagnosis, not for docs/). */
    private final java.util.Set<Integer> sections = new java.util.TreeSet<>();
    private String enqueueNote;

    private static final String COMMON_POOL_PARALLELISM = "java.util.concurrent.ForkJoinPool.common.parallelism";

    private SubscriptionBenchmark() {
        cellSeconds = Integer.getInteger("bench.subs.seconds", 10);
        intervalMs = Integer.getInteger("bench.subs.interval", 100);
        engineTickMs = Integer.getInteger("bench.subs.engine.tick", 10);
        tputSeconds = Integer.getInteger("bench.subs.tput.seconds", 4);
        tputReps = Integer.getInteger("bench.subs.tput.reps", 3);
        loadRate = Integer.getInteger("bench.subs.load.rate", 100);
        loadSeconds = Integer.getInteger("bench.subs.load.seconds", 10);
        whTables = Integer.getInteger("bench.subs.webhook.tables", 50);
        whRounds = Integer.getInteger("bench.subs.webhook.rounds", 100);
        whSinks = Integer.getInteger("bench.subs.webhook.sinks", 4);
        for (String section : System.getProperty("bench.subs.sections", "1,2,3,4,5").split(",")) {
            sections.add(Integer.parseInt(section.trim()));
        }
        report = Path.of(System.getProperty("bench.report", "docs/benchmarks/subscriptions.md"));
        command = System.getProperty("bench.command", "mvn -B -f itests/bench/pom.xml -Pbench-subscriptions verify");
    }

    public static void main(String[] args) throws Exception {
        // as the distribution's launcher does (SystemPropertyDefaults.keepACommonPool): with under two
        // CPUs for the common pool, CompletableFuture starts a thread per asynchronous stage, several
        // per HttpClient request
        if (Runtime.getRuntime().availableProcessors() <= 2 && System.getProperty(COMMON_POOL_PARALLELISM) == null) {
            System.setProperty(COMMON_POOL_PARALLELISM, "2");
        }
        new SubscriptionBenchmark().run();
    }

    private void run() throws Exception {
        long start = System.nanoTime();
        Instant startedAt = Instant.now().truncatedTo(ChronoUnit.SECONDS);
        TestDatabase server = TestDatabase.get();
        serverDescription = server.describe();
        db = server.createDatabase("subs");
        try (Connection connection = db.connect()) {
            c = connection;
            c.setAutoCommit(true);
            new CatalogMigrator().migrate(c);
            for (String s : new String[] {"server_version", "fsync", "synchronous_commit", "shared_buffers"}) {
                settings.put(s, string("SHOW " + s));
            }
            // a default installation: the scheduler's 1 s tick, its commit wake (before, and with it), the
            // default coalescing window; writes sparser than the window, as an application's usually are
            if (sections.contains(1)) {
                latency(DEFAULTS_RATE, DEFAULT_COALESCE_MS, 0, DEFAULT_TICK_MS, 0, DEFAULTS_SECONDS_FACTOR);
                latency(DEFAULTS_RATE, DEFAULT_COALESCE_MS, 0, DEFAULT_TICK_MS, DEFAULT_WAKE_MS, DEFAULTS_SECONDS_FACTOR);
                for (int rate : new int[] {100, 1000}) {
                    latency(rate, 0, intervalMs, 0, 0, 1);
                    latency(rate, 250, intervalMs, 0, 0, 1);
                    latency(rate, 0, 0, 0, 0, 1);
                    latency(rate, 0, 0, engineTickMs, 0, 1);
                    latency(rate, 0, 0, DEFAULT_TICK_MS, DEFAULT_WAKE_MS, 1);
                }
            }
            if (sections.contains(2)) {
                throughput();
            }
            if (sections.contains(4)) {
                schedulerIdleCost();
            }
            if (sections.contains(5)) {
                afterBurst();
            }
            if (sections.contains(3)) {
                webhooks();
            }
        } finally {
            try {
                db.drop();
            } catch (RuntimeException e) {
                log("could not drop %s: %s", db.name(), e.getMessage());
            }
        }
        double minutes = (System.nanoTime() - start) / 60e9;
        String md = report(startedAt, minutes);
        BenchOutput.publish(md, report, minutes);
    }

    // ---------------------------------------------------------------- 1. latency

    private record LatencyCell(int rate, int coalesceMs, String driver, double achievedRate, int refreshes, int notifications,
                               List<Double> latencies, int unmatched, List<Double> perWrite, int uncovered, boolean targeted) {
    }

    /** The container's defaults (RefreshScheduler.Config, the catalog's notify_coalesce_ms). */
    private static final int DEFAULT_TICK_MS = 1000;
    private static final int DEFAULT_WAKE_MS = 10;
    private static final int DEFAULT_COALESCE_MS = 250;
    /** Two writers, one commit each per second: 500 ms apart, beyond the default coalescing window. */
    private static final int DEFAULTS_RATE = 2;
    private static final int DEFAULTS_SECONDS_FACTOR = 3;

    /** A source {@code (id, w)} and a DIFFERENTIAL stream table {@code SELECT id, w FROM src} with an index on (w, id). */
    private String sourceAndStreamTable(String prefix) throws SQLException {
        String n = prefix + (nextTable++);
        exec("CREATE TABLE " + n + "_src (id bigint PRIMARY KEY, w int NOT NULL, stamp timestamptz NOT NULL DEFAULT clock_timestamp())");
        exec("SELECT pgtrickle.create_stream_table('" + n + "', 'SELECT id, w FROM " + n + "_src', schedule => '1h')");
        exec("CREATE INDEX ON " + n + " (w, id)");
        plan(n);
        return n;
    }

    /** What the engine's scheduler does on its first tick after the creation. */
    private void plan(String st) throws SQLException {
        c.setAutoCommit(false);
        RefreshPlanner.planIfNeeded(c, Long.parseLong(string("SELECT (pgtrickle.find_stream_table('" + st + "')).pgt_id")));
        c.commit();
        c.setAutoCommit(true);
    }

    /**
     * One latency cell. Refreshes come from the benchmark's refresher thread ({@code engineTickMs} 0:
     * every {@code interval} ms, or back to back when that is 0), or from the container's scheduler
     * with the stream table on schedule {@code 'calculated'}, which refreshes when its probe of the
     * change buffers, every {@code engineTickMs}, finds changes.
     */
    private void latency(int rate, int coalesceMs, int interval, int engineTickMs, int wakeMs, int secondsFactor) throws Exception {
        String st = sourceAndStreamTable("lat");
        String driver = engineTickMs == 0 ? intervalName(interval)
                : wakeMs > 0 ? String.format(Locale.ROOT, "scheduler, `calculated`, tick %,d ms, **wake %d ms**", engineTickMs, wakeMs)
                : String.format(Locale.ROOT, "scheduler, `calculated`, tick %,d ms, no wake", engineTickMs);
        // the target is for announcements that coalescing does not hold back by design
        boolean targeted = coalesceMs == 0 || 1000L * 2 / rate > coalesceMs;
        if (engineTickMs > 0) {
            exec("SELECT pgtrickle.alter_stream_table('" + st + "', schedule => 'calculated')");
        }
        String channel = st + "_ch";
        exec("SELECT pgtrickle.subscribe('" + st + "', '" + channel + "')");
        exec("SELECT pgtrickle.alter_stream_table('" + st + "', notify_coalesce_ms => " + coalesceMs + ")");
        long pgtId = Long.parseLong(string("SELECT (pgtrickle.find_stream_table('" + st + "')).pgt_id"));
        int writers = 2;
        int perWriter = rate * cellSeconds * secondsFactor / writers;
        long[][] ack = new long[writers][perWriter];
        Map<Long, long[]> consumed = new ConcurrentHashMap<>(); // refresh_id -> max id per writer (index in ack)
        List<long[]> received = new CopyOnWriteArrayList<>(); // {refresh_id, receive nanos}
        AtomicBoolean writing = new AtomicBoolean(true);
        AtomicBoolean running = new AtomicBoolean(true);
        AtomicLong refreshes = new AtomicLong();
        List<Throwable> errors = new CopyOnWriteArrayList<>();

        try (Connection listen = db.connect(); Connection refresher = db.connect();
             AutoCloseable engine = engineTickMs > 0 ? engine(engineTickMs, wakeMs, newestIds(st, pgtId, consumed, refreshes), new AtomicLong())
                     : () -> { }) {
            try (Statement s = listen.createStatement()) {
                s.execute("LISTEN " + channel);
            }
            PGConnection pg = listen.unwrap(PGConnection.class);
            Thread listener = new Thread(() -> {
                try {
                    while (running.get()) {
                        PGNotification[] got = pg.getNotifications(50);
                        long now = System.nanoTime();
                        if (got != null) {
                            for (PGNotification n : got) {
                                Matcher m = REFRESH_ID.matcher(n.getParameter());
                                received.add(new long[] {m.find() ? Long.parseLong(m.group(1)) : -1, now});
                            }
                        }
                    }
                } catch (SQLException e) {
                    errors.add(e);
                }
            }, "listener");
            Thread refresh = new Thread(() -> {
                if (engineTickMs == 0) {
                    refresher(refresher, st, pgtId, interval, running, consumed, refreshes, errors);
                }
            }, "refresher");
            listener.start();
            refresh.start();
            List<Thread> ws = new ArrayList<>();
            long t0 = System.nanoTime() + 200_000_000L;
            for (int w = 0; w < writers; w++) {
                int wi = w;
                Thread t = new Thread(() -> {
                    try (Connection wc = db.connect();
                         PreparedStatement ins = wc.prepareStatement("INSERT INTO " + st + "_src (id, w) VALUES (?, ?)")) {
                        long periodNs = 1_000_000_000L * writers / rate;
                        long offset = periodNs * wi / writers;
                        for (int i = 0; i < perWriter; i++) {
                            Pacing.sleepUntil(t0 + offset + i * periodNs);
                            ins.setLong(1, (long) i * writers + wi);
                            ins.setInt(2, wi);
                            ins.executeUpdate();
                            ack[wi][i] = System.nanoTime();
                        }
                    } catch (SQLException | InterruptedException e) {
                        errors.add(e);
                    }
                }, "writer-" + w);
                ws.add(t);
                t.start();
            }
            for (Thread t : ws) {
                t.join();
            }
            long writeEnd = System.nanoTime();
            writing.set(false);
            Thread.sleep(Math.max(600, coalesceMs * 2L + interval * 3L + engineTickMs * 3L));
            running.set(false);
            refresh.join();
            listener.join();
            if (!errors.isEmpty()) {
                throw new IllegalStateException("latency cell failed", errors.get(0));
            }
            double achieved = (double) writers * perWriter / ((writeEnd - t0) / 1e9);
            // latency of every notification after a 1 s warm-up: receive - ack of the newest write it covers
            long warm = t0 + 1_000_000_000L;
            List<Double> lat = new ArrayList<>();
            int unmatched = 0;
            for (long[] r : received) {
                long[] maxes = consumed.get(r[0]);
                if (maxes == null) {
                    unmatched++;
                    continue;
                }
                long newest = Long.MIN_VALUE;
                for (int w = 0; w < writers; w++) {
                    if (maxes[w] >= 0) {
                        newest = Math.max(newest, ack[w][(int) ((maxes[w] - w) / writers)]);
                    }
                }
                if (newest == Long.MIN_VALUE || newest < warm) {
                    continue;
                }
                lat.add((r[1] - newest) / 1e6);
            }
            // every write: arrival of the first notification covering it - its acknowledgement
            List<Double> perWrite = new ArrayList<>();
            int uncovered = 0;
            for (int w = 0; w < writers; w++) {
                int i = 0;
                for (long[] r : received) { // in arrival order; coverage only grows
                    long[] maxes = consumed.get(r[0]);
                    if (maxes == null || maxes[w] < 0) {
                        continue;
                    }
                    int upTo = (int) ((maxes[w] - w) / writers);
                    for (; i <= upTo && i < perWriter; i++) {
                        if (ack[w][i] >= warm) {
                            perWrite.add((r[1] - ack[w][i]) / 1e6);
                        }
                    }
                }
                for (; i < perWriter; i++) {
                    uncovered++;
                }
            }
            long rows = Long.parseLong(string("SELECT count(*) FROM " + st));
            if (rows != (long) writers * perWriter) {
                throw new IllegalStateException(st + " holds " + rows + " rows after the last refresh, not " + writers * perWriter);
            }
            checks.add(String.format(Locale.ROOT, "%s (%d/s, coalesce %d ms, %s): the stream table holds all %,d written rows "
                    + "after the last refresh; %d notifications for %d refreshes", st, rate, coalesceMs, driver,
                    rows, received.size(), refreshes.get()));
            LatencyCell cell = new LatencyCell(rate, coalesceMs, driver, achieved, (int) refreshes.get(), received.size(), lat,
                    unmatched, perWrite, uncovered, targeted);
            if (uncovered > 0 || unmatched > 0) {
                checks.add(st + ": " + uncovered + " writes never announced, " + unmatched + " notifications without a known refresh");
            }
            cells.add(cell);
            log("latency %d/s (achieved %.0f), coalesce %d, %s: n=%d p50 %s p99 %s ms; every write p50 %s p99 %s; %d refreshes, "
                    + "%d notifications", rate, achieved, coalesceMs, driver, lat.size(), ms(pct(lat, 50)),
                    ms(pct(lat, 99)), ms(pct(perWrite, 50)), ms(pct(perWrite, 99)), refreshes.get(), received.size());
        }
        exec("SELECT pgtrickle.drop_stream_table('" + st + "')");
        exec("DROP TABLE " + st + "_src");
    }

    /**
     * A refresh listener that records, inside each refresh transaction of {@code st}, the newest id
     * of each writer the refresh made visible.
     */
    private static RefreshListener newestIds(String st, long pgtId, Map<Long, long[]> consumed, AtomicLong refreshes) {
        String newest = "SELECT (SELECT max(id) FROM " + st + " WHERE w = 0), (SELECT max(id) FROM " + st + " WHERE w = 1)";
        return (event, connection) -> {
            if (event.pgtId() != pgtId) {
                return;
            }
            long[] m = new long[] {-1, -1};
            try (Statement q = connection.createStatement(); ResultSet rs = q.executeQuery(newest)) {
                rs.next();
                for (int w = 0; w < 2; w++) {
                    long v = rs.getLong(w + 1);
                    m[w] = rs.wasNull() ? -1 : v;
                }
            }
            consumed.put(event.refreshId(), m);
            refreshes.incrementAndGet();
        };
    }

    /**
     * The container's scheduler ({@code RefreshEngine}, package-private: built by reflection, as its
     * tests build it) on a HikariCP pool as in the container, ticking every {@code tickMs}, with
     * {@code listener} in its refresh transactions; {@code borrowed} counts the connections it takes
     * from the pool (one per tick, plus one per refresh).
     */
    private AutoCloseable engine(int tickMs, int wakeMs, RefreshListener listener, AtomicLong borrowed) throws Exception {
        Class<?> settingsClass = Class.forName("io.pgtrickle.refresh.EngineSettings");
        Constructor<?> sc = settingsClass.getDeclaredConstructor(long.class, int.class, int.class, int.class, long.class);
        sc.setAccessible(true);
        Object settings = sc.newInstance((long) tickMs, 2, 3, 250, (long) wakeMs);
        Class<?> listenersClass = Class.forName("io.pgtrickle.refresh.Listeners");
        Constructor<?> lc = listenersClass.getDeclaredConstructor();
        lc.setAccessible(true);
        Object listeners = lc.newInstance();
        Method put = listenersClass.getDeclaredMethod("put", RefreshListener.class, int.class, long.class);
        put.setAccessible(true);
        put.invoke(listeners, listener, 0, 1L);
        HikariConfig hc = new HikariConfig();
        hc.setPoolName("engine");
        hc.setDataSource(db.dataSource());
        hc.setMaximumPoolSize(4);
        HikariDataSource pool = new HikariDataSource(hc);
        DataSource counted = (DataSource) Proxy.newProxyInstance(DataSource.class.getClassLoader(), new Class<?>[] {DataSource.class},
                (proxy, method, args) -> {
                    if (method.getName().equals("getConnection")) {
                        borrowed.incrementAndGet();
                    }
                    try {
                        return method.invoke(pool, args);
                    } catch (java.lang.reflect.InvocationTargetException e) {
                        throw e.getCause();
                    }
                });
        Class<?> engineClass = Class.forName("io.pgtrickle.refresh.RefreshEngine");
        Constructor<?> ec = engineClass.getDeclaredConstructor(DataSource.class, settingsClass, listenersClass);
        ec.setAccessible(true);
        AutoCloseable engine = (AutoCloseable) ec.newInstance(counted, settings, listeners);
        Method start = engineClass.getDeclaredMethod("start");
        start.setAccessible(true);
        start.invoke(engine);
        // the container runs the notify bundle beside the scheduler: its timer sends the trailing notifications
        TrailingNotifications trailing = new TrailingNotifications(pool, tickMs);
        return () -> {
            engine.close();
            trailing.close();
            pool.close();
        };
    }

    /**
     * Refreshes at a fixed rate ({@code interval} ms, 0 = back to back), each in one transaction: the
     * refresh, then the newest id of each writer now in the stream table and the refresh's id; then the
     * trailing-notification flush of the scheduler tick; commit (which sends the NOTIFY).
     */
    private static void refresher(Connection rc, String st, long pgtId, int interval, AtomicBoolean running,
                                  Map<Long, long[]> consumed, AtomicLong refreshes, List<Throwable> errors) {
        try (PreparedStatement refresh = rc.prepareStatement("SELECT pgtrickle.refresh_stream_table(?)");
             PreparedStatement maxes = rc.prepareStatement("SELECT (SELECT max(id) FROM " + st + " WHERE w = 0),"
                     + " (SELECT max(id) FROM " + st + " WHERE w = 1),"
                     + " (SELECT max(refresh_id) FROM pgtrickle.pgt_refresh_history WHERE pgt_id = ?)");
             PreparedStatement flush = rc.prepareStatement("SELECT pgtrickle.flush_notifications()")) {
            rc.setAutoCommit(false);
            refresh.setString(1, st);
            maxes.setLong(1, pgtId);
            long next = System.nanoTime();
            while (running.get()) {
                refresh.execute();
                long[] m = new long[] {-1, -1};
                long refreshId;
                try (ResultSet rs = maxes.executeQuery()) {
                    rs.next();
                    for (int w = 0; w < 2; w++) {
                        long v = rs.getLong(w + 1);
                        m[w] = rs.wasNull() ? -1 : v;
                    }
                    refreshId = rs.getLong(3);
                }
                flush.execute();
                consumed.put(refreshId, m);
                rc.commit();
                refreshes.incrementAndGet();
                if (interval > 0) {
                    next = Pacing.nextBeat(next, interval * 1_000_000L);
                }
            }
            rc.setAutoCommit(true);
        } catch (SQLException | InterruptedException e) {
            errors.add(e);
        }
    }

    // ---------------------------------------------------------------- 2. writer throughput

    private void throughput() throws Exception {
        String st = sourceAndStreamTable("tput");
        String channel = st + "_ch";
        long pgtId = Long.parseLong(string("SELECT (pgtrickle.find_stream_table('" + st + "')).pgt_id"));
        AtomicLong nextId = new AtomicLong();
        for (int rep = 0; rep < tputReps; rep++) {
            for (boolean subscribed : new boolean[] {false, true}) {
                if (subscribed) {
                    exec("SELECT pgtrickle.subscribe('" + st + "', '" + channel + "')");
                } else {
                    exec("SELECT pgtrickle.unsubscribe('" + st + "', '" + channel + "')");
                }
                double r = writeFlat(st, channel, pgtId, subscribed, nextId);
                (subscribed ? tputWith : tputWithout).add(r);
                log("throughput rep %d, %s subscription: %.0f commits/s", rep + 1, subscribed ? "with" : "without", r);
            }
        }
    }

    /** Two unpaced writers for tputSeconds; the refresher at the interval; a LISTEN client draining when subscribed. */
    private double writeFlat(String st, String channel, long pgtId, boolean subscribed, AtomicLong nextId) throws Exception {
        AtomicBoolean running = new AtomicBoolean(true);
        AtomicBoolean writing = new AtomicBoolean(true);
        AtomicLong commits = new AtomicLong();
        AtomicLong notes = new AtomicLong();
        List<Throwable> errors = new CopyOnWriteArrayList<>();
        try (Connection listen = db.connect(); Connection rc = db.connect()) {
            try (Statement s = listen.createStatement()) {
                s.execute("LISTEN " + channel);
            }
            PGConnection pg = listen.unwrap(PGConnection.class);
            Thread listener = new Thread(() -> {
                try {
                    while (running.get()) {
                        PGNotification[] got = pg.getNotifications(50);
                        if (got != null) {
                            notes.addAndGet(got.length);
                        }
                    }
                } catch (SQLException e) {
                    errors.add(e);
                }
            });
            Map<Long, long[]> consumed = new ConcurrentHashMap<>();
            Thread refresh = new Thread(() -> refresher(rc, st, pgtId, intervalMs, running, consumed, new AtomicLong(), errors));
            listener.start();
            refresh.start();
            List<Thread> ws = new ArrayList<>();
            for (int w = 0; w < 2; w++) {
                int wi = w;
                Thread t = new Thread(() -> {
                    try (Connection wc = db.connect();
                         PreparedStatement ins = wc.prepareStatement("INSERT INTO " + st + "_src (id, w) VALUES (?, ?)")) {
                        while (writing.get()) {
                            ins.setLong(1, nextId.getAndIncrement());
                            ins.setInt(2, wi);
                            ins.executeUpdate();
                            commits.incrementAndGet();
                        }
                    } catch (SQLException e) {
                        errors.add(e);
                    }
                });
                ws.add(t);
                t.start();
            }
            Thread.sleep(500); // warm-up
            long c0 = commits.get();
            long t0 = System.nanoTime();
            Thread.sleep(tputSeconds * 1000L);
            long c1 = commits.get();
            long t1 = System.nanoTime();
            writing.set(false);
            for (Thread t : ws) {
                t.join();
            }
            Thread.sleep(300);
            running.set(false);
            refresh.join();
            listener.join();
            if (!errors.isEmpty()) {
                throw new IllegalStateException("throughput phase failed", errors.get(0));
            }
            if (subscribed && notes.get() == 0 || !subscribed && notes.get() != 0) {
                throw new IllegalStateException("unexpected notifications: " + notes.get() + " (subscribed " + subscribed + ")");
            }
            if (subscribed) {
                checks.add("throughput with subscription: " + notes.get() + " notifications received during one phase");
            }
            return (c1 - c0) / ((t1 - t0) / 1e9);
        }
    }

    // ---------------------------------------------------------------- 5. after a burst

    private record BurstProbe(String what, double dirtyMs, double vacuumedMs) {
    }

    private final List<BurstProbe> burstProbes = new ArrayList<>();
    private String burstNote;

    /**
     * A burst of changes consumed and pruned leaves its buffer full of deleted rows until vacuum. What
     * the scheduler's probe and a no-op refresh cost then, against the probe it replaced ("does the
     * buffer hold any row at all?"), before and after VACUUM. Autovacuum is off on the buffer, so
     * that the deleted rows stay for the measurement as they would under a busy autovacuum.
     */
    private void afterBurst() throws Exception {
        int rows = Integer.getInteger("bench.subs.burst.rows", 1_000_000);
        int reps = 20;
        exec("CREATE TABLE burst_src (id bigint PRIMARY KEY, w int NOT NULL)");
        exec("SELECT pgtrickle.create_stream_table('burst_st', 'SELECT w, count(*) AS n FROM burst_src GROUP BY w')");
        plan("burst_st");
        String buffer = string("SELECT pgtrickle.change_buffer('burst_src')::text");
        exec("ALTER TABLE " + buffer + " SET (autovacuum_enabled = off)");
        long t = System.nanoTime();
        exec("INSERT INTO burst_src SELECT g, g % 10 FROM generate_series(1, " + rows + ") g");
        double insertMs = (System.nanoTime() - t) / 1e6;
        t = System.nanoTime();
        exec("SELECT pgtrickle.refresh_stream_table('burst_st')");
        double consumeMs = (System.nanoTime() - t) / 1e6;
        String size = string("SELECT pg_size_pretty(pg_total_relation_size('" + buffer + "'))");
        long left = Long.parseLong(string("SELECT count(*) FROM " + buffer));
        String[][] probes = {
            {"the scheduler's probe, `due_stream_tables()` (one source; from the readers' oldest frontier on, by the xid index)",
                "SELECT count(*) FROM pgtrickle.due_stream_tables()"},
            {"the probe it replaced: does the buffer hold any row at all (`has_pending_changes(source, NULL)`)",
                "SELECT pgtrickle.has_pending_changes('burst_src', NULL)"},
            {"a no-op refresh (`refresh_stream_table`, NO_DATA)", "SELECT pgtrickle.refresh_stream_table('burst_st')"},
        };
        double[] dirty = new double[probes.length];
        for (int i = 0; i < probes.length; i++) {
            dirty[i] = medianMs(probes[i][1], reps);
        }
        exec("VACUUM " + buffer);
        for (int i = 0; i < probes.length; i++) {
            burstProbes.add(new BurstProbe(probes[i][0], dirty[i], medianMs(probes[i][1], reps)));
            log("after a burst of %,d rows: %s: %.2f ms, vacuumed %.2f ms", rows, probes[i][0], dirty[i],
                    burstProbes.get(i).vacuumedMs());
        }
        burstNote = String.format(Locale.ROOT, "%,d rows inserted in one statement (%.0f ms with capture), consumed by one refresh "
                + "(%.0f ms), which pruned them: the buffer then held %d live rows in %s", rows, insertMs, consumeMs, left, size);
        if (!string("SELECT count(*) FROM pgtrickle.due_stream_tables()").equals("0")) {
            throw new IllegalStateException("burst_st is due with nothing changed");
        }
        // the newest 2 * reps refreshes are the no-op ones
        String actions = string("SELECT string_agg(DISTINCT action, ',') FROM pgtrickle.get_refresh_history('burst_st', " + 2 * reps + ")");
        if (!actions.equals("NO_DATA")) {
            throw new IllegalStateException("the refreshes after the burst were " + actions + ", not NO_DATA only");
        }
        checks.add("after the burst: nothing due, and each of the " + 2 * reps + " refreshes timed was NO_DATA");
        exec("SELECT pgtrickle.drop_stream_table('burst_st')");
        exec("DROP TABLE burst_src");
    }

    private double medianMs(String sql, int reps) throws SQLException {
        List<Double> times = new ArrayList<>();
        for (int i = 0; i < reps; i++) {
            long t = System.nanoTime();
            string(sql);
            times.add((System.nanoTime() - t) / 1e6);
        }
        return median(times);
    }

    // ---------------------------------------------------------------- 4. the scheduler's cost when nothing changes

    private record IdleCost(int streamTables, int containers, int tickMs, int wakeMs, double ticksPerSecond, double jvmCpuPercent,
                            double postgresCpuPercent) {
    }

    private final List<IdleCost> idleCosts = new ArrayList<>();
    private static final int IDLE_STREAM_TABLES = 20;
    private static final int IDLE_SECONDS = 5;

    /**
     * What a short tick costs while nothing changes: {@value #IDLE_STREAM_TABLES} stream tables on
     * {@code calculated}, no writes, the scheduler at several ticks; CPU of this JVM and of the
     * database server over {@value #IDLE_SECONDS} s, after a second to settle.
     */
    private void schedulerIdleCost() throws Exception {
        exec("CREATE TABLE idle_src (id bigint PRIMARY KEY, w int NOT NULL)");
        exec("INSERT INTO idle_src SELECT g, g % " + IDLE_STREAM_TABLES + " FROM generate_series(1, 1000) g");
        for (int i = 0; i < IDLE_STREAM_TABLES; i++) {
            exec("SELECT pgtrickle.create_stream_table('idle_" + i + "', 'SELECT id, w FROM idle_src WHERE w = " + i
                    + "', schedule => 'calculated')");
            plan("idle_" + i);
        }
        for (int[] tw : new int[][] {{1000, 0}, {100, 0}, {10, 0}, {DEFAULT_TICK_MS, DEFAULT_WAKE_MS}}) {
            idleCost(IDLE_STREAM_TABLES, 1, tw[0], tw[1]);
        }
        for (int i = 0; i < IDLE_STREAM_TABLES; i++) {
            exec("SELECT pgtrickle.drop_stream_table('idle_" + i + "')");
        }
        exec("DROP TABLE idle_src");
        checks.add("scheduler idle: no refresh of the " + IDLE_STREAM_TABLES + " unchanged stream tables at any tick");

        // many stream tables, each over a source of its own (a probe per source, the worst case)
        int many = Integer.getInteger("bench.subs.idle.many", 1000);
        long t = System.nanoTime();
        for (int i = 0; i < many; i++) {
            exec("CREATE TABLE many_" + i + " (id bigint PRIMARY KEY, w int NOT NULL)");
            exec("INSERT INTO many_" + i + " VALUES (1, 1)");
            exec("SELECT pgtrickle.create_stream_table('many_st_" + i + "', 'SELECT id, w FROM many_" + i + "')");
            plan("many_st_" + i);
        }
        log("%d stream tables created and planned in %.0f s", many, (System.nanoTime() - t) / 1e9);
        // what autovacuum would do over the next minutes to the new tables (its ANALYZEs commit, and
        // every commit wakes the scheduler): done now, so that the measurement is of an idle database
        exec("VACUUM ANALYZE");
        idleCost(many, 1, DEFAULT_TICK_MS, 0);
        idleCost(many, 1, DEFAULT_TICK_MS, DEFAULT_WAKE_MS);
        // two containers on the same database, as a deployment for availability runs them: each ticks and waits for commits
        idleCost(many, 2, DEFAULT_TICK_MS, DEFAULT_WAKE_MS);
        manyW = new int[many];
        java.util.Arrays.fill(manyW, 1);
        loadedStaleness(many, 1);
        loadedStaleness(many, 2);
        for (int i = 0; i < many; i++) {
            exec("SELECT pgtrickle.drop_stream_table('many_st_" + i + "')");
            exec("DROP TABLE many_" + i);
        }
        checks.add("scheduler idle: no refresh of the " + many + " unchanged stream tables");
    }

    private record LoadedStaleness(int streamTables, int containers, double writesPerSecond, int writes,
                                   List<Double> latencies, double jvmCpuPercent, double postgresCpuPercent, double heapMb) {
    }

    private final List<LoadedStaleness> loadedStaleness = new ArrayList<>();
    /** The w in the row of each source many_i, which only loadedStaleness writes (created as 1). */
    private int[] manyW;

    /**
     * How stale the {@code tables} stream tables (each over a source of its own, many_0 ...) get while writes land on
     * random sources at bench.subs.load.rate a second for bench.subs.load.seconds: the container's scheduler at its
     * defaults, {@code containers} of them on the database. Each write is an UPDATE of its source's row that counts
     * up w; a refresh listener (run in the refresh's transaction, just before its commit) reads the stream table's w
     * and so knows which writes the refresh consumed: commit of a write to the refresh that consumed it. Also the CPU
     * of the JVM and of the schedulers' sessions, and the heap the engines hold with this many stream tables.
     */
    private void loadedStaleness(int tables, int containers) throws Exception {
        // per source: the commit times of its writes not yet seen refreshed, by the w they wrote
        Map<Integer, java.util.concurrent.ConcurrentSkipListMap<Integer, Long>> unseen = new java.util.concurrent.ConcurrentHashMap<>();
        List<Double> latencies = Collections.synchronizedList(new ArrayList<>());
        RefreshListener listener = (event, connection) -> {
            String name = event.qualifiedName();
            int at = name.lastIndexOf("many_st_");
            if (at < 0 || event.isEmpty()) {
                return;
            }
            int source = Integer.parseInt(name.substring(at + "many_st_".length()));
            try (Statement s = connection.createStatement();
                 ResultSet rs = s.executeQuery("SELECT max(w) FROM many_st_" + source)) {
                rs.next();
                int seen = rs.getInt(1);
                long now = System.nanoTime();
                var pending = unseen.get(source);
                if (pending != null) {
                    var consumed = pending.headMap(seen, true);
                    consumed.values().forEach(t -> latencies.add((now - t) / 1e6));
                    consumed.clear();
                }
            }
        };
        List<Long> before = backends();
        System.gc();
        long heap0 = java.lang.management.ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed();
        AtomicLong borrowed = new AtomicLong();
        int writes = 0;
        double heapMb;
        double jvm;
        double pg;
        double took;
        try (AutoCloseable engine = engine(DEFAULT_TICK_MS, DEFAULT_WAKE_MS, listener, borrowed);
             AutoCloseable second = containers > 1 ? engine(DEFAULT_TICK_MS, DEFAULT_WAKE_MS, listener, borrowed) : null;
             Connection writer = db.connect()) {
            Thread.sleep(1000);
            List<Long> sessions = new ArrayList<>(backends());
            sessions.removeAll(before);
            writer.setAutoCommit(true);
            java.util.Random random = new java.util.Random(7);
            // this writer is the sources' only one: the w each write will make is known before it commits,
            // so its time is noted before the commit that a refresh may follow at once
            double jvm0 = jvmCpuSeconds();
            double pg0 = cpuSeconds(sessions);
            long t0 = System.nanoTime();
            long end = t0 + loadSeconds * 1_000_000_000L;
            long next = t0;
            while (next < end) {
                long wait = next - System.nanoTime();
                if (wait > 0) {
                    Thread.sleep(wait / 1_000_000, (int) (wait % 1_000_000));
                }
                int source = random.nextInt(tables);
                int wrote = ++manyW[source];
                unseen.computeIfAbsent(source, k -> new java.util.concurrent.ConcurrentSkipListMap<>()).put(wrote, System.nanoTime());
                try (Statement s = writer.createStatement();
                     ResultSet rs = s.executeQuery("UPDATE many_" + source + " SET w = w + 1 WHERE id = 1 RETURNING w")) {
                    rs.next();
                    if (rs.getInt(1) != wrote) {
                        throw new IllegalStateException("many_" + source + ": wrote w = " + rs.getInt(1) + ", expected " + wrote);
                    }
                }
                writes++;
                next += (long) (1e9 / loadRate);
            }
            // the last writes' refreshes
            long drain = System.nanoTime() + 10_000_000_000L;
            while (unseen.values().stream().anyMatch(m -> !m.isEmpty()) && System.nanoTime() < drain) {
                Thread.sleep(1000);
                log("  %d of %d writes refreshed", latencies.size(), writes);
            }
            took = (System.nanoTime() - t0) / 1e9;
            jvm = (jvmCpuSeconds() - jvm0) * 100 / took;
            pg = (cpuSeconds(sessions) - pg0) * 100 / took;
            System.gc();
            heapMb = (java.lang.management.ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed() - heap0) / 1048576.0;
        }
        long left = unseen.values().stream().mapToLong(Map::size).sum();
        if (left > 0) {
            throw new IllegalStateException(left + " of " + writes + " writes to the " + tables + " sources were not refreshed within 10 s of the last");
        }
        LoadedStaleness row = new LoadedStaleness(tables, containers, writes / (double) loadSeconds, writes,
                new ArrayList<>(latencies), jvm, pg, heapMb);
        loadedStaleness.add(row);
        checks.add(String.format(Locale.ROOT, "under writes: every one of the %,d writes to the %,d sources refreshed (%d container(s))",
                writes, tables, containers));
        log("%d stream tables, %d container(s), %d writes at %.0f/s: commit to refreshed p50 %s ms, p99 %s, max %s; JVM %.1f%%, sessions %.1f%%, heap %+.1f MB",
                tables, containers, writes, row.writesPerSecond(), ms(pct(row.latencies(), 50)), ms(pct(row.latencies(), 99)),
                ms(Collections.max(row.latencies())), jvm, pg, heapMb);
    }

    /**
     * The schedulers' CPU over {@value #IDLE_SECONDS} s (after a second to settle) while none of {@code tables} stream tables
     * changes: {@code containers} engines on the database, in this JVM (its CPU is theirs together, as two containers' would be).
     */
    private void idleCost(int tables, int containers, int tick, int wake) throws Exception {
        AtomicLong borrowed = new AtomicLong();
        AtomicLong refreshed = new AtomicLong();
        List<Long> before = backends();
        try (AutoCloseable engine = engine(tick, wake, (event, connection) -> refreshed.incrementAndGet(), borrowed);
             AutoCloseable second = containers > 1 ? engine(tick, wake, (event, connection) -> refreshed.incrementAndGet(), borrowed) : null) {
            Thread.sleep(1000);
            List<Long> sessions = new ArrayList<>(backends());
            sessions.removeAll(before);
            long b0 = borrowed.get();
            double jvm0 = jvmCpuSeconds();
            double pg0 = cpuSeconds(sessions);
            long t0 = System.nanoTime();
            Thread.sleep(IDLE_SECONDS * 1000L);
            double seconds = (System.nanoTime() - t0) / 1e9;
            IdleCost cost = new IdleCost(tables, containers, tick, wake, (borrowed.get() - b0) / seconds,
                    (jvmCpuSeconds() - jvm0) * 100 / seconds, (cpuSeconds(sessions) - pg0) * 100 / seconds);
            idleCosts.add(cost);
            log("scheduler idle, %d stream tables, %d container(s), tick %d ms, wake %d ms: %.0f ticks/s, JVM %.1f%% of a CPU, PostgreSQL %.1f%%",
                    tables, containers, tick, wake, cost.ticksPerSecond(), cost.jvmCpuPercent(), cost.postgresCpuPercent());
        }
        if (refreshed.get() != 0) {
            throw new IllegalStateException("nothing changed, yet the scheduler refreshed " + refreshed.get() + " times");
        }
    }

    // ---------------------------------------------------------------- 3. webhook deliveries

    private record Drain(String what, boolean external, int sinks, long pollMs, int batch, int parallel, int expected, int received, double seconds,
                         double firstToLastRate, double jvmCpuMs, double receiverCpuMs, double postgresCpuMs, double callMs,
                         double callsInFlight, int mostCalls, long connections) {
    }

    /** The sink calls of one drain: how many, their time in all, and the most at once. */
    private static final class CallTimes {
        final java.util.concurrent.atomic.LongAdder count = new java.util.concurrent.atomic.LongAdder();
        final java.util.concurrent.atomic.LongAdder nanos = new java.util.concurrent.atomic.LongAdder();
        final java.util.concurrent.atomic.AtomicInteger now = new java.util.concurrent.atomic.AtomicInteger();
        final java.util.concurrent.atomic.AtomicInteger most = new java.util.concurrent.atomic.AtomicInteger();
    }

    /**
     * A webhook sink timed from the dispatcher's side: what a delivery spends in the sink's call (signing,
     * the HTTP exchange, the client's thread hand-offs), against the drain's whole time.
     */
    private record TimedSink(NotificationSink sink, CallTimes times) implements NotificationSink {
        @Override
        public void deliver(io.pgtrickle.api.notify.Notification notification) throws Exception {
            times.most.accumulateAndGet(times.now.incrementAndGet(), Math::max);
            long t = System.nanoTime();
            try {
                sink.deliver(notification);
            } finally {
                times.nanos.add(System.nanoTime() - t);
                times.count.increment();
                times.now.decrementAndGet();
            }
        }
    }

    /** CPU seconds used so far by this JVM. */
    private static double jvmCpuSeconds() {
        return ((com.sun.management.OperatingSystemMXBean) java.lang.management.ManagementFactory.getOperatingSystemMXBean())
                .getProcessCpuTime() / 1e9;
    }

    /**
     * CPU seconds used so far by the database server: its postmaster's children alive now, plus the
     * children that have exited (the postmaster's cutime and cstime), from /proc (Linux only; NaN
     * elsewhere). The pool keeps its backends alive through a drain.
     */
    private double postgresCpuSeconds() {
        try {
            long backend = Long.parseLong(string("SELECT pg_backend_pid()"));
            long postmaster = Long.parseLong(stat(backend)[3]);
            String[] pm = stat(postmaster);
            long ticks = Long.parseLong(pm[15]) + Long.parseLong(pm[16]);
            try (var procs = java.nio.file.Files.list(java.nio.file.Path.of("/proc"))) {
                for (java.nio.file.Path proc : (Iterable<java.nio.file.Path>) procs::iterator) {
                    String name = proc.getFileName().toString();
                    if (!name.chars().allMatch(Character::isDigit)) {
                        continue;
                    }
                    try {
                        String[] f = stat(Long.parseLong(name));
                        if (Long.parseLong(f[3]) == postmaster) {
                            ticks += busyTicks(f);
                        }
                    } catch (java.io.IOException | RuntimeException e) {
                        // it exited meanwhile
                    }
                }
            }
            return ticks / USER_HZ;
        } catch (Exception e) {
            return Double.NaN;
        }
    }

    /** The process ids of the database's client sessions now. */
    private List<Long> backends() throws SQLException {
        List<Long> pids = new ArrayList<>();
        for (String pid : strings("SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend'")) {
            pids.add(Long.parseLong(pid));
        }
        return pids;
    }

    /** CPU seconds used so far by these processes (from /proc; NaN if one cannot be read). */
    private static double cpuSeconds(List<Long> pids) {
        long ticks = 0;
        try {
            for (long pid : pids) {
                ticks += busyTicks(stat(pid));
            }
        } catch (java.io.IOException | RuntimeException e) {
            return Double.NaN;
        }
        return ticks / USER_HZ;
    }

    /** Clock ticks per second of /proc's CPU times on Linux. */
    private static final double USER_HZ = 100.0;

    /** A process's own CPU so far (utime + stime), in clock ticks, from its /proc stat fields. */
    private static long busyTicks(String[] stat) {
        return Long.parseLong(stat[13]) + Long.parseLong(stat[14]);
    }

    /** The fields of /proc/PID/stat after the command name (index 0 is the pid, 3 the parent). */
    private static String[] stat(long pid) throws java.io.IOException {
        String line = java.nio.file.Files.readString(java.nio.file.Path.of("/proc", Long.toString(pid), "stat"));
        String rest = line.substring(line.lastIndexOf(')') + 2);
        String[] after = rest.split(" ");
        String[] fields = new String[after.length + 2];
        fields[0] = Long.toString(pid);
        fields[1] = "comm";
        System.arraycopy(after, 0, fields, 2, after.length);
        return fields;
    }

    /** Per sink path: receive times at the receiver in this JVM. */
    private final Map<String, List<Long>> hits = new ConcurrentHashMap<>();

    /** Where the webhooks post: the receiver in this JVM, or {@link WebhookReceiver} in its own process. */
    private interface Receiver {
        String base();

        /** Requests to these sinks' paths so far: count, and the receiver's nanoTime at the first and the last. */
        long[] hits(String[] names) throws Exception;

        /** CPU seconds the receiver used so far, when it is a process of its own; NaN when it is part of this JVM. */
        double cpuSeconds();

        /** Connections the receiver accepted so far; -1 when it does not count them. */
        default long connections() throws Exception {
            return -1;
        }
    }

    private Receiver inJvm(String base) {
        return new Receiver() {
            @Override
            public String base() {
                return base;
            }

            @Override
            public long[] hits(String[] names) {
                List<Long> times = new ArrayList<>();
                for (String name : names) {
                    times.addAll(hits.getOrDefault("/" + name, List.of()));
                }
                return times.isEmpty() ? new long[] {0, 0, 0} : new long[] {times.size(), Collections.min(times), Collections.max(times)};
            }

            @Override
            public double cpuSeconds() {
                return Double.NaN;
            }
        };
    }

    /** {@link WebhookReceiver} started with this JVM's java and class path; it exits when its stdin closes. */
    private static final class External implements Receiver, AutoCloseable {
        private final Process process;
        private final String base;
        private final HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();

        External() throws IOException {
            String javaExe = Path.of(System.getProperty("java.home"), "bin", "java").toString();
            ProcessBuilder pb = new ProcessBuilder(javaExe, "-Xmx128m", "-XX:+UseSerialGC", "-cp", System.getProperty("java.class.path"),
                    WebhookReceiver.class.getName()).redirectError(ProcessBuilder.Redirect.INHERIT);
            pb.environment().remove("JDK_JAVA_OPTIONS"); // options meant for the benchmark (a recording) are not the receiver's
            process = pb.start();
            java.io.BufferedReader out = new java.io.BufferedReader(new java.io.InputStreamReader(process.getInputStream(),
                    java.nio.charset.StandardCharsets.US_ASCII));
            String line;
            do { // the JVM may print something first (JDK_JAVA_OPTIONS, -Xlog)
                line = out.readLine();
            } while (line != null && !line.startsWith("port "));
            if (line == null || !line.startsWith("port ")) {
                process.destroyForcibly();
                throw new IOException("the webhook receiver did not start: " + line);
            }
            base = "http://127.0.0.1:" + line.substring(5).trim() + "/";
        }

        @Override
        public String base() {
            return base;
        }

        @Override
        public long[] hits(String[] names) throws Exception {
            long count = 0;
            long first = Long.MAX_VALUE;
            long last = Long.MIN_VALUE;
            for (String name : names) {
                String[] f = client.send(HttpRequest.newBuilder(URI.create(base + "_stats/" + name)).build(),
                        HttpResponse.BodyHandlers.ofString()).body().trim().split(" ");
                long n = Long.parseLong(f[0]);
                if (n > 0) {
                    count += n;
                    first = Math.min(first, Long.parseLong(f[1]));
                    last = Math.max(last, Long.parseLong(f[2]));
                }
            }
            return count == 0 ? new long[] {0, 0, 0} : new long[] {count, first, last};
        }

        @Override
        public long connections() throws Exception {
            return Long.parseLong(client.send(HttpRequest.newBuilder(URI.create(base + "_stats/-")).build(),
                    HttpResponse.BodyHandlers.ofString()).body().trim().split(" ")[3]);
        }

        @Override
        public double cpuSeconds() {
            try {
                return busyTicks(stat(process.pid())) / USER_HZ;
            } catch (IOException | RuntimeException e) {
                return Double.NaN;
            }
        }

        long pid() {
            return process.pid();
        }

        @Override
        public void close() {
            process.destroy();
        }
    }

    /** One drain of section 3: its own sink group(s), registered before the outbox is filled. */
    private record DrainSpec(String what, boolean external, long pollMs, int batch, int parallel, String[][] sinks) {
        DrainSpec(String what, boolean external, long pollMs, int batch, String[][] sinks) {
            this(what, external, pollMs, batch, DEFAULT_PARALLEL, sinks);
        }
    }

    /** The notify bundle's default parallelDeliveries. */
    private static final int DEFAULT_PARALLEL = 32;

    private void webhooks() throws Exception {
        HttpServer http = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 200);
        http.createContext("/", exchange -> {
            try (InputStream in = exchange.getRequestBody()) {
                in.readAllBytes();
            }
            hits.computeIfAbsent(exchange.getRequestURI().getPath(), k -> new CopyOnWriteArrayList<>()).add(System.nanoTime());
            exchange.sendResponseHeaders(200, -1);
            exchange.close();
        });
        java.util.concurrent.ExecutorService httpThreads = Executors.newFixedThreadPool(8, r -> {
            Thread th = new Thread(r, "receiver");
            th.setDaemon(true);
            return th;
        });
        http.setExecutor(httpThreads);
        http.start();
        Receiver local = inJvm("http://127.0.0.1:" + http.getAddress().getPort() + "/");
        try (External external = new External()) {
            log("webhook receiver process %d at %s", external.pid(), external.base());
            // stream tables wh_i over one source; channel wh_ch_<i % sinks>
            exec("CREATE TABLE whsrc (id bigint PRIMARY KEY, g int NOT NULL)");
            String[] all = new String[whSinks];
            for (int k = 0; k < whSinks; k++) {
                all[k] = "wh_ch_" + k;
            }
            for (int i = 0; i < whTables; i++) {
                exec("SELECT pgtrickle.create_stream_table('wh_" + i + "', 'SELECT id FROM whsrc WHERE g = " + i + "', schedule => '1h')");
                plan("wh_" + i);
                exec("SELECT pgtrickle.subscribe('wh_" + i + "', 'wh_ch_" + (i % whSinks) + "')");
            }
            // the drains run in this order on one JVM. The first runs while the JIT is still compiling the
            // delivery path; a container that has run a while is past that, and so are the drains after it.
            // The same drain again, last, shows how much of the differences is the JIT still warming.
            List<DrainSpec> specs = new ArrayList<>();
            specs.add(new DrainSpec("1 webhook, dispatcher defaults, cold (the JVM's first drain)", false, 200, 50, one("cold")));
            specs.add(new DrainSpec("1 webhook, dispatcher defaults", false, 200, 50, one("one")));
            specs.add(new DrainSpec(whSinks + " webhooks (" + whTables / whSinks + "+ stream tables each), dispatcher defaults", false,
                    200, 50, quarters("q", all)));
            specs.add(new DrainSpec("1 webhook, fast polls", false, 10, 50, one("fast")));
            specs.add(new DrainSpec(whSinks + " webhooks, fast polls", false, 10, 50, quarters("qf", all)));
            specs.add(new DrainSpec("1 webhook, dispatcher defaults", true, 200, 50, one("x-one")));
            specs.add(new DrainSpec(whSinks + " webhooks (" + whTables / whSinks + "+ stream tables each), dispatcher defaults", true,
                    200, 50, quarters("xq", all)));
            specs.add(new DrainSpec("1 webhook, fast polls", true, 10, 50, one("x-fast")));
            // the delivery pool's size: the default before (8), and around today's (32)
            for (int parallel : new int[] {8, 16, 50}) {
                specs.add(new DrainSpec("1 webhook, parallelDeliveries " + parallel, true, 200, 50, parallel, one("x-p" + parallel)));
            }
            specs.add(new DrainSpec("1 webhook, dispatcher defaults, again after all the others", false, 200, 50, one("again")));
            specs.add(new DrainSpec("1 webhook, parallelDeliveries 8 (the default before), again after all the others", true, 200, 50,
                    8, one("x-p8-again")));
            specs.add(new DrainSpec("1 webhook, dispatcher defaults, again after all the others", true, 200, 50, one("x-again")));
            // independent groups of webhook sinks, each receiving every notification once, registered before enqueueing
            int groups = 2;
            register("webhook:probe", all);
            register("webhook:probe1", all);
            for (DrainSpec spec : specs) {
                groups++;
                for (String[] sink : spec.sinks()) {
                    register("webhook:" + sink[0], sink[1].equals("*") ? all : new String[] {sink[1]});
                }
            }
            sinkGroups = groups;
            exec("SET pg_trickle.notify_coalesce_ms = 0");
            long t = System.nanoTime();
            long id = 0;
            for (int r = 0; r < whRounds; r++) {
                exec("INSERT INTO whsrc SELECT " + id + " + g, g FROM generate_series(0, " + (whTables - 1) + ") g");
                id += whTables;
                for (int i = 0; i < whTables; i++) {
                    exec("SELECT pgtrickle.refresh_stream_table('wh_" + i + "')");
                }
            }
            exec("RESET pg_trickle.notify_coalesce_ms");
            int n = whTables * whRounds;
            long queued = Long.parseLong(string("SELECT count(*) FROM pgtrickle.pgt_outbox"));
            enqueueNote = String.format(Locale.ROOT, "%,d refreshes (%d stream tables × %d rounds) enqueued %,d outbox rows in %.1f s",
                    n, whTables, whRounds, queued, (System.nanoTime() - t) / 1e9);
            log("%s", enqueueNote);
            if (queued != (long) n * groups) {
                throw new IllegalStateException("expected " + n * groups + " outbox rows, found " + queued);
            }
            HikariConfig hc = new HikariConfig();
            hc.setPoolName("bench");
            hc.setDataSource(db.dataSource());
            hc.setMaximumPoolSize(10);
            hc.setMinimumIdle(2);
            try (HikariDataSource pool = new HikariDataSource(hc)) {
                dbOneByOne = databaseOnly(pool, n, "webhook:probe1", false);
                dbGrouped = databaseOnly(pool, n, "webhook:probe", true);
                // diagnosis (a profile of one kind of drain): bench.subs.webhook.receivers=process or jvm
                String receivers = System.getProperty("bench.subs.webhook.receivers", "jvm,process");
                // diagnosis: a flight recording (JFR, settings "profile") of the drains alone, to this file
                String jfr = System.getProperty("bench.subs.webhook.jfr", "");
                jdk.jfr.Recording recording = null;
                if (!jfr.isEmpty()) {
                    recording = new jdk.jfr.Recording(jdk.jfr.Configuration.getConfiguration("profile"));
                    recording.start();
                }
                for (DrainSpec spec : specs) {
                    if (receivers.contains(spec.external() ? "process" : "jvm")) {
                        drain(spec, spec.external() ? external : local, pool, n);
                    }
                }
                if (recording != null) {
                    recording.dump(Path.of(jfr));
                    recording.close();
                    log("flight recording of the drains written to %s", jfr);
                }
                parts(local, external, pool);
            }
        } finally {
            http.stop(0);
            httpThreads.shutdownNow();
        }
    }

    private int sinkGroups;

    private static String[][] one(String name) {
        return new String[][] {{name, "*"}};
    }

    /** One sink per channel, named prefix + k. */
    private static String[][] quarters(String prefix, String[] channels) {
        String[][] sinks = new String[channels.length][];
        for (int k = 0; k < channels.length; k++) {
            sinks[k] = new String[] {prefix + k, channels[k]};
        }
        return sinks;
    }

    private double postMs;
    private double postRate;
    private double postRateParallel;
    private final double[] postRateDefaultVersion = new double[1];
    private final double[] postRateHttp11 = new double[1];
    private double completeMs;
    /** Signed POSTs to the receiver process: threads, POSTs/s, JVM CPU ms per POST, receiver CPU ms per POST. */
    private final List<double[]> farPosts = new ArrayList<>();
    private final AtomicInteger farFailures = new AtomicInteger();

    /** The two halves of one delivery, alone: a signed POST by the sink, and one complete_notification on the pool. */
    private void parts(Receiver local, External external, DataSource pool) throws Exception {
        String base = local.base();
        Object sink = webhook("parts", base + "parts", "*");
        Object far = webhook("parts", external.base() + "parts", "*");
        try {
            List<Double> post = new ArrayList<>();
            long t0 = System.nanoTime();
            for (int i = 0; i < 600; i++) {
                io.pgtrickle.api.notify.Notification n = new io.pgtrickle.api.notify.Notification("pgt-bench-" + i, "webhook:parts",
                        "public.wh_0", "wh_ch_0", i + 1, i + 1, 1, 1, 0,
                        "{\"name\" : \"public.wh_0\", \"refresh_id\" : " + (i + 1) + ", \"inserted_count\" : 1, \"deleted_count\" : 0}",
                        Instant.now(), 1);
                long t = System.nanoTime();
                ((NotificationSink) sink).deliver(n);
                if (i >= 100) {
                    post.add((System.nanoTime() - t) / 1e6);
                } else {
                    t0 = System.nanoTime();
                }
            }
            postRate = 500 / ((System.nanoTime() - t0) / 1e9);
            postMs = median(post);
            // the ceiling of HTTP alone on this machine: as many POSTs at once as a lane runs deliveries
            int threads = 8;
            int each = 250;
            java.util.concurrent.ExecutorService posters = Executors.newFixedThreadPool(threads);
            try {
                List<java.util.concurrent.Future<?>> runs = new ArrayList<>();
                long tp = System.nanoTime();
                for (int th = 0; th < threads; th++) {
                    int base0 = 1_000 + th * each;
                    runs.add(posters.submit(() -> {
                        for (int i = 0; i < each; i++) {
                            ((NotificationSink) sink).deliver(new io.pgtrickle.api.notify.Notification("pgt-bench-" + (base0 + i),
                                    "webhook:parts", "public.wh_0", "wh_ch_0", base0 + i, base0 + i, 1, 1, 0,
                                    "{\"name\" : \"public.wh_0\", \"refresh_id\" : " + (base0 + i)
                                            + ", \"inserted_count\" : 1, \"deleted_count\" : 0}", Instant.now(), 1));
                        }
                        return null;
                    }));
                }
                for (java.util.concurrent.Future<?> f : runs) {
                    f.get();
                }
                postRateParallel = threads * each / ((System.nanoTime() - tp) / 1e9);
                // the same to the receiver in its own process: what HTTP alone costs this JVM, and the receiver
                for (int i = 0; i < 200; i++) {
                    ((NotificationSink) far).deliver(new io.pgtrickle.api.notify.Notification("pgt-bench-w" + i, "webhook:parts",
                            "public.wh_0", "wh_ch_0", i + 1, i + 1, 1, 1, 0, "{\"name\" : \"public.wh_0\", \"refresh_id\" : " + (i + 1)
                                    + ", \"inserted_count\" : 1, \"deleted_count\" : 0}", Instant.now(), 1));
                }
                for (int threadCount : new int[] {8, 16}) {
                    double jvm0 = jvmCpuSeconds();
                    double rc0 = external.cpuSeconds();
                    List<java.util.concurrent.Future<?>> farRuns = new ArrayList<>();
                    int farEach = 4_000 / threadCount;
                    long tf = System.nanoTime();
                    for (int th = 0; th < threadCount; th++) {
                        int base0 = 10_000 + th * farEach;
                        farRuns.add(posters.submit(() -> {
                            for (int i = 0; i < farEach; i++) {
                                io.pgtrickle.api.notify.Notification n = new io.pgtrickle.api.notify.Notification("pgt-bench-" + (base0 + i),
                                        "webhook:parts", "public.wh_0", "wh_ch_0", base0 + i, base0 + i, 1, 1, 0,
                                        "{\"name\" : \"public.wh_0\", \"refresh_id\" : " + (base0 + i)
                                                + ", \"inserted_count\" : 1, \"deleted_count\" : 0}", Instant.now(), 1);
                                try {
                                    ((NotificationSink) far).deliver(n);
                                } catch (IOException e) {
                                    // as the dispatcher would, once more (the JDK client now and then loses a
                                    // kept-alive connection it is reusing: "header parser received no bytes")
                                    farFailures.incrementAndGet();
                                    log("parts: a POST to the receiver process failed, sent again: %s", e.getMessage());
                                    ((NotificationSink) far).deliver(n);
                                }
                            }
                            return null;
                        }));
                    }
                    for (java.util.concurrent.Future<?> f : farRuns) {
                        f.get();
                    }
                    double secs = (System.nanoTime() - tf) / 1e9;
                    int total = threadCount * farEach;
                    farPosts.add(new double[] {threadCount, total / secs, (jvmCpuSeconds() - jvm0) * 1000 / total,
                            (external.cpuSeconds() - rc0) * 1000 / total});
                }
                // why the sink speaks HTTP/1.1 to http:// endpoints: the JDK client's default asks for an h2c upgrade every time
                URI uri = URI.create(base + "versions");
                for (HttpClient.Version version : new HttpClient.Version[] {HttpClient.Version.HTTP_2, HttpClient.Version.HTTP_1_1}) {
                    HttpClient client = HttpClient.newBuilder().version(version).build();
                    Callable<Void> plainPost = () -> {
                        client.send(HttpRequest.newBuilder(uri).POST(HttpRequest.BodyPublishers.ofString("{}")).build(),
                                HttpResponse.BodyHandlers.discarding());
                        return null;
                    };
                    for (int i = 0; i < 200; i++) {
                        plainPost.call(); // warm-up
                    }
                    List<java.util.concurrent.Future<?>> versionRuns = new ArrayList<>();
                    long tv = System.nanoTime();
                    for (int th = 0; th < threads; th++) {
                        versionRuns.add(posters.submit(() -> {
                            for (int i = 0; i < each; i++) {
                                plainPost.call();
                            }
                            return null;
                        }));
                    }
                    for (java.util.concurrent.Future<?> f : versionRuns) {
                        f.get();
                    }
                    (version == HttpClient.Version.HTTP_2 ? postRateDefaultVersion : postRateHttp11)[0] =
                            threads * each / ((System.nanoTime() - tv) / 1e9);
                }
            } finally {
                posters.shutdownNow();
            }
            List<Double> complete = new ArrayList<>();
            for (int i = 0; i < 600; i++) {
                long t = System.nanoTime();
                try (Connection pc = pool.getConnection(); PreparedStatement ps = pc.prepareStatement(
                        "SELECT * FROM pgtrickle.complete_notifications(ARRAY[?::bigint], ARRAY[gen_random_uuid()])")) {
                    pc.setAutoCommit(true);
                    ps.setLong(1, -1 - i);
                    ps.executeQuery().close();
                }
                if (i >= 100) {
                    complete.add((System.nanoTime() - t) / 1e6);
                }
            }
            completeMs = median(complete);
            log("parts: POST %.2f ms (%.0f/s sequential, %.0f/s 8 at a time), complete_notifications of one %.2f ms; plain POSTs 8 at "
                    + "a time: JDK default version %.0f/s, HTTP/1.1 %.0f/s", postMs, postRate, postRateParallel, completeMs,
                    postRateDefaultVersion[0], postRateHttp11[0]);
            for (double[] f : farPosts) {
                log("parts: signed POSTs to the receiver process, %.0f threads: %.0f/s, CPU per POST: JVM %.3f ms, receiver %.3f ms",
                        f[0], f[1], f[2], f[3]);
            }
        } finally {
            for (Object w : new Object[] {sink, far}) {
                Method deactivate = w.getClass().getDeclaredMethod("deactivate");
                deactivate.setAccessible(true);
                deactivate.invoke(w);
            }
        }
    }

    private record DatabaseSide(double rate, double claimMs) {
    }

    private DatabaseSide dbOneByOne;
    private DatabaseSide dbGrouped;

    /**
     * The database side of a drain alone, without the sink call: claim 50, then complete them one
     * call each (as lanes did before completions were grouped) or in one call (as a lane's grouped
     * completion does when its deliveries finish together).
     */
    private DatabaseSide databaseOnly(DataSource pool, int expected, String sinkId, boolean grouped) throws SQLException {
        int done = 0;
        List<Double> claims = new ArrayList<>();
        long t0 = System.nanoTime();
        try (Connection cc = pool.getConnection(); PreparedStatement claim = cc.prepareStatement(
                "SELECT outbox_id, claim_token FROM pgtrickle.claim_notifications(?, 50, 60000) ORDER BY outbox_id")) {
            cc.setAutoCommit(true);
            claim.setString(1, sinkId);
            while (true) {
                List<Long> ids = new ArrayList<>();
                List<Object> tokens = new ArrayList<>();
                long t = System.nanoTime();
                try (ResultSet rs = claim.executeQuery()) {
                    while (rs.next()) {
                        ids.add(rs.getLong(1));
                        tokens.add(rs.getObject(2));
                    }
                }
                claims.add((System.nanoTime() - t) / 1e6);
                if (ids.isEmpty()) {
                    break;
                }
                int groups = grouped ? 1 : ids.size();
                int size = ids.size() / groups;
                for (int g = 0; g < groups; g++) {
                    try (Connection pc = pool.getConnection(); PreparedStatement ps = pc.prepareStatement(
                            "SELECT count(*) FROM pgtrickle.complete_notifications(?, ?)")) {
                        pc.setAutoCommit(true);
                        List<Long> gi = ids.subList(g * size, g == groups - 1 ? ids.size() : (g + 1) * size);
                        List<Object> gt = tokens.subList(g * size, g == groups - 1 ? ids.size() : (g + 1) * size);
                        ps.setArray(1, pc.createArrayOf("bigint", gi.toArray()));
                        ps.setArray(2, pc.createArrayOf("uuid", gt.toArray()));
                        try (ResultSet rs = ps.executeQuery()) {
                            rs.next();
                            done += rs.getInt(1);
                        }
                    }
                }
            }
        }
        double seconds = (System.nanoTime() - t0) / 1e9;
        DatabaseSide side = new DatabaseSide(done / seconds, median(claims));
        if (done != expected) {
            throw new IllegalStateException(sinkId + " drained " + done + " of " + expected);
        }
        log("database side alone (%s): %d claimed and completed in %.2f s (%.0f/s), claim median %.1f ms over %d claims",
                grouped ? "one completion per claim" : "one completion per row", done, seconds, side.rate(), side.claimMs(), claims.size());
        return side;
    }

    private void register(String sinkId, String[] channels) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement("SELECT pgtrickle.register_sink(?, ?)")) {
            ps.setString(1, sinkId);
            ps.setArray(2, c.createArrayOf("text", channels));
            ps.execute();
        }
    }

    /** Starts a dispatcher with the spec's webhook sinks and times it until their queues are empty. */
    private void drain(DrainSpec spec, Receiver receiver, DataSource pool, int expected) throws Exception {
        Class<?> settingsClass = Class.forName("io.pgtrickle.notify.DispatcherSettings");
        Constructor<?> sc = settingsClass.getDeclaredConstructor(long.class, int.class, int.class, long.class, long.class, int.class);
        sc.setAccessible(true);
        Object ds = sc.newInstance(spec.pollMs(), spec.batch(), 60_000, 1_000L, 300_000L, spec.parallel());
        Class<?> dispatcherClass = Class.forName("io.pgtrickle.notify.NotificationDispatcher");
        Constructor<?> dc = dispatcherClass.getDeclaredConstructor(DataSource.class, settingsClass);
        dc.setAccessible(true);
        Method add = dispatcherClass.getDeclaredMethod("add", NotificationSink.class, Map.class);
        Method start = dispatcherClass.getDeclaredMethod("start");
        Method close = dispatcherClass.getDeclaredMethod("close");
        for (Method m : new Method[] {add, start, close}) {
            m.setAccessible(true);
        }
        Object dispatcher = dc.newInstance(pool, ds);
        List<Object> webhooks = new ArrayList<>();
        StringBuilder ids = new StringBuilder();
        String[] names = new String[spec.sinks().length];
        CallTimes calls = new CallTimes();
        try {
            long serviceId = 1000;
            for (int k = 0; k < names.length; k++) {
                String[] s = spec.sinks()[k];
                names[k] = s[0];
                Object sink = webhook(s[0], receiver.base() + s[0], s[1]);
                webhooks.add(sink);
                sink = new TimedSink((NotificationSink) sink, calls);
                Map<String, Object> p = new HashMap<>();
                p.put("service.id", serviceId++);
                p.put(NotificationSinkType.TYPE, "webhook");
                p.put(NotificationSinkType.NAME, s[0]);
                p.put(NotificationSinkType.CHANNELS, new String[] {s[1]});
                p.put(NotificationSinkType.MAX_ATTEMPTS, 10);
                p.put(NotificationSinkType.TIMEOUT_MS, 10_000);
                add.invoke(dispatcher, sink, p);
                ids.append(ids.length() == 0 ? "" : ",").append("'webhook:").append(s[0]).append("'");
            }
            double jvm0 = jvmCpuSeconds();
            double pg0 = postgresCpuSeconds();
            double rc0 = receiver.cpuSeconds();
            long conn0 = receiver.connections();
            long t0 = System.nanoTime();
            start.invoke(dispatcher);
            long deadline = t0 + 120_000_000_000L;
            while (System.nanoTime() < deadline) {
                if (Long.parseLong(string("SELECT count(*) FROM pgtrickle.pgt_outbox WHERE sink_id IN (" + ids + ")")) == 0) {
                    break;
                }
                Thread.sleep(20);
            }
            double seconds = (System.nanoTime() - t0) / 1e9;
            double jvmMs = (jvmCpuSeconds() - jvm0) * 1000 / expected;
            double pgMs = (postgresCpuSeconds() - pg0) * 1000 / expected;
            double receiverMs = (receiver.cpuSeconds() - rc0) * 1000 / expected;
            long[] h = receiver.hits(names);
            long opened = conn0 < 0 ? -1 : receiver.connections() - conn0 - 1; // less the query's own
            double rate = h[0] > 1 ? (h[0] - 1) / ((h[2] - h[1]) / 1e9) : 0;
            Drain d = new Drain(spec.what(), spec.external(), spec.sinks().length, spec.pollMs(), spec.batch(), spec.parallel(), expected, (int) h[0],
                    seconds, rate, jvmMs, receiverMs, pgMs, calls.count.sum() == 0 ? 0 : calls.nanos.sum() / 1e6 / calls.count.sum(),
                    calls.nanos.sum() / 1e9 / seconds, calls.most.get(), opened);
            drains.add(d);
            log("drain %s, receiver %s: %d/%d in %.2f s (%.0f/s start→empty, %.0f/s first→last), CPU per delivery: JVM %.2f ms, "
                    + "receiver %.2f ms, PostgreSQL %.2f ms; sink calls: %.2f ms each, %.1f at a time on average, %d at most; %d connections",
                    spec.what(), spec.external() ? "process" : "in JVM", h[0], expected,
                    seconds, expected / seconds, rate, jvmMs, receiverMs, pgMs, d.callMs(), d.callsInFlight(), d.mostCalls(), opened);
            if (h[0] < expected) {
                throw new IllegalStateException("drain incomplete: " + h[0] + " of " + expected);
            }
        } finally {
            close.invoke(dispatcher);
            for (Object w : webhooks) {
                Method deactivate = w.getClass().getDeclaredMethod("deactivate");
                deactivate.setAccessible(true);
                deactivate.invoke(w);
            }
        }
    }

    /** A WebhookSink activated as DS would, without a BundleContext (as its unit tests do); signed. */
    private static Object webhook(String name, String url, String channel) throws Exception {
        Class<?> sinkClass = Class.forName("io.pgtrickle.sink.webhook.WebhookSink");
        Class<?> configClass = Class.forName("io.pgtrickle.sink.webhook.WebhookSink$Config");
        byte[] key = new byte[32];
        new SecureRandom().nextBytes(key);
        Map<String, Object> values = Map.of("name", name, "url", url, "channels", new String[] {channel},
                "secret", "whsec_" + Base64.getEncoder().encodeToString(key));
        Object config = Proxy.newProxyInstance(configClass.getClassLoader(), new Class<?>[] {configClass}, (proxy, m, args) -> {
            if (m.getName().equals("annotationType")) {
                return configClass;
            }
            if (values.containsKey(m.getName())) {
                return values.get(m.getName());
            }
            if (m.getDefaultValue() != null) {
                return m.getDefaultValue();
            }
            if (m.getName().equals("hashCode")) {
                return 0;
            }
            if (m.getName().equals("toString")) {
                return "Config(" + name + ")";
            }
            if (m.getName().equals("equals")) {
                return proxy == args[0];
            }
            throw new UnsupportedOperationException(m.getName());
        });
        Object sink = sinkClass.getDeclaredConstructor().newInstance();
        Method activate = null;
        for (Method m : sinkClass.getDeclaredMethods()) {
            if (m.getName().equals("activate") && m.getParameterCount() == 3) {
                activate = m;
            }
        }
        activate.setAccessible(true);
        activate.invoke(sink, null, config, Map.of());
        return sink;
    }

    // ---------------------------------------------------------------- report

    private String report(Instant startedAt, double minutes) {
        StringBuilder b = new StringBuilder();
        BenchOutput.title(b, "Subscription benchmark: NOTIFY latency, writer cost, webhook deliveries", SubscriptionBenchmark.class, startedAt);
        b.append("## Reproduce\n\nFrom the repository root, after `mvn -B install -DskipTests`:\n\n```\n").append(command).append("\n```\n\n");
        b.append(String.format(Locale.ROOT, "Knobs (`-D...`): `bench.subs.seconds` (writes per latency cell, default 10; this run %d), "
                + "`bench.subs.interval` (refresh interval ms, 100; %d), `bench.subs.engine.tick` (the scheduler's tick in the "
                + "`calculated` cells, ms, 10; %d), `bench.subs.tput.seconds` (4; %d), `bench.subs.tput.reps` "
                + "(3; %d), `bench.subs.webhook.tables` (50; %d), `bench.subs.webhook.rounds` (100; %d), `bench.subs.webhook.sinks` "
                + "(4; %d), `bench.subs.load.rate` (writes a second in section 4 under writes, 100; %s), `bench.subs.load.seconds` "
                + "(10; %d), `bench.subs.sections` (1,2,3,4,5: a subset, for diagnosis, writes a report of only those). Only `-Pbench-subscriptions` runs it (the normal build only compiles; `-Pbench` still runs only the engine "
                + "benchmark). It starts its own database through `TestDatabase`, installs the catalog with `CatalogMigrator`, "
                + "and drops the database at the end.\n\n", cellSeconds, intervalMs, engineTickMs, tputSeconds, tputReps, whTables, whRounds, whSinks,
                loadRate, loadSeconds));
        b.append("## Machine and server\n\n");
        b.append(String.format(Locale.ROOT, "- %d cores as seen by the JVM: a shared, **noisy** 2-vCPU VM that was running other "
                + "builds at the same time; writers, refresher, listener, dispatcher, HTTP receiver and PostgreSQL all share them. "
                + "Compare within the run. Java %s.\n", Runtime.getRuntime().availableProcessors(), System.getProperty("java.version")));
        b.append("- Database: ").append(serverDescription).append(".\n- Settings: ");
        List<String> kv = new ArrayList<>();
        settings.forEach((k, v) -> kv.add("`" + k + "` " + v));
        b.append(String.join(", ", kv)).append(".\n");
        b.append(String.format(Locale.ROOT, "- Whole run %.1f min.\n\n", minutes));

        if (sections.contains(1)) {
            b.append("## 1. Commit → NOTIFY received (LISTEN client)\n\n");
            b.append("Per cell a fresh source `latN_src(id bigint PK, w int)` and a DIFFERENTIAL stream table `SELECT id, w FROM latN_src` "
                    + "subscribed to one channel, its `notify_coalesce_ms` set with `alter_stream_table`. Two writer threads, each paced "
                    + "(open loop, evenly spaced) single-row INSERT commits in autocommit, ids `i*2+w`. **Refreshes come from one of two "
                    + "drivers.** (a) A refresher thread at a fixed rate (every " + intervalMs + " ms) or back "
                    + "to back, each tick one transaction: `refresh_stream_table`, then the newest id of each writer now in the stream "
                    + "table and the refresh's `refresh_id`, then `flush_notifications()` (what the notify bundle's timer does, for the "
                    + "trailing coalesced notification), commit (which sends the NOTIFY). (b) The container's scheduler itself "
                    + "(`RefreshEngine` on a HikariCP pool, built by reflection as its tests build it), the stream table on schedule "
                    + "`calculated` (the default schedule) and the scheduler ticking every " + engineTickMs + " ms or 1,000 ms "
                    + "(`pg_trickle.scheduler_interval_ms`, default 1,000), and with the **wake** (`pg_trickle.wake_interval_ms`, "
                    + "default 10) looking between ticks whether a transaction has committed since the last tick, ticking at once if "
                    + "so: each tick probes the change buffers (`due_stream_tables()`) and refreshes what has changes; a `RefreshListener` "
                    + "records the newest id of each writer inside each refresh transaction. Writers never notify. The first two rows "
                    + "are a default installation, before the wake (tick 1 s, no wake) and with it, at the default coalescing window "
                    + "(250 ms) and " + DEFAULTS_RATE + " commits a second (one per writer per second, sparser than the window, as an "
                    + "application's writes usually are; " + DEFAULTS_SECONDS_FACTOR + " times as long as the other cells). A pgjdbc "
                    + "connection `LISTEN`s and waits in "
                    + "`getNotifications(50)`; it stamps each notification on arrival. **Latency = arrival − the client-side commit "
                    + "acknowledgement time of the newest write the notification covers**: the notification's `refresh_id` → the newest "
                    + "id per writer that refresh had made visible (each writer commits its ids in order, so it covers all of that "
                    + "writer's earlier ones) → the later of the two acknowledgements. A coalesced notification carries its latest "
                    + "refresh_id, so it is measured against the newest write of that refresh. The first second of each cell is "
                    + "warm-up. One clock (System.nanoTime) in one JVM.\n\n");
            b.append("Two views of the same cells: **newest write** (the definition above: one sample per notification) and **every "
                    + "write** (per write: arrival of the first notification covering it − its acknowledgement; one sample per write "
                    + "after the warm-up). The first excludes the wait for the next refresh tick, the second includes it.\n\n");
            b.append("| target rate | achieved commits/s | coalesce ms | refreshed by | refreshes done | notifications | newest write: p50 ms | p99 ms | max ms | target (p50 < 20, p99 < 100; coalescing off or writes sparser than its window) | every write: n | p50 ms | p99 ms | target |\n");
            b.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
            for (LatencyCell cell : cells) {
                double p50 = pct(cell.latencies, 50);
                double p99 = pct(cell.latencies, 99);
                String target = cell.targeted
                        ? (p50 < 20 && p99 < 100 ? "**met**" : "**missed**" + (p50 < 20 ? " (p99)" : p99 < 100 ? " (p50)" : " (both)"))
                        : "– (by design ≤ window)";
                double w50 = pct(cell.perWrite, 50);
                double w99 = pct(cell.perWrite, 99);
                String wTarget = cell.targeted
                        ? (w50 < 20 && w99 < 100 ? "**met**" : "**missed**" + (w50 < 20 ? " (p99)" : w99 < 100 ? " (p50)" : " (both)"))
                        : "–";
                b.append(String.format(Locale.ROOT, "| %,d/s | %,.0f | %d | %s | %d | %d | %s | %s | %s | %s | %,d | %s | %s | %s |\n",
                        cell.rate, cell.achievedRate, cell.coalesceMs, cell.driver, cell.refreshes, cell.notifications,
                        ms(p50), ms(p99), ms(cell.latencies.isEmpty() ? 0 : Collections.max(cell.latencies)), target,
                        cell.perWrite.size(), ms(w50), ms(w99), wTarget));
            }
        }
        if (sections.contains(2)) {
            b.append("\n## 2. Writer throughput with and without a subscription\n\n");
            b.append(String.format(Locale.ROOT, "One source and DIFFERENTIAL stream table as above; two unpaced writer threads of "
                    + "single-row INSERT commits for %d s (after 0.5 s warm-up), the refresher every %d ms in both phases; alternately "
                    + "without a subscription and with one (plus a LISTEN client draining it); %d repetitions.\n\n", tputSeconds,
                    intervalMs, tputReps));
            b.append("| | commits/s median (min–max) |\n|---|---|\n");
            b.append("| without subscription | ").append(rate(tputWithout)).append(" |\n");
            b.append("| with subscription | ").append(rate(tputWith)).append(" |\n");
            b.append(String.format(Locale.ROOT, "| **ratio with / without** | **%.2f** |\n\n", median(tputWith) / median(tputWithout)));
        }
        if (sections.contains(3)) {
            b.append("## 3. Webhook deliveries from the outbox\n\n");
            b.append("`").append(enqueueNote).append(String.format(Locale.ROOT, "` with `notify_coalesce_ms = 0`, every notification queued once for each of %d "
                    + "independent sink groups (one per drain below and two probes) registered beforehand with `pgtrickle.register_sink`. Then, per group, the notify bundle's "
                    + "`NotificationDispatcher` (package-private: built by reflection, as its tests build it) with `WebhookSink`s "
                    + "(activated without a BundleContext as in their tests, signed with a `whsec_` secret) on a HikariCP pool of 10 (as "
                    + "the container's data source), posting to one of two receivers on loopback, both answering 200: **in this JVM**, "
                    + "a JDK `HttpServer` (8 threads); or **a process of its own**, `io.pgtrickle.bench.WebhookReceiver` (started with "
                    + "this JVM's `java` and class path: a blocking HTTP/1.1 server, a thread per kept-alive connection, counting requests "
                    + "and checking nothing), as a real endpoint is. Time from "
                    + "`start()` until the group's outbox rows are gone; rate also from the first to the last request received (on the "
                    + "receiver's clock). The first "
                    + "drain runs on a cold JVM (the JIT still compiling the delivery path); the JIT keeps making the later ones cheaper "
                    + "(a drain lasts a second or two), so compare rows near each other, and the rows run **again after all the "
                    + "others** (warm, as a container that has run a while) with each other. The benchmark sets `java.util.concurrent.ForkJoinPool.common.parallelism=2` on machines with 2 CPUs or "
                    + "fewer, as the distribution's launcher does: otherwise `CompletableFuture`, which the JDK's HttpClient uses for every "
                    + "response, starts a new thread per asynchronous stage (this run: %d CPUs, common pool parallelism %d).\n\n",
                    sinkGroups, Runtime.getRuntime().availableProcessors(), java.util.concurrent.ForkJoinPool.getCommonPoolParallelism()));
            b.append("| sinks | receiver | pollIntervalMs | batchSize | parallelDeliveries | delivered | s (start → empty) | deliveries/s (start → empty) | deliveries/s (first → last) | CPU ms per delivery: JVM | receiver process | PostgreSQL | sink call, ms | sink calls at once: mean (max) | connections opened | target 5,000/s |\n");
            b.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
            for (Drain d : drains) {
                double r = d.expected / d.seconds;
                b.append(String.format(Locale.ROOT, "| %s | %s | %d | %d | %d | %,d / %,d | %.2f | %,.0f | %,.0f | %.2f | %s | %.2f | %.2f | %.1f (%d) | %s | %s |\n", d.what,
                        d.external ? "**process**" : "in JVM", d.pollMs, d.batch, d.parallel, d.received, d.expected, d.seconds, r, d.firstToLastRate,
                        d.jvmCpuMs, d.external ? String.format(Locale.ROOT, "%.2f", d.receiverCpuMs) : "(in JVM)", d.postgresCpuMs,
                        d.callMs, d.callsInFlight, d.mostCalls, d.connections < 0 ? "–" : Long.toString(d.connections),
                        r >= 5000 ? "**met**" : "**missed**"));
            }
            b.append(String.format(Locale.ROOT, "\nCPU per delivery: the JVM's process CPU time (dispatcher, sinks, the HTTP receiver "
                    + "when it is in the JVM, and anything else this JVM did meanwhile), the receiver process's, and the database server's "
                    + "(its backends' and exited children's, from `/proc`) over the drain, divided by the deliveries. With %d CPUs, a rate "
                    + "of R deliveries/s needs (JVM + receiver + PostgreSQL) × R ≤ %d,000 ms of CPU per second. Sink call: each "
                    + "`WebhookSink.deliver` timed by a wrapper the dispatcher calls (signing, the HTTP exchange and the HTTP client's "
                    + "own hand-offs); at once: the calls' summed time over the drain's, i.e. how many of a lane's delivery slots were "
                    + "busy on average (the rest of the time goes to claims, completions and hand-offs between the dispatcher's threads). "
                    + "Connections opened: those the receiver process accepted during the drain (HTTP/1.1 keep-alive: the sink's "
                    + "client opens about one per delivery in flight and reuses them).\n",
                    Runtime.getRuntime().availableProcessors(), Runtime.getRuntime().availableProcessors()));
            b.append(String.format(Locale.ROOT, "\nThe parts of a delivery, alone (500 after 100 warm-up): the webhook sink's signed POST to "
                    + "the same receiver %.2f ms median (%,.0f/s back to back); the same POSTs from 8 threads at once (as a lane's 8 delivery "
                    + "slots before parallelDeliveries was 32), 2,000 in all: **%,.0f/s**, the ceiling of HTTP alone in this JVM on this machine, before any database work; "
                    + "`complete_notifications` of one row on a pooled connection (borrow, autocommit call with a non-existent id, so "
                    + "nothing deleted, return) %.2f ms median.\n", postMs, postRate, postRateParallel, completeMs));
            for (double[] f : farPosts) {
                b.append(String.format(Locale.ROOT, "\nThe sink's signed POSTs alone to the receiver **process**, %.0f threads at once, "
                        + "4,000 after 200 warm-up: **%,.0f/s**; CPU per POST: this JVM %.3f ms, the receiver %.3f ms.\n", f[0], f[1], f[2], f[3]));
            }
            if (farFailures.get() > 0) {
                b.append(String.format(Locale.ROOT, "(%d of those POSTs failed once, the JDK client losing a kept-alive connection it "
                        + "was reusing, and were sent again.)\n", farFailures.get()));
            }
            b.append(String.format(Locale.ROOT, "\nWhy the sink speaks HTTP/1.1 to `http://` endpoints (HTTP/2 stays for `https://`, "
                    + "negotiated by TLS): unsigned 2-byte POSTs from a bare JDK `HttpClient`, 8 threads at once, 2,000 after 200 warm-up, "
                    + "same receiver: the client's default version (HTTP/2: on cleartext it asks every request to upgrade to h2c, which "
                    + "this server, like most, refuses every time) **%,.0f/s**; HTTP/1.1 **%,.0f/s**.\n", postRateDefaultVersion[0],
                    postRateHttp11[0]));
            b.append("\nThe database side of a drain alone, side by side (before the drains above, on the full outbox; each probe is its own "
                    + "sink group; claims of 50 with `claim_notifications`, no sink call, no poll wait):\n\n");
            b.append("| completing | notifications/s | one claim, median ms |\n|---|---|---|\n");
            b.append(String.format(Locale.ROOT, "| one `complete_notifications` call per row (how lanes completed before grouping) | %,.0f | %.1f |\n",
                    dbOneByOne.rate(), dbOneByOne.claimMs()));
            b.append(String.format(Locale.ROOT, "| one call per claim of 50 (a lane's grouped completion at its best) | %,.0f | %.1f |\n",
                    dbGrouped.rate(), dbGrouped.claimMs()));
        }
        if (sections.contains(4)) {
            b.append(String.format(Locale.ROOT, "\n## 4. The scheduler's own cost when nothing changes\n\n%d stream tables on schedule "
                    + "`calculated` over one source, then " + Integer.getInteger("bench.subs.idle.many", 1000) + " over a source each (the default "
                    + "schedule; the database vacuumed and analysed after their creation, so that autovacuum has nothing to do), no writes; the container's scheduler (as in section 1 (b)) at three ticks without "
                    + "waking, and at its defaults (1 s tick, its database session looking at the snapshot every 10 ms, "
                    + "`pgtrickle.await_snapshot_change`), each "
                    + "for %d s after one to settle; at the defaults also two containers on the same database (two engines in this JVM, "
                    + "its CPU theirs together). Ticks counted as the connections the schedulers borrowed from their pools (one per tick; the wake waits on a connection it holds, counted in CPU but not here; no refresh "
                    + "ran). CPU in percent of one CPU: this JVM's (the scheduler is all it runs then), and the schedulers' own database "
                    + "sessions' (the backends their pools opened, from `/proc`).\n\n", IDLE_STREAM_TABLES, IDLE_SECONDS));
            b.append("| stream tables | containers | tick | wake | ticks/s | JVM, % of a CPU | their database sessions, % of a CPU | target (1,000 stream tables: ≤ 2% together) |\n|---|---|---|---|---|---|---|---|\n");
            for (IdleCost cost : idleCosts) {
                double total = cost.jvmCpuPercent() + cost.postgresCpuPercent();
                String target = cost.streamTables() >= 1000 ? (total <= 2 ? "**met**" : "**missed**") + String.format(Locale.ROOT, " (%.1f%%)", total) : "–";
                b.append(String.format(Locale.ROOT, "| %,d | %d | %,d ms | %s | %.0f | %.1f | %.1f | %s |\n", cost.streamTables(),
                        cost.containers(), cost.tickMs(),
                        cost.wakeMs() > 0 ? cost.wakeMs() + " ms" : "off", cost.ticksPerSecond(),
                        cost.jvmCpuPercent(), cost.postgresCpuPercent(), target));
            }
        }
        if (sections.contains(4) && !loadedStaleness.isEmpty()) {
            b.append(String.format(Locale.ROOT, "\nThe same %,d stream tables under writes: %s a second for %d s, each an UPDATE of the row "
                    + "of a random one of their sources (autocommit, one writer), the container's scheduler at its defaults, one and two "
                    + "containers. *Commit to refreshed*: from a write's commit to the end of the refresh that consumed it (a refresh "
                    + "listener, run in the refresh's transaction just before it commits, reads what the stream table holds). Heap: "
                    + "what the JVM holds after a GC with the engines running, over what it held before they started.\n\n",
                    loadedStaleness.get(0).streamTables(), loadRate, loadSeconds));
            b.append("| stream tables | containers | writes | writes/s | commit to refreshed p50 ms | p99 ms | max ms | JVM, % of a CPU "
                    + "| their database sessions, % of a CPU | heap held by the engines, MB |\n|---|---|---|---|---|---|---|---|---|---|\n");
            for (LoadedStaleness l : loadedStaleness) {
                b.append(String.format(Locale.ROOT, "| %,d | %d | %,d | %.0f | %s | %s | %s | %.1f | %.1f | %.1f |\n", l.streamTables(),
                        l.containers(), l.writes(), l.writesPerSecond(), ms(pct(l.latencies(), 50)), ms(pct(l.latencies(), 99)),
                        ms(Collections.max(l.latencies())), l.jvmCpuPercent(), l.postgresCpuPercent(), l.heapMb()));
            }
        }
        if (sections.contains(5)) {
            b.append("\n## 5. The probe and a no-op refresh right after a burst\n\n");
            b.append(burstNote).append(". Autovacuum off on the buffer, so its deleted rows stay until the `VACUUM` between the two "
                    + "columns (as they do while autovacuum is busy elsewhere). Median of 20 calls each, ms, client wall time. "
                    + "Target of a no-op refresh after a burst: at most 2 ms.\n\n");
            b.append("| | buffer full of deleted rows | after VACUUM |\n|---|---|---|\n");
            for (BurstProbe p : burstProbes) {
                b.append(String.format(Locale.ROOT, "| %s | %s | %s |\n", p.what(), ms(p.dirtyMs()), ms(p.vacuumedMs())));
            }
        }
        b.append("\n## Checks\n\n");
        for (String ch : checks) {
            b.append("- ").append(ch).append('\n');
        }
        return b.toString();
    }

    // ---------------------------------------------------------------- helpers

    /** The benchmark's own session, for {@link SqlStatements}. */
    @Override
    public Connection connection() {
        return c;
    }

    private static String intervalName(int interval) {
        return interval > 0 ? "every " + interval + " ms" : "back to back";
    }

    static double median(List<Double> v) {
        return pct(v, 50);
    }

    private static String rate(List<Double> v) {
        return String.format(Locale.ROOT, "%,.0f (%,.0f–%,.0f)", median(v), Collections.min(v), Collections.max(v));
    }
}
