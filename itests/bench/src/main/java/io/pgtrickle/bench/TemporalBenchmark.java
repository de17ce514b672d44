package io.pgtrickle.bench;

import static io.pgtrickle.bench.BenchOutput.log;
import static io.pgtrickle.bench.BenchOutput.ms;

import io.pgtrickle.catalog.CatalogMigrator;
import io.pgtrickle.refresh.plan.RefreshPlanner;
import io.pgtrickle.testing.TestDatabase;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A temporal filter ({@code WHERE ts > now() - interval '10 minutes'}) over an events table that
 * grows by a trickle of rows while older ones age out of the window: the stream table maintained
 * differentially (the clock's move adds and removes the rows it swept), the same query as a stream
 * table in FULL mode (what every such stream table did before: recomputed at every refresh), and
 * REFRESH MATERIALIZED VIEW, one after the other in each round, each compared with the query in its
 * refresh's transaction. On a table with an index on {@code ts} and on a copy without one. Writes
 * {@code docs/benchmarks/temporal.md}. Never asserts on time.
 */
public final class TemporalBenchmark {

    private static final int ROWS = Integer.getInteger("bench.temporal.rows", 1_000_000);
    private static final int ROUNDS = Integer.getInteger("bench.temporal.rounds", 15);
    private static final int PER_SECOND = Integer.getInteger("bench.temporal.rate", 20);
    /** Windows of about 1% and 12% of the rows. */
    private static final List<String> WINDOWS = List.of("10 minutes", "2 hours");

    private TemporalBenchmark() {
    }

    public static void main(String[] args) throws Exception {
        Instant startedAt = Instant.now();
        long t0 = System.nanoTime();
        StringBuilder b = new StringBuilder();
        BenchOutput.title(b, "Temporal filters: a time window over a growing table", TemporalBenchmark.class, startedAt);
        TestDatabase.Database db = TestDatabase.get().createDatabase("bench_temporal");
        try (Connection c = db.connect(); Statement s = c.createStatement()) {
            new CatalogMigrator().migrate(c);
            // one row per (1000 minutes / ROWS): the window holds ROWS / 100 of them, and PER_SECOND come and go each second
            long span = 1000L * 60 * 1000 / ROWS;
            for (String t : List.of("events", "events_noindex")) {
                s.execute("CREATE TABLE " + t + " (id bigint PRIMARY KEY, ts timestamptz NOT NULL, v int NOT NULL)");
                s.execute("INSERT INTO " + t + " SELECT i, now() - (" + ROWS + " - i) * interval '" + span + " milliseconds', i % 1000"
                        + " FROM generate_series(1, " + ROWS + ") i");
            }
            s.execute("CREATE INDEX events_ts ON events (ts)");
            s.execute("ANALYZE");
            b.append("`events(id bigint PRIMARY KEY, ts timestamptz, v int)`, ").append(String.format("%,d", ROWS))
                    .append(" rows one every ").append(span).append(" ms back from the start, so the window `ts > now() - interval '10 minutes'`")
                    .append(" holds about ").append(String.format("%,d", ROWS / 100)).append(" of them and `'2 hours'` ")
                    .append(String.format("%,d", ROWS * 12 / 100)).append("; with an index on `ts`, and")
                    .append(" a copy `events_noindex` without one. A round inserts ").append(PER_SECOND).append(" rows dated now, waits a second")
                    .append(" (about as many rows age out), then refreshes, one after the other: the stream table as planned (AUTO:")
                    .append(" DIFFERENTIAL, the clock a derived table), the same query as a stream table in FULL mode (how every")
                    .append(" such stream table was refreshed before: recomputed), and `REFRESH MATERIALIZED VIEW`. Stream tables are")
                    .append(" refreshed as the container's engine runs them (client wall time of `run_refresh` with its history row, the")
                    .append(" commit and the buffers' truncation); each result is compared with the query in the refresh's transaction")
                    .append(" after the round (untimed). ").append(ROUNDS).append(" rounds; medians, with min–max.\n\n")
                    .append("| table | query | differential | FULL (recomputed) | REFRESH MATERIALIZED VIEW | rows added / removed per refresh (median) |")
                    .append(" REFRESH / differential | FULL / differential |\n|---|---|---|---|---|---|---|---|\n");
            int n = 0;
            for (String t : List.of("events", "events_noindex")) {
                for (String window : WINDOWS) {
                    b.append(table(c, s, t, window, ++n));
                }
            }
        } finally {
            db.drop();
        }
        b.append("\nRe-run: `mvn -B -f itests/bench/pom.xml -Pbench-temporal verify` (`-Dbench.temporal.rows=1000000`,")
                .append(" `-Dbench.temporal.rounds=15`, `-Dbench.temporal.rate=20`).\n");
        BenchOutput.publish(b.toString(), Path.of(System.getProperty("bench.report", "docs/benchmarks/temporal.md")),
                (System.nanoTime() - t0) / 60e9);
    }

    private static String table(Connection c, Statement s, String t, String window, int n) throws Exception {
        String query = "SELECT id, v FROM " + t + " WHERE ts > now() - interval '" + window + "'";
        Map<String, Long> ids = new LinkedHashMap<>();
        for (String mode : List.of("DIFFERENTIAL", "FULL")) {
            String name = "w" + n + "_" + mode.toLowerCase();
            s.execute("SELECT pgtrickle.create_stream_table('" + name + "', $q$" + query + "$q$, '24h', '" + mode + "')");
            long id = Long.parseLong(string(s, "SELECT (pgtrickle.find_stream_table('" + name + "')).pgt_id"));
            c.setAutoCommit(false);
            RefreshPlanner.planIfNeeded(c, id);
            c.commit();
            c.setAutoCommit(true);
            ids.put(mode, id);
            // the plan's first refresh fills its clock (FULL)
            EngineRefresh.refresh(c, s, id);
        }
        s.execute("CREATE MATERIALIZED VIEW w" + n + "_mv AS " + query);
        List<Double> diff = new ArrayList<>();
        List<Double> full = new ArrayList<>();
        List<Double> mv = new ArrayList<>();
        List<Long> moved = new ArrayList<>();
        long next = Long.parseLong(string(s, "SELECT max(id) + 1 FROM " + t));
        String diffAction = null;
        for (int r = 0; r < ROUNDS; r++) {
            s.execute("INSERT INTO " + t + " SELECT g, clock_timestamp(), g % 1000 FROM generate_series(" + next + ", " + (next + PER_SECOND - 1) + ") g");
            next += PER_SECOND;
            Thread.sleep(1000);
            EngineRefresh.Timing d = EngineRefresh.refresh(c, s, ids.get("DIFFERENTIAL"));
            diffAction = d.action();
            diff.add(d.totalMs());
            full.add(EngineRefresh.refresh(c, s, ids.get("FULL")).totalMs());
            long m0 = System.nanoTime();
            s.execute("REFRESH MATERIALIZED VIEW w" + n + "_mv");
            mv.add((System.nanoTime() - m0) / 1e6);
            moved.add(Long.parseLong(string(s, "SELECT rows_inserted || '' FROM pgtrickle.pgt_refresh_history WHERE pgt_id = "
                    + ids.get("DIFFERENTIAL") + " ORDER BY refresh_id DESC LIMIT 1")) * 1_000_000
                    + Long.parseLong(string(s, "SELECT rows_deleted || '' FROM pgtrickle.pgt_refresh_history WHERE pgt_id = "
                    + ids.get("DIFFERENTIAL") + " ORDER BY refresh_id DESC LIMIT 1")));
            for (String mode : ids.keySet()) {
                equal(c, s, "w" + n + "_" + mode.toLowerCase(), query);
            }
        }
        log("%s, %s: differential %s ms (%s), FULL %s ms, REFRESH %s ms", t, window, ms(BenchOutput.pct(diff, 50)), diffAction, ms(BenchOutput.pct(full, 50)),
                ms(BenchOutput.pct(mv, 50)));
        List<Double> added = moved.stream().map(m -> (double) (m / 1_000_000)).toList();
        List<Double> removed = moved.stream().map(m -> (double) (m % 1_000_000)).toList();
        return "| `" + t + "` | `" + query + "` | " + cell(diff) + " (" + diffAction + ") | " + cell(full) + " | " + cell(mv) + " | "
                + Math.round(BenchOutput.pct(added, 50)) + " / " + Math.round(BenchOutput.pct(removed, 50)) + " | "
                + String.format("%.1f×", BenchOutput.pct(mv, 50) / BenchOutput.pct(diff, 50)) + " | "
                + String.format("%.1f×", BenchOutput.pct(full, 50) / BenchOutput.pct(diff, 50)) + " |\n";
    }

    /** Fails the run when the stream table differs from its query in its own refresh's transaction. */
    private static void equal(Connection c, Statement s, String st, String query) throws SQLException {
        c.setAutoCommit(false);
        try {
            String differs = string(s, "SELECT count(*) FROM ((TABLE " + st + " EXCEPT ALL (" + query + ")) UNION ALL ((" + query
                    + ") EXCEPT ALL TABLE " + st + ")) d");
            if (!"0".equals(differs)) {
                // the stream table's rows are those of its last refresh's clock: compared in the benchmark's next transaction,
                // rows may have aged out since; so only a difference the refresh itself would show counts
                s.execute("SELECT pgtrickle.refresh_stream_table('" + st + "')");
                differs = string(s, "SELECT count(*) FROM ((TABLE " + st + " EXCEPT ALL (" + query + ")) UNION ALL ((" + query
                        + ") EXCEPT ALL TABLE " + st + ")) d");
                if (!"0".equals(differs)) {
                    throw new IllegalStateException(st + " differs from its query by " + differs + " rows");
                }
            }
        } finally {
            c.commit();
            c.setAutoCommit(true);
        }
    }

    private static String cell(List<Double> v) {
        return ms(BenchOutput.pct(v, 50)) + " (" + ms(BenchOutput.pct(v, 0)) + "–" + ms(BenchOutput.pct(v, 100)) + ")";
    }

    private static String string(Statement s, String sql) throws SQLException {
        try (ResultSet rs = s.executeQuery(sql)) {
            rs.next();
            return rs.getString(1);
        }
    }
}
