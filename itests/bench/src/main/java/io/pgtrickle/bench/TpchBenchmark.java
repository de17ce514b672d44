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
 * The 22 TPC-H queries as stream tables, each beside a materialized view of the same query, at one or
 * more scale factors. The data is generated in SQL (resources {@code tpch/}); every round applies, in
 * one transaction, RF1 (new orders and lines) and RF2 (the oldest orders deleted), each a fraction of
 * the orders, plus updates of as many orders' lines and customers. Then, per query, it times a refresh
 * as the container's engine runs one ({@code run_refresh}, commit, the consumed change buffers
 * truncated) and {@code REFRESH MATERIALIZED VIEW}, and checks that the stream table
 * holds exactly the query's rows, by value (EXCEPT ALL both ways) and by text form (every row's text,
 * sorted). The stream tables are planned as the container's engine plans them. Prints the report
 * and writes it to {@code docs/benchmarks/tpch.md}. Never asserts on time.
 */
public final class TpchBenchmark {

    private static final double[] SCALES = Arrays.stream(System.getProperty("bench.tpch.scales", "0.01").split(","))
            .mapToDouble(Double::parseDouble).toArray();
    /**
     * Enough rounds for the median to be a stream table's steady state: AUTO measures both ways
     * over its first refreshes (the first differential one is cold, FULL is tried after two slow
     * ones), as a stream table refreshed for hours would have done long before.
     */
    private static final int ROUNDS = Integer.getInteger("bench.tpch.rounds", 10);
    private static final double FRACTION = Double.parseDouble(System.getProperty("bench.tpch.fraction", "0.001"));
    /** Only these queries (comma-separated numbers), for a look at a few; all 22 when unset. */
    private static final String ONLY = System.getProperty("bench.tpch.queries", "");
    /**
     * The refresh mode the stream tables are created with: AUTO as a user would, or DIFFERENTIAL to
     * look at the differential statement of a query AUTO runs FULL (a diagnosis aid).
     */
    private static final String MODE = System.getProperty("bench.tpch.mode", "AUTO");
    /**
     * Prints the plans (EXPLAIN ANALYZE, by auto_explain) of every statement of the last round's
     * refreshes that took at least this many milliseconds; off when negative. A diagnosis aid:
     * the times it reports include auto_explain's own cost.
     */
    private static final int EXPLAIN_MS = Integer.getInteger("bench.tpch.explain.ms", -1);
    /**
     * Prints, per query, where the last round's refresh spent its time by function (PostgreSQL's
     * track_functions: calls, total and self milliseconds), a diagnosis aid for the fixed cost of a
     * refresh; the statements a function runs count in its self time.
     */
    private static final boolean PROFILE = Boolean.getBoolean("bench.tpch.profile");
    /** Prints every refresh's action, duration and what AUTO's measured rule keeps (frontier -> 'timing'). */
    private static final boolean TIMING = Boolean.getBoolean("bench.tpch.timing");

    private TpchBenchmark() {
    }

    private record Result(int query, String mode, double refreshMs, double mvMs, boolean correct, String error) {
        double speedUp() {
            return mvMs / refreshMs;
        }
    }

