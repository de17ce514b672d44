package io.pgtrickle.bench;

import static io.pgtrickle.bench.BenchOutput.log;
import static io.pgtrickle.bench.BenchOutput.ms;

import io.pgtrickle.catalog.CatalogMigrator;
import io.pgtrickle.refresh.plan.RefreshPlanner;
import io.pgtrickle.testing.TestDatabase;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * A differential refresh planned on change-buffer statistics of an earlier batch (issue 13, "Planner
 * robustness"), reproduced on purpose: TPC-H join queries (Q12, Q5) as stream tables, their buffers
 * analysed at a chosen moment (empty; holding a one-order batch; holding a large batch), then a batch
 * of a given size, then one refresh per approach, each on its own copy of the stream table so that all
 * consume the same window, beside REFRESH MATERIALIZED VIEW:
 * <ul>
 * <li><b>as is</b>: the statement planned on whatever statistics the buffers have (the behaviour before
 * the fix: {@code pg_trickle.analyze_change_buffers = off}, no cost rule);</li>
 * <li><b>no nested loops</b>: the same, under {@code SET LOCAL enable_nestloop = off};</li>
 * <li><b>ANALYZE first</b>: the buffers analysed in a transaction of their own just before the refresh
 * (what the engine could do; a refresh from SQL could not), both timed;</li>
 * <li><b>run_refresh</b>: as shipped: {@code refresh_change_statistics} analyses the buffers whose window
 * the planner misjudges, in the refresh, and AUTO's cost rule may run FULL.</li>
 * </ul>
 * The buffers' autovacuum is off, so only the benchmark decides when they are analysed. A refresh is
 * cancelled after {@code bench.stale.timeout} seconds. Also the fixed cost: a refresh with nothing to
 * do and one with a one-order change, as is and as shipped. Writes {@code docs/benchmarks/stale-stats.md}.
 * Never asserts on time.
 */
public final class StaleStatsBenchmark {

    private static final double SF = Double.parseDouble(System.getProperty("bench.stale.sf", "0.1"));
    private static final double[] FRACTIONS = Arrays.stream(System.getProperty("bench.stale.fractions", "0.001,0.01,0.05").split(","))
            .mapToDouble(Double::parseDouble).toArray();
    private static final int[] QUERIES = Arrays.stream(System.getProperty("bench.stale.queries", "12,5").split(","))
            .mapToInt(Integer::parseInt).toArray();
    private static final int TIMEOUT_S = Integer.getInteger("bench.stale.timeout", 60);
    private static final int SMALL_REPS = Integer.getInteger("bench.stale.small.reps", 15);

    private static final String[] APPROACHES = {"asis", "nestloop", "analyzed", "fix"};
    private static final String OFF = "SET pg_trickle.analyze_change_buffers = off; SET pg_trickle.differential_cost_check_ratio = 0";
    private static final String ON = "RESET pg_trickle.analyze_change_buffers; RESET pg_trickle.differential_cost_check_ratio";

    private StaleStatsBenchmark() {
    }

    public static void main(String[] args) throws Exception {
        Instant startedAt = Instant.now();
        long t0 = System.nanoTime();
        StringBuilder b = new StringBuilder();
        BenchOutput.title(b, "A differential refresh planned on stale change-buffer statistics", StaleStatsBenchmark.class, startedAt);
        TestDatabase.Database db = TestDatabase.get().createDatabase("bench_stale");
        try (Connection c = db.connect(); Statement s = c.createStatement()) {
            new CatalogMigrator().migrate(c);
            String lineitems = load(s);
            b.append("TPC-H at SF ").append(SF).append(" (").append(lineitems).append(" lineitems), generated as in the TPC-H benchmark.")
                    .append(" A batch of *f* is one transaction of the TPC-H benchmark's round: *f* of the orders inserted with their")
                    .append(" lines, as many deleted, the lines of as many orders and *f* of the customers updated. Each query is a")
                    .append(" stream table per approach (all read the same buffers and consume the same window) and a materialized")
                    .append(" view. The buffers' autovacuum is off; the benchmark vacuums them at the start of each scenario and analyses them when the scenario says. A refresh is")
                    .append(" cancelled after ").append(TIMEOUT_S).append(" s (`> ").append(TIMEOUT_S).append(" s`). One run, times in ms.\n\n")
                    .append("- *as is*: planned on the buffers' statistics (`pg_trickle.analyze_change_buffers = off`, no cost rule): the")
                    .append(" behaviour before this fix.\n")
                    .append("- *no nested loops*: as is, under `SET LOCAL enable_nestloop = off`.\n")
                    .append("- *ANALYZE first*: the buffers analysed in a transaction of their own just before the refresh (what the")
                    .append(" engine alone could do); the time includes the ANALYZE.\n")
                    .append("- *run_refresh*: as shipped: `refresh_change_statistics` analyses, inside the refresh, each buffer whose")
                    .append(" window the planner misjudges by more than 2x (counted, and asked with EXPLAIN), and AUTO's cost rule may")
                    .append(" run FULL (its mode column).\n\n");
            for (int q : QUERIES) {
                b.append(query(c, s, q));
            }
        } finally {
            db.drop();
        }
        b.append("Re-run: `mvn -B -f itests/bench/pom.xml -Pbench-stale-stats verify` (`-Dbench.stale.sf=0.1`,")
                .append(" `-Dbench.stale.fractions=0.001,0.01,0.05`, `-Dbench.stale.queries=12,5`).\n");
        BenchOutput.publish(b.toString(), Path.of(System.getProperty("bench.report", "docs/benchmarks/stale-stats.md")),
                (System.nanoTime() - t0) / 60e9);
    }

    private static String load(Statement s) throws SQLException {
        long load = System.nanoTime();
        s.execute(resource("tpch/schema.sql"));
        s.execute(resource("tpch/data.sql").replace("{SF}", String.valueOf(SF))
                .replace("{SUPPLIERS}", String.valueOf(Math.max(10, Math.round(10_000 * SF))))
                .replace("{PARTS}", String.valueOf(Math.max(200, Math.round(200_000 * SF))))
                .replace("{CUSTOMERS}", String.valueOf(Math.max(150, Math.round(150_000 * SF))))
                .replace("{ORDERS}", String.valueOf(Math.max(1500, Math.round(1_500_000 * SF)))));
        s.execute("ANALYZE");
        String lineitems = string(s, "SELECT count(*) FROM lineitem");
        log("SF %s: loaded in %.1f s (%s lineitems)", SF, (System.nanoTime() - load) / 1e9, lineitems);
        return lineitems;
    }

    private static String query(Connection c, Statement s, int q) throws Exception {
        String sql = TpchBenchmark.queries(resource("tpch/queries.sql")).get(q - 1);
        for (String a : APPROACHES) {
            s.execute("SELECT pgtrickle.create_stream_table('q" + q + "_" + a + "', " + literal(sql) + ", 'calculated', 'AUTO')");
            c.setAutoCommit(false);
            RefreshPlanner.planIfNeeded(c, Long.parseLong(string(s, "SELECT (pgtrickle.find_stream_table('q" + q + "_" + a + "')).pgt_id")));
            c.commit();
            c.setAutoCommit(true);
        }
        s.execute("CREATE MATERIALIZED VIEW mv_q" + q + " AS " + sql);
        s.execute("DO $$ DECLARE t regclass; BEGIN FOR t IN SELECT pgtrickle.change_buffer(source_relid::regclass) FROM pgtrickle.pgt_change_tracking"
                + " LOOP EXECUTE format('ALTER TABLE %s SET (autovacuum_enabled = off)', t); END LOOP; END $$");
        catchUp(s, q);
        catchUp(s, q);

        StringBuilder b = new StringBuilder();
        b.append("## Q").append(q).append(" (").append(string(s, "SELECT CASE WHEN state_table IS NOT NULL THEN 'running totals'"
                        + " WHEN delta_sql LIKE '%__pgt_keys%' THEN 'touched groups recomputed' ELSE 'rows' END"
                        + " FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'q" + q + "_fix'"))
                .append(", ").append(string(s, "SELECT count(*) FROM pgtrickle.pgt_dependencies d WHERE d.pgt_id = (pgtrickle.find_stream_table('q"
                        + q + "_fix')).pgt_id")).append(" sources)\n\n| buffers analysed | then a batch of | as is | no nested loops | ANALYZE first | run_refresh | its mode |")
                .append(" REFRESH MATERIALIZED VIEW |\n|---|---|---|---|---|---|---|---|\n");
        double one = 1.0 / Double.parseDouble(string(s, "SELECT count(*) FROM orders"));
        for (double f : FRACTIONS) {
            b.append(scenario(s, q, "empty", -1, f));
        }
        for (double f : FRACTIONS) {
            b.append(scenario(s, q, "holding a one-order batch", one, f));
        }
        double big = FRACTIONS[FRACTIONS.length - 1];
        b.append(scenario(s, q, "holding a " + pct(big) + " batch", big, one));
        b.append("\n").append(fixedCost(s, q)).append("\n");
        return b.toString();
    }

    private static String scenario(Statement s, int q, String analysed, double setup, double batch) throws SQLException {
        catchUp(s, q);
        vacuum(s, q);
        if (setup > 0) {
            s.execute("SELECT pg_temp.round(" + setup + ")");
        }
        analyze(s, q);
        if (setup > 0) {
            catchUp(s, q);
        }
        s.execute("SELECT pg_temp.round(" + batch + ")");
        Map<String, String> cells = new LinkedHashMap<>();
        String mode = "";
        for (String a : APPROACHES) {
            String st = "q" + q + "_" + a;
            long t = System.nanoTime();
            try {
                switch (a) {
                    case "asis" -> {
                        s.execute(OFF);
                        refresh(s, st);
                    }
                    case "nestloop" -> {
                        s.execute(OFF);
                        s.execute("BEGIN; SET LOCAL enable_nestloop = off");
                        refresh(s, st);
                        s.execute("COMMIT");
                    }
                    case "analyzed" -> {
                        s.execute(OFF);
                        analyze(s, q);
                        refresh(s, st);
                    }
                    default -> {
                        s.execute(ON);
                        refresh(s, st);
                        mode = string(s, "SELECT h.action || coalesce(': ' || h.fallback_reason, '') FROM pgtrickle.pgt_refresh_history h"
                                + " WHERE h.pgt_id = (pgtrickle.find_stream_table('" + st + "')).pgt_id ORDER BY h.refresh_id DESC LIMIT 1");
                    }
                }
                cells.put(a, ms((System.nanoTime() - t) / 1e6));
            } catch (SQLException e) {
                if (!"57014".equals(e.getSQLState())) {
                    throw e;
                }
                s.execute("ROLLBACK");
                s.execute("SET statement_timeout = 0");
                cells.put(a, "> " + TIMEOUT_S + " s");
            } finally {
                s.execute(ON);
            }
        }
        long t = System.nanoTime();
        s.execute("REFRESH MATERIALIZED VIEW mv_q" + q);
        String mv = ms((System.nanoTime() - t) / 1e6);
        String batchName = batch < 0.0001 ? "one order" : pct(batch);
        log("Q%d, analysed %s, then %s: %s, mode %s, REFRESH MV %s", q, analysed, batchName, cells, mode, mv);
        return "| " + analysed + " | " + batchName + " | " + String.join(" | ", cells.values()) + " | " + mode.replace("|", "\\|")
                + " | " + mv + " |\n";
    }

    /** A refresh with nothing to do and one after a one-order change (its priority), as is and as shipped: medians. */
    private static String fixedCost(Statement s, int q) throws SQLException {
        catchUp(s, q);
        vacuum(s, q);
        analyze(s, q);
        Map<String, List<Double>> times = new LinkedHashMap<>();
        for (int r = 0; r < SMALL_REPS; r++) {
            for (String a : new String[] {"asis", "fix"}) {
                s.execute(a.equals("asis") ? OFF : ON);
                long t = System.nanoTime();
                refresh(s, "q" + q + "_" + a);
                times.computeIfAbsent("noop " + a, k -> new ArrayList<>()).add((System.nanoTime() - t) / 1e6);
            }
            s.execute("UPDATE orders SET o_orderpriority = CASE WHEN o_orderpriority = '1-URGENT' THEN '5-LOW' ELSE '1-URGENT' END"
                    + " WHERE o_orderkey = (SELECT o_orderkey FROM orders ORDER BY o_orderkey OFFSET " + r + " LIMIT 1)");
            for (String a : new String[] {"asis", "fix"}) {
                s.execute(a.equals("asis") ? OFF : ON);
                long t = System.nanoTime();
                refresh(s, "q" + q + "_" + a);
                times.computeIfAbsent("one " + a, k -> new ArrayList<>()).add((System.nanoTime() - t) / 1e6);
            }
        }
        s.execute(ON);
        catchUp(s, q);
        String line = String.format(Locale.ROOT, "Fixed cost (median of %d, ms): nothing to do %s as is, %s run_refresh; a one-order change %s"
                + " as is, %s run_refresh.%n", SMALL_REPS, ms(median(times.get("noop asis"))), ms(median(times.get("noop fix"))),
                ms(median(times.get("one asis"))), ms(median(times.get("one fix"))));
        log("Q%d: %s", q, line.strip());
        return line;
    }

    private static void refresh(Statement s, String st) throws SQLException {
        s.execute("SET statement_timeout = '" + TIMEOUT_S + "s'");
        s.execute("SELECT pgtrickle.refresh_stream_table('" + st + "')");
        s.execute("SET statement_timeout = 0");
    }

    /** Every stream table of the query refreshed, as shipped, so that the buffers hold nothing of theirs. */
    private static void catchUp(Statement s, int q) throws SQLException {
        s.execute(ON);
        for (String a : APPROACHES) {
            s.execute("SELECT pgtrickle.refresh_stream_table('q" + q + "_" + a + "')");
        }
    }

    /** The buffers vacuumed, as autovacuum would after a prune: their dead rows would otherwise pile up over the scenarios. */
    private static void vacuum(Statement s, int q) throws SQLException {
        List<String> buffers = new ArrayList<>();
        try (ResultSet rs = s.executeQuery("SELECT DISTINCT pgtrickle.change_buffer(d.source_relid::regclass)::text FROM pgtrickle.pgt_dependencies d"
                + " WHERE d.pgt_id = (pgtrickle.find_stream_table('q" + q + "_asis')).pgt_id")) {
            while (rs.next()) {
                buffers.add(rs.getString(1));
            }
        }
        for (String b : buffers) {
            s.execute("VACUUM " + b);
        }
    }

    private static void analyze(Statement s, int q) throws SQLException {
        s.execute("DO $$ DECLARE t regclass; BEGIN FOR t IN SELECT DISTINCT pgtrickle.change_buffer(d.source_relid::regclass)"
                + " FROM pgtrickle.pgt_dependencies d WHERE d.pgt_id = (pgtrickle.find_stream_table('q" + q + "_asis')).pgt_id"
                + " LOOP EXECUTE format('ANALYZE %s', t); END LOOP; END $$");
    }

    private static double median(List<Double> v) {
        List<Double> s = new ArrayList<>(v);
        s.sort(null);
        return s.get(s.size() / 2);
    }

    private static String pct(double f) {
        return new java.math.BigDecimal(String.valueOf(f * 100)).stripTrailingZeros().toPlainString() + "%";
    }

    private static String literal(String sql) {
        return "'" + sql.replace("'", "''") + "'";
    }

    private static String string(Statement s, String sql) throws SQLException {
        try (ResultSet rs = s.executeQuery(sql)) {
            rs.next();
            return rs.getString(1);
        }
    }

    private static String resource(String name) {
        try (InputStream in = StaleStatsBenchmark.class.getClassLoader().getResourceAsStream(name)) {
            if (in == null) {
                throw new IllegalStateException("missing resource " + name);
            }
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
