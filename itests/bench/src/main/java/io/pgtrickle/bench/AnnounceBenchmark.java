package io.pgtrickle.bench;

import static io.pgtrickle.bench.BenchOutput.log;
import static io.pgtrickle.bench.BenchOutput.ms;
import static io.pgtrickle.bench.BenchOutput.pct;

import io.pgtrickle.catalog.CatalogMigrator;
import io.pgtrickle.refresh.plan.RefreshPlanner;
import io.pgtrickle.testing.TestDatabase;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * What announcing through the refresh history costs a refresh (issue 12): a refresh's history row is
 * its event, and the notify unit's trigger on that table announces it, where the released catalog
 * (0.33.0.1) had run_refresh call announce_refresh itself. Two databases side by side in one run:
 * "direct", the released functions (the core catalog alone, as 0.33.0.1 left it), and "trigger", every
 * unit applied. Each round inserts one row into a source and times {@code refresh_stream_table} of a
 * filter stream table (DIFFERENTIAL, planned as the engine plans it, one row of delta), with and
 * without a subscription; the variants alternate within each round, each first every other round, so
 * the machine's noise falls on both alike.
 */
public final class AnnounceBenchmark {

    private static final int ROUNDS = Integer.getInteger("bench.announce.rounds", 1000);
    private static final int WARMUP = 50;

    private AnnounceBenchmark() {
    }

    public static void main(String[] args) throws Exception {
        Instant started = Instant.now();
        long t0 = System.nanoTime();
        TestDatabase.Database direct = TestDatabase.get().createDatabase("bench_announce_direct");
        TestDatabase.Database trigger = TestDatabase.get().createDatabase("bench_announce_trigger");
        try (Connection d = direct.connect(); Connection t = trigger.connect()) {
            CatalogMigrator.withUnits().migrate(d);
            new CatalogMigrator().migrate(t);
            for (Connection c : List.of(d, t)) {
                setUp(c);
            }
            StringBuilder b = new StringBuilder();
            BenchOutput.title(b, "Announcing through the refresh history: what the indirection costs", AnnounceBenchmark.class, started);
            b.append("`refresh_stream_table` of a filter stream table (DIFFERENTIAL) after a one-row insert, ").append(ROUNDS)
                    .append(" rounds per variant after ").append(WARMUP).append(" warm-up rounds, the variants alternating within each round,")
                    .append(" each first every other round. The stream table is planned as the engine plans it: a refresh applies its one-row delta.")
                    .append(" *direct*: the released 0.33.0.1 functions, where `run_refresh` calls `announce_refresh`;")
                    .append(" *trigger*: every unit applied, where `run_refresh` only writes its history row and the notify unit's")
                    .append(" trigger on `pgt_refresh_history` announces it. Milliseconds.\n\n");
            b.append("| subscriptions | variant | p50 | p90 | mean | p50 trigger / direct |\n|---|---|---|---|---|---|\n");
            for (boolean subscribed : new boolean[] {false, true}) {
                for (Connection c : List.of(d, t)) {
                    try (Statement s = c.createStatement()) {
                        s.execute(subscribed ? "SELECT pgtrickle.subscribe('bench_big', 'bench_changed')"
                                : "SELECT pgtrickle.unsubscribe('bench_big', 'bench_changed')");
                    }
                }
                List<Double> dt = new ArrayList<>();
                List<Double> tt = new ArrayList<>();
                for (int i = 0; i < WARMUP + ROUNDS; i++) {
                    // ABBA: each variant goes first every other round, so neither gains from the other's warm caches
                    boolean directFirst = i % 2 == 0;
                    double a = directFirst ? round(d) : Double.NaN;
                    double x = round(t);
                    if (!directFirst) {
                        a = round(d);
                    }
                    if (i >= WARMUP) {
                        dt.add(a);
                        tt.add(x);
                    }
                }
                checkAnnounced(d, subscribed);
                checkAnnounced(t, subscribed);
                String label = subscribed ? "1 (NOTIFY, no sink)" : "none";
                b.append(row(label, "direct", dt, Double.NaN));
                b.append(row(label, "trigger", tt, pct(tt, 50) / pct(dt, 50)));
                log("%s: direct p50 %s ms, trigger p50 %s ms", label, ms(pct(dt, 50)), ms(pct(tt, 50)));
            }
            b.append("\nA ratio within the run-to-run noise of this machine (a few percent either way) means the indirection costs a")
                    .append(" refresh nothing measurable.\n\nRe-run: `mvn -B -f itests/bench/pom.xml -Pbench-announce verify`.\n");
            BenchOutput.publish(b.toString(), Path.of(System.getProperty("bench.report", "docs/benchmarks/announce.md")),
                    (System.nanoTime() - t0) / 60e9);
        } finally {
            direct.drop();
            trigger.drop();
        }
    }

    private static void setUp(Connection c) throws SQLException {
        try (Statement s = c.createStatement()) {
            s.execute("CREATE TABLE bench_src (id bigserial PRIMARY KEY, v int NOT NULL)");
            s.execute("INSERT INTO bench_src (v) SELECT g % 100 FROM generate_series(1, 10000) g");
            s.execute("SELECT pgtrickle.create_stream_table('bench_big', 'SELECT id, v FROM bench_src WHERE v > 50',"
                    + " schedule => 'calculated', refresh_mode => 'DIFFERENTIAL')");
            s.execute("SET pg_trickle.notify_coalesce_ms = 0");
            // planned as the container's engine plans it, so a refresh applies its one-row delta (a few ms),
            // where the indirection's share is largest
            try (var rs = s.executeQuery("SELECT (pgtrickle.find_stream_table('bench_big')).pgt_id")) {
                rs.next();
                long id = rs.getLong(1);
                c.setAutoCommit(false);
                RefreshPlanner.planIfNeeded(c, id);
                c.commit();
                c.setAutoCommit(true);
            }
            s.execute("SELECT pgtrickle.refresh_stream_table('bench_big')");
        }
    }

    private static double round(Connection c) throws SQLException {
        try (Statement s = c.createStatement()) {
            s.execute("INSERT INTO bench_src (v) VALUES (99)");
            long start = System.nanoTime();
            s.execute("SELECT pgtrickle.refresh_stream_table('bench_big')");
            return (System.nanoTime() - start) / 1e6;
        }
    }

    /** Both variants really announce when subscribed (and neither when not): else the comparison is void. */
    private static void checkAnnounced(Connection c, boolean subscribed) throws SQLException {
        try (Statement s = c.createStatement(); var rs = s.executeQuery(
                "SELECT count(*) FROM pgtrickle.pgt_subscriptions WHERE last_notified_refresh_id IS NOT NULL")) {
            rs.next();
            if ((rs.getLong(1) > 0) != subscribed) {
                throw new IllegalStateException("the benchmark's subscription was " + (subscribed ? "not " : "") + "announced");
            }
        }
    }

    private static String row(String subscriptions, String variant, List<Double> v, double ratio) {
        double mean = v.stream().mapToDouble(Double::doubleValue).average().orElse(Double.NaN);
        return String.format(Locale.ROOT, "| %s | %s | %s | %s | %s | %s |%n", subscriptions, variant, ms(pct(v, 50)), ms(pct(v, 90)),
                ms(mean), Double.isNaN(ratio) ? "" : String.format(Locale.ROOT, "%.2f×", ratio));
    }
}