    public static void main(String[] args) throws Exception {
        Instant started = Instant.now();
        long t0 = System.nanoTime();
        String schema = resource("tpch/schema.sql");
        String data = resource("tpch/data.sql");
        List<String> queries = queries(resource("tpch/queries.sql"));
        StringBuilder b = new StringBuilder();
        BenchOutput.title(b, "TPC-H: the 22 queries as stream tables against REFRESH MATERIALIZED VIEW", TpchBenchmark.class, started);
        b.append("Each query is a stream table (`create_stream_table(..., 'calculated', 'AUTO')`, planned as the engine plans it) and a")
                .append(" materialized view. A round changes ").append(pct(FRACTION)).append(" of the orders in one transaction: RF1 (new")
                .append(" orders with 1-7 lines), RF2 (as many of the oldest orders and their lines deleted), and updates of the lines of")
                .append(" as many orders (discount) and as many customers (balance), and of ").append(pct(FRACTION))
                .append(" of the part suppliers (supply cost, quantity) and the suppliers (balance, at least one). Then per query: a refresh as the")
                .append(" container's engine runs it (`run_refresh` and its history row in one round trip, its commit, then")
                .append(" `truncate_consumed_change_buffers()` when the refresh noted change buffers every stream table has read in full,")
                .append(" from `pg_trickle.change_buffer_prune_kb` (1 MB) on: they are truncated, where `refresh_stream_table` from SQL")
                .append(" deletes their rows) and")
                .append(" `REFRESH MATERIALIZED VIEW`, timed, and the stream table compared with the query by value (EXCEPT ALL both")
                .append(" ways) and by text form (every row's text, sorted). ").append(ROUNDS).append(" rounds; times are medians.")
                .append(" *Mode* is what the refreshes did (`DIFFERENTIAL`, `FULL`, or `NO_DATA` when none of the query's sources")
                .append(" changed). Queries Q3, Q10 and Q18 carry a tie-breaker in")
                .append(" their ORDER BY so that the rows under their LIMIT are one set. Data: generated in SQL after dbgen")
                .append(" (`itests/bench/src/main/resources/tpch/`), seeded.\n\n");
        for (double sf : SCALES) {
            b.append(scale(sf, schema, data, queries));
        }
        b.append("Re-run: `mvn -B -f itests/bench/pom.xml -Pbench-tpch verify -Dbench.tpch.scales=0.01,0.1`.\n");
        BenchOutput.publish(b.toString(), Path.of(System.getProperty("bench.report", "docs/benchmarks/tpch.md")), (System.nanoTime() - t0) / 60e9);
    }

