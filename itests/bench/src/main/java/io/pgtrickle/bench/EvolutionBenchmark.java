package io.pgtrickle.bench;

import static io.pgtrickle.bench.BenchOutput.log;
import static io.pgtrickle.bench.BenchOutput.ms;
import static io.pgtrickle.bench.BenchOutput.pct;

import io.pgtrickle.catalog.CatalogMigrator;
import io.pgtrickle.refresh.plan.RefreshPlanner;
import io.pgtrickle.testing.SqlStatements;
import io.pgtrickle.testing.TestDatabase;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The shadow-evolution benchmark (zero-downtime ALTER QUERY, 0.33.0-evolution.sql), on one fresh
 * database, side by side in one run: the shadow evolution ({@code alter_query(..., shadow_build =>
 * true)} driven step by step by a thread that loops {@code evolution_step} as the evolution bundle
 * does) against the plain in-place rebuild ({@code alter_query(name, query)}), on a stream table over
 * 1,000,000 and 10,000,000 source rows, while
 *
 * <ul>
 *   <li>reader threads run indexed point reads on the stream table (the index created by the user),</li>
 *   <li>a writer thread runs single-row INSERT/UPDATE autocommit statements on the source,</li>
 *   <li>a refresher thread does the scheduler's job: plans stream tables without a plan (as the
 *       engine does each tick) and calls {@code refresh_stream_table} every ~200 ms.</li>
 * </ul>
 *
 * <p>Measured: the longest reader and writer stall (max, p99, errors), the build time (alter call →
 * converged vs the plain alter's duration), and, for the shadow build with an unpaced writer,
 * writer throughput and catch-up refreshes with {@code pg_trickle.shadow_refresh_throttle_ms} 0 and
 * 1000. After each alter the stream table's contents are checked against the new query.
 *
 * <p>Run with {@code mvn -B -f itests/bench/pom.xml -Pbench-evolution verify}; the normal build only
 * compiles it. Prints a Markdown report and writes it to {@code bench.report}.
 */
public final class EvolutionBenchmark implements SqlStatements {

    static final String OLD = "SELECT s.id, s.dim_id, s.amount FROM src s";
    /** another result column (a join to a small dimension table): the plain path drops and re-creates the table */
    static final String NEW = "SELECT s.id, s.dim_id, s.amount, d.region FROM src s JOIN dim d ON d.id = s.dim_id";
    /** the same result columns: the plain path rewrites the rows that differ in place */
    static final String SAME = "SELECT s.id, s.dim_id, s.amount FROM src s WHERE s.amount >= 1";

    private final List<Long> sizes;
    private final int reps;
    private final int largeReps;
    private final long largeFrom;
    private final int readers;
    private final int readPaceUs;
    private final int writerRate;
    private final int refreshMs;
    private final int tailMs;
    private final int warmupMs;
    private final boolean sameColumns;
    private final int[] throttles;
    private final double budgetMinutes;
    private final long fullCheckMax;
    private final int convergeBaseS;
    private final int convergePerMillionS;
    private final int throttleConvergeS;
    private final Path report;
    private final String command;

    private TestDatabase.Database db;
    private Connection c;
    private final AtomicLong nextId = new AtomicLong(1_000_000_000_000L);
    private final Map<String, String> settings = new LinkedHashMap<>();
    private String serverDescription;
    private final List<Run> runs = new ArrayList<>();
    private final List<Run> throttleRuns = new ArrayList<>();
    private final List<String> checks = new ArrayList<>();
    private final List<String> notes = new ArrayList<>();
    private final Map<Long, String> loadTimes = new LinkedHashMap<>();
    private long runStart;

    private EvolutionBenchmark() {
        sizes = new ArrayList<>();
        for (String s : System.getProperty("bench.evo.sizes", "1000000,10000000").split(",")) {
            sizes.add(Long.parseLong(s.trim()));
        }
        reps = Integer.getInteger("bench.evo.reps", 2);
        largeReps = Integer.getInteger("bench.evo.large.reps", 1);
        largeFrom = Long.getLong("bench.evo.large.from", 5_000_000L);
        readers = Integer.getInteger("bench.evo.readers", 2);
        readPaceUs = Integer.getInteger("bench.evo.read.pace.us", 2000);
        writerRate = Integer.getInteger("bench.evo.writer.rate", 200);
        refreshMs = Integer.getInteger("bench.evo.refresh.ms", 200);
        tailMs = Integer.getInteger("bench.evo.tail.ms", 1000);
        warmupMs = Integer.getInteger("bench.evo.warmup.ms", 3000);
        sameColumns = Boolean.parseBoolean(System.getProperty("bench.evo.samecols", "true"));
        throttles = Arrays.stream(System.getProperty("bench.evo.throttles", "0,1000").split(","))
                .filter(s -> !s.isBlank()).mapToInt(s -> Integer.parseInt(s.trim())).toArray();
        budgetMinutes = Double.parseDouble(System.getProperty("bench.evo.budget.min", "14"));
        fullCheckMax = Long.getLong("bench.evo.fullcheck.max", 2_000_000L);
        convergeBaseS = Integer.getInteger("bench.evo.converge.base.s", 60);
        convergePerMillionS = Integer.getInteger("bench.evo.converge.per.million.s", 40);
        throttleConvergeS = Integer.getInteger("bench.evo.throttle.converge.s", 45);
        report = Path.of(System.getProperty("bench.report", "docs/benchmarks/evolution.md"));
        command = System.getProperty("bench.command", "mvn -B -f itests/bench/pom.xml -Pbench-evolution verify");
    }

    public static void main(String[] args) throws Exception {
        new EvolutionBenchmark().run();
    }

    private void run() throws Exception {
        runStart = System.nanoTime();
        Instant startedAt = Instant.now().truncatedTo(ChronoUnit.SECONDS);
        log("sizes=%s reps=%d large.reps=%d readers=%d read pace=%d us writer=%d/s refresh every %d ms throttles=%s",
                sizes, reps, largeReps, readers, readPaceUs, writerRate, refreshMs, Arrays.toString(throttles));
        TestDatabase server = TestDatabase.get();
        serverDescription = server.describe();
        db = server.createDatabase("evolution");
        try (Connection connection = db.connect()) {
            c = connection;
            c.setAutoCommit(true);
            new CatalogMigrator().migrate(c);
            for (String s : new String[] {"server_version", "fsync", "synchronous_commit", "shared_buffers", "work_mem",
                    "maintenance_work_mem", "max_wal_size", "autovacuum", "max_parallel_workers_per_gather"}) {
                settings.put(s, string("SHOW " + s));
            }
            exec("SET pg_trickle.shadow_build_enabled = on");
            long firstSizeNanos = 0;
            for (int i = 0; i < sizes.size(); i++) {
                long n = sizes.get(i);
                if (i > 0) {
                    n = fit(n, firstSizeNanos, sizes.get(0));
                    if (n <= 0) {
                        continue;
                    }
                }
                long t = System.nanoTime();
                size(n, i == 0);
                if (i == 0) {
                    firstSizeNanos = System.nanoTime() - t;
                }
            }
        } finally {
            try {
                db.drop();
            } catch (RuntimeException e) {
                log("could not drop %s: %s", db.name(), e.getMessage());
            }
        }
        double minutes = (System.nanoTime() - runStart) / 60e9;
        BenchOutput.publish(report(startedAt, minutes), report, minutes);
    }

    /**
     * The size to run instead of {@code wanted} so that the run stays within the budget: projected
     * linearly in rows from the first size's main comparison (load and runs).
     */
    private long fit(long wanted, long firstNanos, long firstSize) {
        double elapsedMin = (System.nanoTime() - runStart) / 60e9;
        double firstMainMin = firstMainNanos / 60e9;
        double perRowPair = firstMainMin / firstSize / Math.max(1, firstMainRuns); // one plain + one shadow run, per source row
        double loadPerRow = firstLoadNanos / 60e9 / firstSize;
        int r = wanted >= largeFrom ? largeReps : reps;
        long n = wanted;
        while (n >= firstSize * 2) {
            double projected = n * (loadPerRow + perRowPair * r);
            if (elapsedMin + projected <= budgetMinutes) {
                if (n != wanted) {
                    notes.add(String.format(Locale.ROOT, "**%,d rows were not run**: projected linearly from the %,d-row runs "
                            + "(%.2f min per plain+shadow pair, %.2f min load), %,d rows would have needed %.1f min more after "
                            + "%.1f min, beyond the %.0f-min budget; %,d rows were run instead (projected %.1f min).", wanted, firstSize,
                            perRowPair * firstSize, loadPerRow * firstSize, wanted,
                            wanted * (loadPerRow + perRowPair * r), elapsedMin, budgetMinutes, n, projected));
                    log("size %,d does not fit the budget; running %,d", wanted, n);
                }
                return n;
            }
            n = n > 5_000_000L ? 5_000_000L : n / 2;
        }
        notes.add(String.format(Locale.ROOT, "**%,d rows were not run**: no larger size fitted the %.0f-min budget after %.1f min.",
                wanted, budgetMinutes, elapsedMin));
        return -1;
    }

    private long firstMainNanos;
    private long firstLoadNanos;
    private int firstMainRuns;

    // ---------------------------------------------------------------- one size

    private void size(long n, boolean first) throws Exception {
        long t = System.nanoTime();
        load(n);
        long loadNanos = System.nanoTime() - t;
        loadTimes.put(n, String.format(Locale.ROOT, "%.0f s", loadNanos / 1e9));
        log("loaded %,d source rows in %.0f s", n, loadNanos / 1e9);
        int r = n >= largeFrom ? largeReps : reps;
        long m = System.nanoTime();
        for (int rep = 0; rep < r; rep++) {
            // alternate which method goes first
            for (String method : rep % 2 == 0 ? new String[] {"plain", "shadow"} : new String[] {"shadow", "plain"}) {
                runs.add(run(n, method, "columns", NEW, 1000, false, rep + 1));
            }
        }
        if (first) {
            firstMainNanos = System.nanoTime() - m;
            firstLoadNanos = loadNanos;
            firstMainRuns = r;
            if (sameColumns) {
                for (String method : new String[] {"plain", "shadow"}) {
                    runs.add(run(n, method, "same columns", SAME, 1000, false, 1));
                }
            }
            for (int throttle : throttles) {
                throttleRuns.add(run(n, "shadow", "columns", NEW, throttle, true, 1));
            }
        }
        exec("SELECT pgtrickle.drop_stream_table('st')");
        exec("DROP TABLE src, dim");
        exec("CHECKPOINT");
    }

    private void load(long n) throws SQLException {
        exec("SET maintenance_work_mem = '256MB'");
        exec("CREATE TABLE dim (id int PRIMARY KEY, region text NOT NULL)");
        exec("INSERT INTO dim SELECT g, 'region_' || (g % 7) FROM generate_series(1, 1000) g");
        exec("CREATE TABLE src (id bigint NOT NULL, dim_id int NOT NULL, amount numeric(12,2) NOT NULL)");
        exec("INSERT INTO src SELECT g, 1 + (g * 7919) % 1000, round(((g * 104729) % 100000) / 100.0, 2)"
                + " FROM generate_series(1::bigint, " + n + ") g");
        exec("ALTER TABLE src ADD PRIMARY KEY (id)");
        exec("RESET maintenance_work_mem");
        exec("VACUUM ANALYZE src");
        exec("VACUUM ANALYZE dim");
    }

    /** The stream table as before every alter: the old query, DIFFERENTIAL and planned, with the user's index on id. */
    private void reset() throws SQLException {
        if (string("SELECT to_regclass('st')") != null) {
            exec("SELECT pgtrickle.drop_stream_table('st')");
        }
        exec("SELECT pgtrickle.create_stream_table('st', '" + OLD + "', schedule => '1h', refresh_mode => 'DIFFERENTIAL')");
        exec("CREATE INDEX st_id ON st (id)");
        c.setAutoCommit(false);
        RefreshPlanner.planIfNeeded(c, Long.parseLong(string("SELECT (pgtrickle.find_stream_table('st')).pgt_id")));
        c.commit();
        c.setAutoCommit(true);
        String mode = string("SELECT refresh_mode || '/' || (delta_sql IS NOT NULL) FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'st'");
        if (!"DIFFERENTIAL/true".equals(mode)) {
            throw new IllegalStateException("st is not planned DIFFERENTIAL: " + mode);
        }
        exec("VACUUM ANALYZE st");
        exec("ANALYZE src");
        exec("CHECKPOINT");
    }

    // ---------------------------------------------------------------- one alter under load

    record Span(String label, long start, long end) {
    }

    record Step(String phase, String what, long start, long end, Integer waitMs) {
    }

    static final class Run {
        long rows;
        String method;
        String change;
        int throttle;
        boolean unpaced;
        int rep;
        long tStart;     // alter call start
        long tAlterEnd;  // alter call returned
        long tDone;      // plain: committed; shadow: converged
        long tSteady;    // the live table planned again and refreshed after that
        long tEnd;       // window end (steady + tail)
        long tBase;      // baseline window start
        double indexMs = Double.NaN;
        List<Double> readBase;
        List<Double> readDuring;
        List<Double> writeBase;
        List<Double> writeDuring;
        long readErrors;
        long writeErrors;
        List<String> errorSamples = new ArrayList<>();
        long[] worstRead; // {start, latency}
        long[] worstWrite;
        String worstReadDuring;
        String worstWriteDuring;
        double writesPerSecBase;
        double writesPerSecDuring;
        List<Step> steps = new ArrayList<>();
        List<Span> spans = new ArrayList<>();
        String evolution; // status line from pgt_evolutions
        String failure;
        int convergeTimeoutS;
        List<Double> readEvolving;
        List<Double> readAfter;
        String shadowActions;
        String worstEvolvingDuring;
        List<Samples> readSamples;
        int catchUps;
        int swapAttempts;
        long maxBufferBytes;
        long baseBufferBytes;
        int refreshes;
        int refreshErrors;
        int refreshSkipped;
        String check;
        boolean checkOk;
        String indexesAfter;
    }

    private Run run(long n, String method, String change, String query, int throttle, boolean unpaced, int rep) throws Exception {
        reset();
        Run r = new Run();
        r.rows = n;
        r.method = method;
        r.change = change;
        r.throttle = throttle;
        r.unpaced = unpaced;
        r.rep = rep;
        AtomicBoolean running = new AtomicBoolean(true);
        List<Span> spans = new CopyOnWriteArrayList<>();
        List<String> errors = new CopyOnWriteArrayList<>();
        AtomicLong readErrors = new AtomicLong();
        AtomicLong writeErrors = new AtomicLong();
        AtomicLong lastRefreshStart = new AtomicLong();
        AtomicLong lastRefreshEnd = new AtomicLong();
        AtomicLong refreshCount = new AtomicLong();
        AtomicLong refreshErrors = new AtomicLong();
        AtomicLong skipped = new AtomicLong();
        AtomicLong maxBuffer = new AtomicLong();
        List<Samples> readSamples = new ArrayList<>();
        Samples writeSamples = new Samples();
        List<Thread> threads = new ArrayList<>();
        String buffer = string("SELECT pgtrickle.change_buffer('src'::regclass)::text");

        // the scheduler: plan what has no plan (each in its own transaction, as RefreshEngine.planNew), refresh st
        threads.add(new Thread(() -> {
            try (Connection rc = db.connect(); PreparedStatement refresh = rc.prepareStatement(
                    "SELECT pgtrickle.run_refresh((pgtrickle.find_stream_table('st')).pgt_id, 'SCHEDULER', false)");
                 PreparedStatement name = rc.prepareStatement("SELECT pgt_name FROM pgtrickle.pgt_stream_tables WHERE pgt_id = ?")) {
                rc.setAutoCommit(true);
                long next = System.nanoTime();
                while (running.get()) {
                    for (long id : RefreshPlanner.unplanned(rc)) {
                        String label;
                        name.setLong(1, id);
                        try (ResultSet rs = name.executeQuery()) {
                            label = rs.next() ? rs.getString(1) : "#" + id;
                        }
                        long s = System.nanoTime();
                        rc.setAutoCommit(false);
                        try {
                            boolean planned = RefreshPlanner.planIfNeeded(rc, id);
                            rc.commit();
                            if (planned) {
                                spans.add(new Span("the scheduler planning " + label, s, System.nanoTime()));
                            }
                        } catch (SQLException e) {
                            rc.rollback();
                            errors.add("planning " + label + ": " + e.getMessage());
                        } finally {
                            rc.setAutoCommit(true);
                        }
                    }
                    long s = System.nanoTime();
                    try {
                        boolean ran;
                        try (ResultSet rs = refresh.executeQuery()) {
                            rs.next();
                            rs.getLong(1);
                            ran = !rs.wasNull();
                        }
                        long e = System.nanoTime();
                        if (!ran) {
                            skipped.incrementAndGet(); // another session holds st's catalog row (an alter, a swap)
                            next = Pacing.nextBeat(next, refreshMs * 1_000_000L);
                            continue;
                        }
                        lastRefreshStart.set(s);
                        lastRefreshEnd.set(e);
                        refreshCount.incrementAndGet();
                        if (e - s > 50_000_000L) {
                            spans.add(new Span("a refresh of st", s, e));
                        }
                    } catch (SQLException e) {
                        refreshErrors.incrementAndGet();
                        errors.add("refresh: " + e.getMessage());
                    }
                    next = Pacing.nextBeat(next, refreshMs * 1_000_000L);
                }
            } catch (SQLException | InterruptedException e) {
                errors.add("refresher: " + e);
            }
        }, "refresher"));

        for (int i = 0; i < readers; i++) {
            Samples samples = new Samples();
            readSamples.add(samples);
            threads.add(new Thread(() -> {
                try (Connection rc = db.connect(); PreparedStatement ps = rc.prepareStatement("SELECT id, amount FROM st WHERE id = ?")) {
                    rc.setAutoCommit(true);
                    long pace = readPaceUs * 1000L;
                    long next = System.nanoTime();
                    while (running.get()) {
                        ps.setLong(1, 1 + ThreadLocalRandom.current().nextLong(n));
                        long s = System.nanoTime();
                        try (ResultSet rs = ps.executeQuery()) {
                            while (rs.next()) {
                                rs.getLong(1);
                            }
                        } catch (SQLException e) {
                            readErrors.incrementAndGet();
                            if (errors.size() < 50) {
                                errors.add("reader: " + e.getMessage());
                            }
                        }
                        samples.add(s, System.nanoTime() - s);
                        next = Pacing.nextBeat(next, pace);
                    }
                } catch (SQLException | InterruptedException e) {
                    errors.add("reader: " + e);
                }
            }, "reader-" + i));
        }

        threads.add(new Thread(() -> {
            try (Connection wc = db.connect();
                 PreparedStatement ins = wc.prepareStatement("INSERT INTO src (id, dim_id, amount) VALUES (?, ?, ?)");
                 PreparedStatement upd = wc.prepareStatement("UPDATE src SET amount = ? WHERE id = ?")) {
                wc.setAutoCommit(true);
                long pace = unpaced ? 0 : 1_000_000_000L / writerRate;
                long next = System.nanoTime();
                ThreadLocalRandom rnd = ThreadLocalRandom.current();
                for (long i = 0; running.get(); i++) {
                    long s = System.nanoTime();
                    try {
                        if (i % 2 == 0) {
                            ins.setLong(1, nextId.incrementAndGet());
                            ins.setInt(2, 1 + rnd.nextInt(1000));
                            ins.setBigDecimal(3, java.math.BigDecimal.valueOf(rnd.nextInt(100_000), 2));
                            ins.executeUpdate();
                        } else {
                            upd.setBigDecimal(1, java.math.BigDecimal.valueOf(rnd.nextInt(100_000), 2));
                            upd.setLong(2, 1 + rnd.nextLong(n));
                            upd.executeUpdate();
                        }
                    } catch (SQLException e) {
                        writeErrors.incrementAndGet();
                        if (errors.size() < 50) {
                            errors.add("writer: " + e.getMessage());
                        }
                    }
                    writeSamples.add(s, System.nanoTime() - s);
                    if (pace > 0) {
                        next = Pacing.nextBeat(next, pace);
                    }
                }
            } catch (SQLException | InterruptedException e) {
                errors.add("writer: " + e);
            }
        }, "writer"));

        // the change buffer of src: its size on disk, every 500 ms
        threads.add(new Thread(() -> {
            try (Connection mc = db.connect(); PreparedStatement ps = mc.prepareStatement("SELECT pg_total_relation_size(?::regclass)")) {
                ps.setString(1, buffer);
                while (running.get()) {
                    try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        long v = rs.getLong(1);
                        maxBuffer.accumulateAndGet(v, Math::max);
                    }
                    Thread.sleep(500);
                }
            } catch (SQLException | InterruptedException e) {
                errors.add("monitor: " + e);
            }
        }, "monitor"));

        for (Thread t : threads) {
            t.start();
        }
        Thread.sleep(1000);
        r.tBase = System.nanoTime();
        Thread.sleep(warmupMs);
        r.baseBufferBytes = maxBuffer.get();
        maxBuffer.set(0);

        log("%,d rows, %s, %s, throttle %d%s, rep %d: altering", n, method, change, throttle, unpaced ? ", unpaced writer" : "", rep);
        r.tStart = System.nanoTime();
        if (method.equals("plain")) {
            c.setAutoCommit(false);
            try {
                exec("SELECT pgtrickle.alter_query('st', '" + query + "')");
                r.tAlterEnd = System.nanoTime();
                // the re-created table has lost the user's index (the NOTICE says so): re-created in the same transaction
                if (string("SELECT to_regclass('st_id')") == null) {
                    exec("CREATE INDEX st_id ON st (id)");
                    r.indexMs = (System.nanoTime() - r.tAlterEnd) / 1e6;
                }
                c.commit();
            } catch (SQLException e) {
                c.rollback();
                throw e;
            } finally {
                c.setAutoCommit(true);
            }
            r.tDone = System.nanoTime();
            spans.add(new Span("the plain alter transaction", r.tStart, r.tDone));
        } else {
            exec("SELECT pgtrickle.alter_query('st', '" + query + "', shadow_build => true)");
            r.tAlterEnd = System.nanoTime();
            spans.add(new Span("the alter_query(shadow_build) call", r.tStart, r.tAlterEnd));
            long ev = Long.parseLong(string("SELECT evolution_id FROM pgtrickle.pgt_evolutions WHERE status = 'in_progress'"));
            r.convergeTimeoutS = unpaced ? throttleConvergeS : (int) (convergeBaseS + convergePerMillionS * n / 1_000_000L);
            drive(ev, throttle, r.convergeTimeoutS, r, spans);
            r.tDone = System.nanoTime();
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT status, phase, build_rows, catch_up_refreshes,"
                    + " swap_attempts, inserted_count, deleted_count, skipped_indexes, error, round(extract(epoch FROM built_at - started_at)"
                    + " * 1000), round(extract(epoch FROM converged_at - started_at) * 1000) FROM pgtrickle.pgt_evolutions WHERE evolution_id = " + ev)) {
                rs.next();
                r.catchUps = rs.getInt(4);
                r.swapAttempts = rs.getInt(5);
                r.evolution = String.format(Locale.ROOT, "evolution %d: %s/%s, build_rows %s, catch_up_refreshes %d, swap_attempts %d, "
                        + "+%s -%s at the swap, skipped indexes %s, built after %s ms, converged after %s ms (server clock)%s", ev,
                        rs.getString(1), rs.getString(2), rs.getString(3), rs.getInt(4), rs.getInt(5), rs.getString(6), rs.getString(7),
                        rs.getString(8), rs.getString(10), rs.getString(11), rs.getString(9) == null ? "" : ", error: " + rs.getString(9));
                if (!"converged".equals(rs.getString(1))) {
                    r.failure = r.evolution;
                }
            }
        }
        // steady again: the live table has a plan (the engine plans a new query on its next tick) and a refresh ran after that
        long plannedAt = 0;
        long deadline = System.nanoTime() + 600_000_000_000L;
        while (System.nanoTime() < deadline) {
            if (plannedAt == 0 && "t".equals(string("SELECT NOT (refresh_mode = 'DIFFERENTIAL' AND delta_sql IS NULL)"
                    + " FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'st'"))) {
                plannedAt = System.nanoTime();
            }
            if (plannedAt != 0 && lastRefreshStart.get() > plannedAt && lastRefreshEnd.get() > lastRefreshStart.get()) {
                break;
            }
            Thread.sleep(20);
        }
        r.tSteady = System.nanoTime();
        Thread.sleep(tailMs);
        r.tEnd = System.nanoTime();
        running.set(false);
        for (Thread t : threads) {
            t.join();
        }
        r.maxBufferBytes = maxBuffer.get();
        r.refreshes = (int) refreshCount.get();
        r.refreshErrors = (int) refreshErrors.get();
        r.refreshSkipped = (int) skipped.get();
        r.readErrors = readErrors.get();
        r.writeErrors = writeErrors.get();
        r.errorSamples.addAll(errors);
        r.spans.addAll(spans);
        r.spans.sort((a, b) -> Long.compare(a.start, b.start));

        List<Double> rb = new ArrayList<>();
        List<Double> rd = new ArrayList<>();
        long[] worst = null;
        for (Samples s : readSamples) {
            rb.addAll(s.latenciesMs(r.tBase, r.tStart));
            rd.addAll(s.latenciesMs(r.tStart, r.tEnd));
            long[] w = s.worst(r.tStart, r.tEnd);
            if (w != null && (worst == null || w[1] > worst[1])) {
                worst = w;
            }
        }
        List<Double> re = new ArrayList<>();
        List<Double> ra = new ArrayList<>();
        for (Samples s : readSamples) {
            re.addAll(s.latenciesMs(r.tStart, r.tDone));
            ra.addAll(s.latenciesMs(r.tDone, r.tEnd));
        }
        r.readEvolving = re;
        r.readSamples = readSamples;
        long[] worstEvolving = null;
        for (Samples s : readSamples) {
            long[] w = s.worst(r.tStart, r.tDone);
            if (w != null && (worstEvolving == null || w[1] > worstEvolving[1])) {
                worstEvolving = w;
            }
        }
        r.readAfter = ra;
        r.readBase = rb;
        r.readDuring = rd;
        r.worstRead = worst;
        r.worstReadDuring = overlapping(r, worst);
        r.worstEvolvingDuring = overlapping(r, worstEvolving);
        r.writeBase = writeSamples.latenciesMs(r.tBase, r.tStart);
        r.writeDuring = writeSamples.latenciesMs(r.tStart, r.tEnd);
        r.worstWrite = writeSamples.worst(r.tStart, r.tEnd);
        r.worstWriteDuring = overlapping(r, r.worstWrite);
        r.writesPerSecBase = r.writeBase.size() / ((r.tStart - r.tBase) / 1e9);
        r.writesPerSecDuring = writeSamples.latenciesMs(r.tStart, r.tDone).size() / ((r.tDone - r.tStart) / 1e9);

        r.indexesAfter = String.join(", ", strings("SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'st' ORDER BY 1"));
        verify(r, r.failure == null ? query : OLD);
        log("%,d rows, %s, %s: done in %.1f s (steady after %.1f s); reads max %s p99 %s ms (%d errors); writes max %s p99 %s ms "
                + "(%d errors); %s; worst read during: %s", n, method, change, (r.tDone - r.tStart) / 1e9, (r.tSteady - r.tStart) / 1e9,
                ms(max(r.readDuring)), ms(pct(r.readDuring, 99)), r.readErrors, ms(max(r.writeDuring)), ms(pct(r.writeDuring, 99)),
                r.writeErrors, r.check, r.worstReadDuring);
        if (!errors.isEmpty()) {
            log("errors: %s", errors.subList(0, Math.min(5, errors.size())));
        }
        if (r.failure != null) {
            log("EVOLUTION DID NOT CONVERGE: %s", r.failure);
        }
        return r;
    }

    /** The evolution bundle's loop: each step one transaction; sleep the returned ms; on an error roll back and fail it. */
    private void drive(long ev, int throttle, int timeoutS, Run r, List<Span> spans) throws Exception {
        try (Connection dc = db.connect();
             PreparedStatement step = dc.prepareStatement("SELECT pgtrickle.evolution_step(?)");
             PreparedStatement info = dc.prepareStatement("SELECT e.phase, e.catch_up_refreshes, e.swap_attempts,"
                     + " (SELECT h.action FROM pgtrickle.pgt_refresh_history h WHERE h.pgt_id = e.shadow_pgt_id ORDER BY h.refresh_id DESC LIMIT 1)"
                     + " FROM pgtrickle.pgt_evolutions e WHERE e.evolution_id = ?")) {
            try (Statement s = dc.createStatement()) {
                s.execute("SET pg_trickle.shadow_refresh_throttle_ms = " + throttle);
                // the benchmark's bound on an evolution: past it, evolution_step itself fails it and rolls it back
                s.execute("SET pg_trickle.shadow_convergence_timeout = '" + timeoutS + "s'");
            }
            step.setLong(1, ev);
            info.setLong(1, ev);
            String[] before = info(info);
            dc.setAutoCommit(false);
            while (true) {
                long s = System.nanoTime();
                Integer wait;
                try {
                    try (ResultSet rs = step.executeQuery()) {
                        rs.next();
                        int v = rs.getInt(1);
                        wait = rs.wasNull() ? null : v;
                    }
                    dc.commit();
                } catch (SQLException e) {
                    dc.rollback();
                    r.failure = "evolution_step failed in phase " + before[0] + ": " + e.getSQLState() + " " + e.getMessage();
                    log("%s", r.failure);
                    try (PreparedStatement fail = dc.prepareStatement("SELECT pgtrickle.fail_evolution(?, ?)")) {
                        fail.setLong(1, ev);
                        fail.setString(2, e.getMessage());
                        fail.execute();
                    }
                    dc.commit();
                    return;
                }
                long e = System.nanoTime();
                String[] after = info(info);
                dc.commit();
                String what;
                switch (before[0]) {
                    case "BUILDING" -> what = "build (fill + indexes)";
                    case "CATCHING_UP" -> what = after[1].equals(before[1]) ? "throttled (no refresh)" : "catch-up refresh " + after[3];
                    case "SWAPPING" -> what = "SWAPPED".equals(after[0]) ? "swap" : !after[2].equals(before[2]) ? "swap lock timeout" : "backoff";
                    default -> what = "?";
                }
                r.steps.add(new Step(before[0], what, s, e, wait));
                if (!what.equals("throttled (no refresh)") && !what.equals("backoff")) {
                    spans.add(new Span("the evolution step: " + what, s, e));
                }
                if (wait == null) {
                    return;
                }
                before = after;
                if (wait > 0) {
                    Thread.sleep(wait);
                }
            }
        }
    }

    private static String[] info(PreparedStatement info) throws SQLException {
        try (ResultSet rs = info.executeQuery()) {
            rs.next();
            return new String[] {rs.getString(1), rs.getString(2), rs.getString(3), rs.getString(4)};
        }
    }

    /** What was going on while the given sample ({start, latency}) waited. */
    private static String overlapping(Run r, long[] sample) {
        if (sample == null) {
            return "–";
        }
        long s = sample[0];
        long e = sample[0] + sample[1];
        List<String> labels = new ArrayList<>();
        for (Span span : r.spans) {
            if (span.start < e && span.end > s && !labels.contains(span.label)) {
                labels.add(String.format(Locale.ROOT, "%s (%s ms)", span.label, ms((span.end - span.start) / 1e6)));
            }
        }
        String at = String.format(Locale.ROOT, "at +%.1f s", (s - r.tStart) / 1e9);
        return labels.isEmpty() ? at + ", nothing recorded" : at + ", " + String.join("; ", labels);
    }

    /** The stream table after one more refresh (the writer has stopped) against the new query. */
    private void verify(Run r, String query) throws SQLException {
        exec("SELECT pgtrickle.refresh_stream_table('st')");
        long t = System.nanoTime();
        String st = string("SELECT count(*) || ' ' || coalesce(sum(hashtext(t::text)::bigint), 0) FROM st t");
        String q = string("SELECT count(*) || ' ' || coalesce(sum(hashtext(q::text)::bigint), 0) FROM (" + query + ") q");
        boolean full = r.rows <= fullCheckMax;
        String sample = full ? "" : " WHERE id % 100 = 0";
        long onlySt = Long.parseLong(string("SELECT count(*) FROM (SELECT * FROM st" + sample + " EXCEPT ALL SELECT * FROM (" + query
                + ") q" + sample + ") x"));
        long onlyQ = Long.parseLong(string("SELECT count(*) FROM (SELECT * FROM (" + query + ") q" + sample + " EXCEPT ALL SELECT * FROM st"
                + sample + ") x"));
        String cols = String.join(",", strings("SELECT attname FROM pg_attribute WHERE attrelid = 'st'::regclass AND attnum > 0"
                + " AND NOT attisdropped ORDER BY attnum"));
        r.checkOk = st.equals(q) && onlySt == 0 && onlyQ == 0;
        r.check = String.format(Locale.ROOT, "%s %s: count %s rows, row-hash sum %s; EXCEPT ALL (%s) both ways %d/%d; columns (%s) [%.0f s]",
                query.equals(OLD) ? "(evolution failed: against the OLD query, the live table must be untouched)" : "against the new query",
                r.checkOk ? "equal" : "**DIFFERENT**", st.split(" ")[0], st.equals(q) ? "equal" : "**different** (" + st + " vs " + q + ")",
                full ? "all rows" : "1% sample, id % 100 = 0", onlySt, onlyQ, cols, (System.nanoTime() - t) / 1e9);
        checks.add(String.format(Locale.ROOT, "%,d rows, %s, %s%s, rep %d: %s; indexes on st afterwards: %s", r.rows, r.method, r.change,
                r.unpaced ? ", throttle " + r.throttle + " (unpaced writer)" : "", r.rep, r.check, r.indexesAfter));
    }

    // ---------------------------------------------------------------- samples

    /** (start, latency) pairs in nanoseconds, appended by one thread, read after it stopped. */
    static final class Samples {
        private long[] start = new long[1 << 14];
        private long[] lat = new long[1 << 14];
        private int n;

        synchronized void add(long s, long l) {
            if (n == start.length) {
                start = Arrays.copyOf(start, n * 2);
                lat = Arrays.copyOf(lat, n * 2);
            }
            start[n] = s;
            lat[n] = l;
            n++;
        }

        synchronized List<Double> latenciesMs(long from, long to) {
            List<Double> out = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                if (start[i] >= from && start[i] < to) {
                    out.add(lat[i] / 1e6);
                }
            }
            return out;
        }

        synchronized long longestOverlapping(long from, long to) {
            long m = 0;
            for (int i = 0; i < n; i++) {
                if (start[i] < to && start[i] + lat[i] > from) {
                    m = Math.max(m, lat[i]);
                }
            }
            return m;
        }

        synchronized long[] worst(long from, long to) {
            long[] w = null;
            for (int i = 0; i < n; i++) {
                if (start[i] >= from && start[i] < to && (w == null || lat[i] > w[1])) {
                    w = new long[] {start[i], lat[i]};
                }
            }
            return w;
        }
    }

    // ---------------------------------------------------------------- report

    private String report(Instant startedAt, double minutes) {
        StringBuilder b = new StringBuilder();
        BenchOutput.title(b, "Shadow evolution benchmark: zero-downtime ALTER QUERY vs the plain rebuild", EvolutionBenchmark.class, startedAt);
        b.append("## Reproduce\n\nFrom the repository root, after `mvn -B install -DskipTests`:\n\n```\n").append(command).append("\n```\n\n");
        b.append(String.format(Locale.ROOT, "Knobs (`-D...`): `bench.evo.sizes` (source rows, default 1000000,10000000; this run %s), "
                + "`bench.evo.reps` (plain+shadow pairs per size, 2; %d), `bench.evo.large.reps` (pairs from `bench.evo.large.from` = "
                + "5,000,000 rows, 1; %d), `bench.evo.readers` (2; %d), `bench.evo.read.pace.us` (per reader, 2000; %d), "
                + "`bench.evo.writer.rate` (statements/s, 200; %d), `bench.evo.refresh.ms` (200; %d), `bench.evo.throttles` "
                + "(0,1000; %s), `bench.evo.samecols` (true; %s), `bench.evo.budget.min` (14; %.0f: a larger size that would not fit, "
                + "projected from the first, is replaced by a smaller one). Only `-Pbench-evolution` runs it (the normal build only "
                + "compiles). It starts its own database through `TestDatabase`, installs the catalog with `CatalogMigrator`, and "
                + "drops the database at the end.\n\n", sizes, reps, largeReps, readers, readPaceUs, writerRate, refreshMs,
                Arrays.toString(throttles), sameColumns, budgetMinutes));
        b.append("## Machine and server\n\n");
        b.append(String.format(Locale.ROOT, "- %d cores as seen by the JVM: a shared, **noisy** 2-vCPU VM (other builds may run at "
                + "the same time); readers, writer, refresher, evolution driver and PostgreSQL all share them. Compare within the "
                + "run. Java %s.\n", Runtime.getRuntime().availableProcessors(), System.getProperty("java.version")));
        b.append("- Database: ").append(serverDescription).append(".\n- Settings: ");
        List<String> kv = new ArrayList<>();
        settings.forEach((k, v) -> kv.add("`" + k + "` " + v));
        b.append(String.join(", ", kv)).append(" (server defaults of the embedded PostgreSQL; nothing tuned).\n");
        List<String> lt = new ArrayList<>();
        loadTimes.forEach((k, v) -> lt.add(String.format(Locale.ROOT, "%,d rows %s", k, v)));
        b.append(String.format(Locale.ROOT, "- Source load (untimed for the results): %s. Whole run %.1f min.\n\n", String.join(", ", lt), minutes));

        b.append("## What is measured, and how\n\n");
        b.append("Source `src(id bigint PK, dim_id int, amount numeric(12,2))` with N rows and `dim(id int PK, region text)` with "
                + "1,000 rows. Before every alter the stream table is created afresh: `st` = `" + OLD + "`, DIFFERENTIAL, planned, "
                + "with an index the user created, `CREATE INDEX st_id ON st (id)`. The alter changes the result columns "
                + "(the main comparison):\n\n```\n" + NEW + "\n```\n\n");
        b.append("- **plain**: `BEGIN; SELECT pgtrickle.alter_query('st', <new>); CREATE INDEX st_id ON st (id); COMMIT;` on one "
                + "connection. The plain path drops and re-creates the table (the result columns change), fills it and holds ACCESS "
                + "EXCLUSIVE until the commit; the re-created table has lost the user's index, so the operator's re-creation is part "
                + "of the same transaction (otherwise readers would scan N rows per point read afterwards). *alter call* and "
                + "*index* are reported apart.\n");
        b.append("- **shadow**: `SELECT pgtrickle.alter_query('st', <new>, shadow_build => true)` (autocommit, "
                + "`pg_trickle.shadow_build_enabled = on`), then a dedicated driver thread loops `SELECT pgtrickle.evolution_step(id)` "
                + "exactly as the evolution bundle does: each step its own transaction, commit, sleep the returned ms, stop on NULL; "
                + "on an exception roll back and call `pgtrickle.fail_evolution(id, message)`. `pg_trickle.shadow_refresh_throttle_ms` "
                + "is set on the driver's session (1000, the default, unless stated); `shadow_swap_lock_timeout_ms` is the default 50. "
                + "The shadow carries `st_id` over.\n");
        b.append(String.format(Locale.ROOT, "- Meanwhile, on their own connections: **%d reader threads**, each a point read "
                + "`SELECT id, amount FROM st WHERE id = ?` (random existing id; server-side prepared after 5 uses) every %d µs "
                + "(paced, not back to back, so that the readers do not starve two cores); **one writer thread** on the source, "
                + "alternating single-row autocommit `INSERT INTO src` (new id) and `UPDATE src SET amount = ? WHERE id = ?` "
                + "(random existing id), paced at %d statements/s; **the scheduler's job** in a refresher thread: every %d ms, plan "
                + "the stream tables that have no differential plan yet (as the engine's `RefreshEngine` does each tick: "
                + "`RefreshPlanner.unplanned` + `planIfNeeded`, each in its own transaction; this includes the shadow, which is a "
                + "catalog row of its own, and the live table after either kind of alter, whose plan both paths reset), then "
                + "`SELECT pgtrickle.run_refresh(<st's pgt_id>, 'SCHEDULER', wait => false)` (the engine's call: it returns at "
                + "once when another session holds the stream table's catalog row, as the plain alter and the swap do; "
                + "`refresh_stream_table` would wait for that lock and then, the plan being reset, recompute in FULL, which the "
                + "scheduler does not do); and a monitor sampling the size of `src`'s change buffer every "
                + "500 ms.\n", readers, readPaceUs, writerRate, refreshMs));
        b.append(String.format(Locale.ROOT, "- Windows: **baseline** = %d ms before the alter (all threads already running); "
                + "**during** = from the alter call until the stream table is steady again (the scheduler has planned the new "
                + "query and completed a refresh after that) plus %d ms. Latency = client wall time of one statement (JDBC, "
                + "localhost), System.nanoTime. A stall shows as one long statement; *max* is the longest reader (or writer) "
                + "stall, *p99* over all statements of the window. *Worst read during* names what overlapped the slowest read "
                + "(alter transaction, evolution steps, the scheduler's planning and refreshes over 50 ms).\n", warmupMs, tailMs));
        b.append("- **Build time**: plain = the alter transaction (alter call + index + commit); shadow = alter call until "
                + "`evolution_step` returned NULL (converged, swapped). *Steady* = until the scheduler has re-planned the new query "
                + "and refreshed once (both paths reset the differential plan).\n");
        b.append("- **Check**: after each alter the writer stops, `st` is refreshed once more and compared with the new query: "
                + "count and sum of `hashtext(row::text)` over all rows, and `EXCEPT ALL` both ways (all rows up to "
                + String.format(Locale.ROOT, "%,d", fullCheckMax) + " rows, else the 1% sample `id % 100 = 0`).\n\n");

        b.append("## Results: result columns change (plain = DROP/re-create)\n\n");
        resultTable(b, "columns");
        if (sameColumns) {
            b.append("\n## Results: same result columns (`" + SAME + "`; plain = rows rewritten in place)\n\n");
            b.append("The plain path keeps the table and its index here (a multiset difference applied with DELETE/INSERT, no "
                    + "exclusive lock on `st`), so it is the baseline a same-columns shadow evolution has to be compared with.\n\n");
            resultTable(b, "same columns");
        }

        b.append("\n## Targets\n\n");
        for (Run r : runs) {
            if (r.method.equals("shadow")) {
                double mx = max(r.readDuring);
                double me = max(r.readEvolving);
                b.append(String.format(Locale.ROOT, "- %,d rows, %s, rep %d: shadow evolution longest reader stall, target < 100 ms: "
                        + "alter call → converged %s ms: **%s**; whole window until the stream table is steady again %s ms: **%s**; "
                        + "reader errors %d (target 0: **%s**)%s. Slowest read before converged: %s.\n", r.rows, r.change, r.rep, ms(me),
                        me < 100 ? "met" : "missed", ms(mx), mx < 100 ? "met" : "missed", r.readErrors, r.readErrors == 0 ? "met" : "missed",
                        r.failure == null ? "" : "; **the evolution did not converge**", r.worstEvolvingDuring));
            }
        }
        for (Run r : throttleRuns) {
            double mx = max(r.readDuring);
            double me = max(r.readEvolving);
            b.append(String.format(Locale.ROOT, "- %,d rows, throttle %d ms, unpaced writer: longest reader stall alter → done %s ms: "
                    + "**%s**; whole window %s ms: **%s**; reader errors %d%s. Slowest read before converged: %s.\n", r.rows, r.throttle,
                    ms(me), me < 100 ? "met" : "missed", ms(mx), mx < 100 ? "met" : "missed", r.readErrors,
                    r.failure == null ? "" : "; **the evolution did not converge**", r.worstEvolvingDuring));
        }

        if (!throttleRuns.isEmpty()) {
            b.append("\n## Capture and refresh load during the build, with and without throttling\n\n");
            b.append(String.format(Locale.ROOT, "Shadow evolution of the same column-changing query on %,d rows, as above but with the "
                    + "writer **unpaced** (back-to-back single-row autocommit statements, one thread), once per "
                    + "`pg_trickle.shadow_refresh_throttle_ms`. Writer throughput before the alter (baseline, same run) and from the "
                    + "alter call to converged; catch-up refreshes are the CATCHING_UP steps that ran a refresh (a step before the "
                    + "throttle is due returns at once). The change buffer of `src` is shared by the live table and the shadow "
                    + "(no extra capture trigger: the new query's extra source `dim` gets one, but nothing writes it); it cannot "
                    + "be pruned past the shadow's frontier, so it grows during the build.\n\n", throttleRuns.get(0).rows));
            b.append("| throttle ms | writer stmts/s baseline | during evolution | ratio | writer p99 / max ms during | build step s "
                    + "| catch-up refreshes (ms each) | swap step ms (lock timeouts) | alter → converged s | change buffer max MB "
                    + "(baseline) | reads max ms | outcome |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
            for (Run r : throttleRuns) {
                b.append(String.format(Locale.ROOT, "| %d | %,.0f | %,.0f | %.2f | %s / %s | %.1f | %d (%s) | %s (%d) | %.1f | %.1f (%.1f) | %s | %s |\n",
                        r.throttle, r.writesPerSecBase, r.writesPerSecDuring, r.writesPerSecDuring / r.writesPerSecBase,
                        ms(pct(r.writeDuring, 99)), ms(max(r.writeDuring)), stepMs(r, "build (fill + indexes)") / 1000,
                        r.catchUps, catchUpList(r), ms(stepMs(r, "swap")), r.swapAttempts, (r.tDone - r.tStart) / 1e9,
                        r.maxBufferBytes / 1048576.0, r.baseBufferBytes / 1048576.0, ms(max(r.readDuring)),
                        r.failure == null ? "converged" : "**not converged within " + r.convergeTimeoutS + " s**: failed and rolled back by "
                                + "`evolution_step` (`shadow_convergence_timeout`)"));
            }
        }

        b.append("\n## Timelines\n\n");
        b.append("Per run: what the driver's steps did (phase → outcome, ms) and the scheduler's planning, offsets from the alter call.\n\n");
        List<Run> all = new ArrayList<>(runs);
        all.addAll(throttleRuns);
        for (Run r : all) {
            b.append(String.format(Locale.ROOT, "- %,d rows, %s, %s%s, rep %d: ", r.rows, r.method, r.change,
                    r.unpaced ? ", throttle " + r.throttle + ", unpaced writer" : "", r.rep));
            List<String> parts = new ArrayList<>();
            for (Span s : r.spans) {
                if (!s.label.startsWith("a refresh")) {
                    parts.add(String.format(Locale.ROOT, "+%.1f s %s %s ms", (s.start - r.tStart) / 1e9, s.label,
                            ms((s.end - s.start) / 1e6)));
                }
            }
            long slowRefreshes = r.spans.stream().filter(s -> s.label.startsWith("a refresh")).count();
            parts.add(String.format(Locale.ROOT, "%d refreshes of st in the run (%d over 50 ms, %d failed, %d skipped: row locked)",
                    r.refreshes, slowRefreshes, r.refreshErrors, r.refreshSkipped));
            if (r.evolution != null) {
                parts.add(r.evolution);
            }
            b.append(String.join("; ", parts)).append(".\n");
        }

        b.append("\n## Checks\n\n");
        for (String ch : checks) {
            b.append("- ").append(ch).append('\n');
        }
        for (Run r : all) {
            if (r.failure != null) {
                b.append("- **FAILED**: ").append(r.failure).append('\n');
            }
            if (!r.errorSamples.isEmpty()) {
                b.append(String.format(Locale.ROOT, "- errors in %,d rows %s %s rep %d: %s\n", r.rows, r.method, r.change, r.rep,
                        r.errorSamples.subList(0, Math.min(5, r.errorSamples.size()))));
            }
        }
        b.append("\n## Notes\n\n");
        findings(all);
        for (String note : notes) {
            b.append("- ").append(note).append('\n');
        }
        return b.toString();
    }

    /** Notes derived from what the runs saw. */
    private void findings(List<Run> all) {
        List<String> replan = new ArrayList<>();
        List<String> orphans = new ArrayList<>();
        for (Run r : all) {
            for (Span s : r.spans) {
                if (s.label.equals("the scheduler planning st")) {
                    // the longest read that overlapped this planning transaction (st is planned before the alter: this one is after it)
                    double mx = 0;
                    for (Samples rs : r.readSamples) {
                        mx = Math.max(mx, rs.longestOverlapping(s.start, s.end) / 1e6);
                    }
                    replan.add(String.format(Locale.ROOT, "%,d rows %s %s%s rep %d: planning %s ms, longest read overlapping it %s ms",
                            r.rows, r.method, r.change, r.unpaced ? " throttle " + r.throttle : "", r.rep, ms((s.end - s.start) / 1e6),
                            ms(mx)));
                }
            }
            if (r.indexesAfter != null && r.indexesAfter.split("_row_hash", -1).length > 2) {
                orphans.add(String.format(Locale.ROOT, "%,d rows %s %s%s rep %d: %s", r.rows, r.method, r.change,
                        r.unpaced ? " throttle " + r.throttle : "", r.rep, r.indexesAfter));
            }
        }
        if (!replan.isEmpty()) {
            notes.add("**The re-plan after the alter.** Both paths reset the differential plan (`delta_sql = NULL`), and the "
                    + "scheduler plans the new query at its next tick. The planner's row index `pgt_<pgt_id>_row_hash` is kept "
                    + "when one on the same keys exists (its comment records them): the swap hands over the shadow's, and the "
                    + "shadow's copy of the live table's own is not made. Rebuilding it would take ACCESS EXCLUSIVE on `st` "
                    + "(DROP INDEX) for a whole index build over all rows, in one transaction with every reader waiting (the "
                    + "previous report saw 0.85 s at 1,000,000 rows and 8.8 s at 10,000,000). After the column-changing plain "
                    + "alter the table is new and the index is built once (CREATE INDEX alone takes a SHARE lock: readers pass). "
                    + "Seen here: " + String.join("; ", replan) + ".");
        }
        if (!orphans.isEmpty()) {
            notes.add("**A stray planner index survives the swap**: the shadow, being a DIFFERENTIAL catalog row of its own, was "
                    + "planned by the scheduler, which created `pgt_<shadow pgt_id>_row_hash` on it; the swap keeps it under that "
                    + "name, for a pgt_id that no longer exists, next to the re-planned live one: " + String.join("; ", orphans) + ".");
        }
        for (Run r : all) {
            long fullCatchUps = r.steps.stream().filter(st -> st.what.equals("catch-up refresh FULL")).count();
            if (r.failure == null && fullCatchUps > 0) {
                notes.add(String.format(Locale.ROOT, "**%,d rows, %s, throttle %d ms: %d catch-up refresh(es) ran FULL** (ms: %s), and the "
                        + "swap step took %s ms (its last catch-up runs inside it, with the live row locked, so the live table does not "
                        + "refresh meanwhile). The shadow had no differential plan yet: it is a DIFFERENTIAL catalog row of its own that "
                        + "the scheduler's planner has to plan, and the planner skips a row locked by a running step (`FOR UPDATE SKIP "
                        + "LOCKED`). Until the shadow is planned, `evolution_step` spaces catch-ups by at least `pg_trickle.scheduler_interval_ms` "
                        + "(default 1000; the benchmark's refresher plans every %d ms) to leave the planner a free moment.",
                        r.rows, r.change, r.throttle, fullCatchUps, catchUpList(r), ms(stepMs(r, "swap")), refreshMs));
            }
            if (r.failure != null) {
                long full = r.steps.stream().filter(st -> st.what.equals("catch-up refresh FULL")).count();
                long catchUps = r.steps.stream().filter(st -> st.what.startsWith("catch-up refresh")).count();
                notes.add(String.format(Locale.ROOT, "**The evolution of %,d rows with throttle %d ms%s did not converge** (%s): %d catch-up "
                        + "refreshes, %d of them FULL (ms each: %s). The CATCHING_UP test in `evolution_step` asks for the shadow to "
                        + "have seen every transaction the live table had seen finish (`shadow xmax ≥ live xmin`); the scheduler "
                        + "refreshes the live table every %d ms meanwhile. `pg_trickle.shadow_convergence_timeout` (default 1 hour; "
                        + "%d s in this benchmark) ended it, by failing and rolling back the evolution (the live table was untouched: "
                        + "see Checks). %s",
                        r.rows, r.throttle, r.unpaced ? " and an unpaced writer" : "", r.failure, catchUps, full, catchUpList(r),
                        refreshMs, r.convergeTimeoutS, full == 0 ? "" : "The FULL catch-ups mean the shadow had no differential "
                        + "plan: the scheduler's planner skips a catalog row locked by a running step (`FOR UPDATE SKIP LOCKED`); "
                        + "with the throttle at 0 the steps run back to back and the planner rarely finds the row free."));
            }
        }
    }

    private void resultTable(StringBuilder b, String change) {
        b.append("| rows | method | rep | reads n | read p99 ms (baseline) | **read max ms** (baseline) | read max: alter → done "
                + "| read max: done → steady + tail | read errors | write p99 ms (baseline) | **write max ms** (baseline) | write errors "
                + "| alter call s | index s | **alter → done s** | steady s | worst read during |\n"
                + "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for (Run r : runs) {
            if (!r.change.equals(change)) {
                continue;
            }
            b.append(String.format(Locale.ROOT, "| %,d | %s | %d | %,d | %s (%s) | **%s** (%s) | %s | %s | %d | %s (%s) | **%s** (%s) | %d "
                            + "| %.1f | %s | **%.1f**%s | %.1f | %s |\n", r.rows, r.method, r.rep, r.readDuring.size(), ms(pct(r.readDuring, 99)),
                    ms(pct(r.readBase, 99)), ms(max(r.readDuring)), ms(max(r.readBase)), ms(max(r.readEvolving)), ms(max(r.readAfter)),
                    r.readErrors, ms(pct(r.writeDuring, 99)),
                    ms(pct(r.writeBase, 99)), ms(max(r.writeDuring)), ms(max(r.writeBase)), r.writeErrors,
                    (r.tAlterEnd - r.tStart) / 1e9, Double.isNaN(r.indexMs) ? "–" : String.format(Locale.ROOT, "%.1f", r.indexMs / 1000),
                    (r.tDone - r.tStart) / 1e9, r.failure == null ? "" : " (**failed**)", (r.tSteady - r.tStart) / 1e9, r.worstReadDuring));
        }
        b.append("\nWorst write per run: ");
        List<String> ws = new ArrayList<>();
        for (Run r : runs) {
            if (r.change.equals(change)) {
                ws.add(String.format(Locale.ROOT, "%,d %s rep %d: %s ms %s", r.rows, r.method, r.rep, ms(max(r.writeDuring)), r.worstWriteDuring));
            }
        }
        b.append(String.join("; ", ws)).append(".\n");
    }

    private static double stepMs(Run r, String what) {
        double sum = 0;
        boolean any = false;
        for (Step s : r.steps) {
            if (s.what.equals(what)) {
                sum += (s.end - s.start) / 1e6;
                any = true;
            }
        }
        return any ? sum : Double.NaN;
    }

    private static String catchUpList(Run r) {
        List<String> v = new ArrayList<>();
        for (Step s : r.steps) {
            if (s.what.startsWith("catch-up refresh")) {
                v.add(ms((s.end - s.start) / 1e6) + (s.what.endsWith("FULL") ? " FULL" : ""));
            }
        }
        return v.isEmpty() ? "–" : String.join(", ", v);
    }

    // ---------------------------------------------------------------- helpers

    /** The benchmark's own session, for {@link SqlStatements}. */
    @Override
    public Connection connection() {
        return c;
    }

    static double max(List<Double> v) {
        return v.isEmpty() ? Double.NaN : Collections.max(v);
    }
}