    private static String scale(double sf, String schema, String data, List<String> queries) throws Exception {
        TestDatabase.Database db = TestDatabase.get().createDatabase("bench_tpch");
        try (Connection c = db.connect(); Statement s = c.createStatement()) {
            new CatalogMigrator().migrate(c);
            long load = System.nanoTime();
            s.execute(schema);
            s.execute(data.replace("{SF}", String.valueOf(sf))
                    .replace("{SUPPLIERS}", String.valueOf(Math.max(10, Math.round(10_000 * sf))))
                    .replace("{PARTS}", String.valueOf(Math.max(200, Math.round(200_000 * sf))))
                    .replace("{CUSTOMERS}", String.valueOf(Math.max(150, Math.round(150_000 * sf))))
                    .replace("{ORDERS}", String.valueOf(Math.max(1500, Math.round(1_500_000 * sf)))));
            s.execute("ANALYZE");
            log("SF %s: loaded in %.1f s (%s lineitems)", sf, (System.nanoTime() - load) / 1e9, string(s, "SELECT count(*) FROM lineitem"));
            String fraction = String.format(Locale.ROOT, "%.10f", 0.0001 / sf);
            Map<Integer, String> created = new LinkedHashMap<>();
            Map<Integer, Long> ids = new LinkedHashMap<>();
            Map<Integer, String> refused = new LinkedHashMap<>();
            for (int i = 0; i < queries.size(); i++) {
                int q = i + 1;
                if (!ONLY.isBlank() && !Arrays.asList(ONLY.split(",")).contains(String.valueOf(q))) {
                    continue;
                }
                String sql = queries.get(i).replace("{FRACTION}", fraction);
                try {
                    s.execute("SELECT pgtrickle.create_stream_table('tpch_q" + q + "', " + literal(sql) + ", 'calculated', " + literal(MODE) + ")");
                    s.execute("CREATE MATERIALIZED VIEW mv_q" + q + " AS " + sql);
                    long id = Long.parseLong(string(s, "SELECT (pgtrickle.find_stream_table('tpch_q" + q + "')).pgt_id"));
                    c.setAutoCommit(false);
                    RefreshPlanner.planIfNeeded(c, id);
                    c.commit();
                    c.setAutoCommit(true);
                    created.put(q, sql);
                    ids.put(q, id);
                } catch (SQLException e) {
                    if (!c.getAutoCommit()) {
                        c.rollback();
                        c.setAutoCommit(true);
                    }
                    refused.put(q, e.getMessage().lines().findFirst().orElse(""));
                }
            }
            Map<Integer, List<Double>> refresh = new LinkedHashMap<>();
            Map<Integer, List<Double>> mv = new LinkedHashMap<>();
            Map<Integer, java.util.Set<String>> modes = new LinkedHashMap<>();
            Map<Integer, Boolean> correct = new LinkedHashMap<>();
            for (int r = 1; r <= ROUNDS; r++) {
                s.execute("SELECT pg_temp.round(" + FRACTION + ")");
                for (Map.Entry<Integer, String> e : created.entrySet()) {
                    int q = e.getKey();
                    boolean explain = EXPLAIN_MS >= 0 && r == ROUNDS;
                    if (explain) {
                        s.execute("LOAD 'auto_explain'");
                        s.execute("SET auto_explain.log_min_duration = " + EXPLAIN_MS);
                        s.execute("SET auto_explain.log_analyze = on");
                        s.execute("SET auto_explain.log_nested_statements = on");
                        s.execute("SET auto_explain.log_level = notice");
                    }
                    boolean profile = PROFILE && r == ROUNDS;
                    if (profile) {
                        s.execute("SET track_functions = 'all'");
                        s.execute("SELECT pg_stat_reset()");
                    }
                    EngineRefresh.Timing timing = EngineRefresh.refresh(c, s, ids.get(q));
                    // the refresh's plans (auto_explain's notices), before the profile's statements on s clear them
                    List<String> plans = new ArrayList<>();
                    for (java.sql.SQLWarning w = explain ? s.getWarnings() : null; w != null; w = w.getNextWarning()) {
                        plans.add(w.getMessage());
                    }
                    refresh.computeIfAbsent(q, k -> new ArrayList<>()).add(timing.totalMs());
                    if (PROFILE) {
                        try (java.sql.ResultSet rs = s.executeQuery("SELECT action || coalesce(' (' || fallback_reason || ')', '')"
                                + " FROM pgtrickle.pgt_refresh_history WHERE pgt_id = " + ids.get(q) + " ORDER BY refresh_id DESC LIMIT 1")) {
                            log("Q%d round %d: %.2f ms, %s", q, r, timing.totalMs(), rs.next() ? rs.getString(1) : "?");
                        }
                    }
                    if (profile) {
                        log("Q%d profile: run_refresh %.2f ms, commit %.2f ms, truncate_consumed_change_buffers %.2f ms (client wall time)",
                                q, timing.runMs(), timing.commitMs(), timing.truncateMs());
                    }
                    if (profile) {
                        s.execute("SET track_functions = 'none'");
                        s.execute("SELECT pg_stat_force_next_flush()");
                        s.execute("SELECT pg_stat_clear_snapshot()");
                        try (java.sql.ResultSet rs = s.executeQuery("SELECT schemaname || '.' || funcname, calls, round(total_time::numeric, 2),"
                                + " round(self_time::numeric, 2) FROM pg_stat_user_functions ORDER BY self_time DESC LIMIT 12")) {
                            while (rs.next()) {
                                log("Q%d profile: %-50s calls %4d total %8s ms self %8s ms", q, rs.getString(1), rs.getLong(2),
                                        rs.getString(3), rs.getString(4));
                            }
                        }
                        // planning, which the function times include: the statement as the refresh plans it, with the
                        // buffers a round changes as its live sources
                        c.setAutoCommit(false);
                        s.execute("SELECT set_config('pgtrickle.live_buffers', (SELECT array_agg(pgtrickle.change_buffer(t::regclass)::text)"
                                + " FROM unnest(ARRAY['orders', 'lineitem', 'customer', 'partsupp', 'supplier']) t)::text, true)");
                        try (java.sql.ResultSet rs = s.executeQuery("SELECT pgtrickle.execute_as_owner(st, 'EXPLAIN (SUMMARY, FORMAT JSON) '"
                                + " || pgtrickle.live_statement(st.delta_sql), (st.frontier ->> 'snapshot')::pg_snapshot)::text"
                                + " FROM pgtrickle.pgt_stream_tables st WHERE st.pgt_name = 'tpch_q" + q + "' AND st.delta_sql IS NOT NULL")) {
                            if (rs.next()) {
                                java.util.regex.Matcher m = java.util.regex.Pattern.compile("Planning Time\\\\?\"?: ([0-9.]+)").matcher(rs.getString(1));
                                log("Q%d profile: planning the differential statement %s ms", q, m.find() ? m.group(1) : "?");
                            }
                        }
                        c.rollback();
                        c.setAutoCommit(true);
                    }
                    if (explain) {
                        for (String plan : plans) {
                            log("Q%d refresh: %s", q, plan);
                        }
                        s.execute("SET auto_explain.log_min_duration = -1");
                        // planning is outside auto_explain's durations: the stored statement, planned as the refresh plans it
                        try (java.sql.ResultSet rs = s.executeQuery("SELECT pgtrickle.execute_as_owner(st, 'EXPLAIN (SUMMARY, FORMAT JSON) '"
                                + " || pgtrickle.live_statement(st.delta_sql), (st.frontier ->> 'snapshot')::pg_snapshot)::text,"
                                + " (length(st.delta_sql) - length(replace(st.delta_sql, 'UNION ALL', ''))) / 9"
                                + " FROM pgtrickle.pgt_stream_tables st WHERE st.pgt_name = 'tpch_q" + q + "' AND st.delta_sql IS NOT NULL")) {
                            if (rs.next()) {
                                java.util.regex.Matcher m = java.util.regex.Pattern.compile("Planning Time\\\\?\"?: ([0-9.]+)").matcher(rs.getString(1));
                                log("Q%d delta statement: %s UNION ALLs, planning %s ms", q, rs.getString(2), m.find() ? m.group(1) : "?");
                            }
                        }
                    }
                    modes.computeIfAbsent(q, k -> new java.util.TreeSet<>()).add(timing.action());
                    if (TIMING) {
                        log("Q%d round %d: %s", q, r, string(s, "SELECT h.action || ' ' || round(extract(epoch FROM h.end_time - h.start_time)"
                                + " * 1000, 1) || ' ms, timing ' || (s.frontier -> 'timing')::text FROM pgtrickle.pgt_refresh_history h"
                                + " JOIN pgtrickle.pgt_stream_tables s USING (pgt_id) WHERE s.pgt_name = 'tpch_q" + q + "'"
                                + " ORDER BY h.refresh_id DESC LIMIT 1"));
                    }
                    long t = System.nanoTime();
                    s.execute("REFRESH MATERIALIZED VIEW mv_q" + q);
                    mv.computeIfAbsent(q, k -> new ArrayList<>()).add((System.nanoTime() - t) / 1e6);
                    correct.merge(q, equal(s, "tpch_q" + q, e.getValue()), Boolean::logicalAnd);
                }
                log("SF %s: round %d of %d done", sf, r, ROUNDS);
            }
            List<Result> results = new ArrayList<>();
            for (int q = 1; q <= queries.size(); q++) {
                if (!refused.containsKey(q) && !created.containsKey(q)) {
                    continue;
                }
                if (refused.containsKey(q)) {
                    results.add(new Result(q, "refused", Double.NaN, Double.NaN, false, refused.get(q)));
                } else {
                    results.add(new Result(q, String.join(", ", modes.get(q)), median(refresh.get(q)), median(mv.get(q)), correct.get(q), null));
                }
            }
            // why a refresh was FULL: the plan's reason (explain_refresh_mode), or AUTO's rule for that refresh
            Map<Integer, String> whyFull = new LinkedHashMap<>();
            for (int q : created.keySet()) {
                if (modes.get(q).contains("FULL")) {
                    whyFull.put(q, string(s, "SELECT coalesce((SELECT downgrade_reason FROM pgtrickle.explain_refresh_mode('tpch_q" + q + "')),"
                            + " (SELECT 'AUTO, last FULL refresh: ' || h.fallback_reason FROM pgtrickle.pgt_refresh_history h"
                            + " WHERE h.pgt_id = (pgtrickle.find_stream_table('tpch_q" + q + "')).pgt_id AND h.was_full_fallback"
                            + " ORDER BY h.refresh_id DESC LIMIT 1), '?')"));
                }
            }
            return report(sf, results, string(s, "SELECT count(*) FROM lineitem")) + whyFull(whyFull);
        } finally {
            db.drop();
        }
    }

    private static String whyFull(Map<Integer, String> why) {
        if (why.isEmpty()) {
            return "";
        }
        StringBuilder b = new StringBuilder("Why FULL:\n\n");
        why.forEach((q, reason) -> b.append("- Q").append(q).append(": ").append(reason.replace("|", "\\|")).append('\n'));
        return b.append('\n').toString();
    }

    /** The stream table holds exactly the query's rows: as values (EXCEPT ALL both ways) and as text. */
    private static boolean equal(Statement s, String table, String query) throws SQLException {
        String byValue = "SELECT count(*) FROM ((TABLE " + table + " EXCEPT ALL SELECT * FROM (" + query + ") q)"
                + " UNION ALL (SELECT * FROM (" + query + ") q EXCEPT ALL TABLE " + table + ")) d";
        String byText = "SELECT (SELECT coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '') FROM " + table + " t)"
                + " = (SELECT coalesce(string_agg(q::text, E'\\n' ORDER BY q::text), '') FROM (" + query + ") q)";
        return "0".equals(string(s, byValue)) && "t".equals(string(s, byText));
    }

    private static String report(double sf, List<Result> results, String lineitems) {
        StringBuilder b = new StringBuilder();
        b.append("## Scale factor ").append(sf).append(" (").append(lineitems).append(" lineitems)\n\n");
        b.append("| query | mode | refresh ms | REFRESH MATERIALIZED VIEW ms | speed-up | equal to the query after every round |\n");
        b.append("|---|---|---|---|---|---|\n");
        List<Double> speedUps = new ArrayList<>();
        int correct = 0;
        int differential = 0;
        for (Result r : results) {
            if (r.error() != null) {
                b.append(String.format(Locale.ROOT, "| Q%d | refused: %s | – | – | – | – |%n", r.query(), r.error().replace("|", "\\|")));
                continue;
            }
            speedUps.add(r.speedUp());
            correct += r.correct() ? 1 : 0;
            differential += r.mode().contains("DIFFERENTIAL") ? 1 : 0;
            b.append(String.format(Locale.ROOT, "| Q%d | %s | %s | %s | %.2f× | %s |%n", r.query(), r.mode(), ms(r.refreshMs()), ms(r.mvMs()),
                    r.speedUp(), r.correct() ? "yes" : "**no**"));
        }
        List<Double> sorted = new ArrayList<>(speedUps);
        sorted.sort(null);
        double geo = Math.exp(speedUps.stream().mapToDouble(Math::log).average().orElse(Double.NaN));
        double median = sorted.isEmpty() ? Double.NaN : sorted.get(sorted.size() / 2);
        long slower = speedUps.stream().filter(x -> x < 1).count();
        b.append(String.format(Locale.ROOT, "%nCorrect: %d of %d. Refreshed differentially (at least once): %d of %d. Speed-up over REFRESH"
                + " MATERIALIZED VIEW: median %.2f×, geometric mean %.2f×; %d of %d slower than it.%n%n", correct, results.size(),
                differential, results.size(), median, geo, slower, speedUps.size()));
        log("SF %s: correct %d/%d, differential %d/%d, median %.2fx, geometric mean %.2fx", sf, correct, results.size(), differential,
                results.size(), median, geo);
        return b.toString();
    }

    private static double median(List<Double> v) {
        List<Double> s = new ArrayList<>(v);
        s.sort(null);
        return s.get(s.size() / 2);
    }

    /** A percentage without trailing zeros: 0.1%, 1%, 10%. */
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

    /** The queries of {@code queries.sql}, in order, split at their {@code -- Q<n>} lines. */
    static List<String> queries(String text) {
        List<String> out = new ArrayList<>();
        StringBuilder current = null;
        for (String line : text.split("\n")) {
            if (line.matches("-- Q\\d+\\s*")) {
                if (current != null) {
                    out.add(current.toString().strip());
                }
                current = new StringBuilder();
            } else if (current != null) {
                current.append(line).append('\n');
            }
        }
        if (current != null) {
            out.add(current.toString().strip());
        }
        if (out.size() != 22) {
            throw new IllegalStateException("tpch/queries.sql holds " + out.size() + " queries, not 22");
        }
        return out;
    }

    private static String resource(String name) {
        try (InputStream in = TpchBenchmark.class.getClassLoader().getResourceAsStream(name)) {
            if (in == null) {
                throw new IllegalStateException("missing resource " + name);
            }
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
