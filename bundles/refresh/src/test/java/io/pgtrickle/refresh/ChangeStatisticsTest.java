package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * A differential refresh is planned on true statistics of its changes (issue 13, "Planner
 * robustness"): a change buffer analysed while it held an earlier batch makes the planner expect
 * about one changed row whatever the window holds, and a join then runs as a nested loop that reads
 * the other side once per changed row. {@code refresh_change_statistics} takes the window's count, asks
 * the planner, and analyses the buffer when the two disagree, or plans without nested loops when it may
 * not. AUTO's cost rule recomputes when the differential statement is estimated to cost more, and the
 * history says why. No timings: what is checked is what the planner is told and what the refresh did.
 */
class ChangeStatisticsTest {

    private RefreshDatabase db;
    private Connection c;

    @BeforeEach
    void setUp() throws SQLException {
        db = new RefreshDatabase("refresh_stats");
        c = db.connect();
        exec("CREATE TABLE orders (o_id int PRIMARY KEY, o_prio int NOT NULL)",
                "CREATE TABLE lines (l_order int NOT NULL, l_no int NOT NULL, l_mode int NOT NULL, PRIMARY KEY (l_order, l_no))",
                "INSERT INTO orders SELECT i, i % 5 FROM generate_series(1, 5000) i",
                "INSERT INTO lines SELECT o, n, (o + n) % 7 FROM generate_series(1, 5000) o, generate_series(1, 4) n",
                "ANALYZE orders", "ANALYZE lines",
                // max(): groups recomputed, which costs more than recomputing everything when every group changes
                "SELECT pgtrickle.create_stream_table('per_mode', 'SELECT l_mode, o_prio, count(*) AS n, max(l_no) AS top FROM orders, lines"
                        + " WHERE o_id = l_order GROUP BY l_mode, o_prio', 'calculated')");
        db.plan("per_mode");
        exec("SELECT pgtrickle.refresh_stream_table('per_mode')", "SELECT pgtrickle.refresh_stream_table('per_mode')");
    }

    @AfterEach
    void tearDown() throws Exception {
        c.close();
        db.close();
    }

    /** The orders buffer analysed while it held one change, then 400 orders changed: the planner's estimate vs the truth. */
    private void staleBatch() throws SQLException {
        exec("UPDATE orders SET o_prio = o_prio + 1 WHERE o_id = 1", "ANALYZE " + buffer("orders"),
                "SELECT pgtrickle.refresh_stream_table('per_mode')",
                "UPDATE orders SET o_prio = o_prio + 1 WHERE o_id BETWEEN 1000 AND 1399");
    }

    @Test
    void theWindowIsEstimatedFromTrueStatisticsBeforeTheStatementIsPlanned() throws SQLException {
        staleBatch();
        assertEquals(800, db.queryLong("SELECT pgtrickle.pending_change_count('orders', " + frontier() + ")"));
        assertTrue(estimate() < 50, "the precondition: the planner misjudges the window, estimating " + estimate());

        // turned off, nothing changes: the same misjudged window
        exec("BEGIN", "SET LOCAL pg_trickle.analyze_change_buffers = off");
        assertEquals("{}", one("SELECT pgtrickle.refresh_change_statistics(" + frontier() + ", " + counts() + ")::text"));
        assertTrue(estimate() < 50, "off: " + estimate());
        exec("ROLLBACK");

        // a value that is neither on nor off: on, with a warning naming it
        exec("BEGIN", "SET LOCAL pg_trickle.analyze_change_buffers = 'of'");
        try (Statement s = c.createStatement()) {
            s.execute("SELECT pgtrickle.refresh_change_statistics(" + frontier() + ", " + counts() + ")");
            assertEquals("pgtrickle: ignoring pg_trickle.analyze_change_buffers = 'of': not on or off; using the default on",
                    s.getWarnings() == null ? null : s.getWarnings().getMessage());
        }
        assertTrue(estimate() >= 400, "on: " + estimate());
        exec("ROLLBACK");

        exec("BEGIN");
        assertEquals("{}", one("SELECT pgtrickle.refresh_change_statistics(" + frontier() + ", " + counts() + ")::text"), "analysed, so no setting to restore");
        double analysed = estimate();
        assertTrue(analysed >= 400 && analysed <= 1600, "after the analysis the planner expects " + analysed + " of 800 rows");
        exec("ROLLBACK");

        // the refresh does the same, and stays differential and exact (pg_class.reltuples would not
        // tell: ANALYZE writes it in place, rolled back or not; pg_statistic is transactional)
        long before = analyses();
        exec("SELECT pgtrickle.refresh_stream_table('per_mode')");
        assertEquals("DIFFERENTIAL|false|", last());
        assertEquals(0, db.difference("per_mode"));
        assertTrue(analyses() > before, "the refresh analysed the buffer");
    }

    @Test
    void theWindowIsAnalysedAndOfTheColumnsReadOnlyThoseWithoutStatistics() throws SQLException {
        staleBatch();
        String prio = columnStatistics("o_prio");
        assertTrue(prio != null, "the precondition: o_prio has statistics, from the buffer's earlier batch");
        exec("BEGIN");
        one("SELECT pgtrickle.refresh_change_statistics(" + frontier() + ", " + counts() + ")::text");
        assertTrue(estimate() >= 400, "the window was analysed: " + estimate());
        assertEquals(prio, columnStatistics("o_prio"), "o_prio's statistics are kept, though 400 orders changed it since");
        exec("ROLLBACK");

        // a buffer whose columns have no statistics (never analysed): the columns the statement reads are analysed too
        exec("DELETE FROM pg_statistic WHERE starelid = '" + buffer("orders") + "'::regclass");
        exec("BEGIN");
        one("SELECT pgtrickle.refresh_change_statistics(" + frontier() + ", " + counts() + ")::text");
        assertTrue(estimate() >= 400, "the window: " + estimate());
        assertTrue(columnStatistics("o_prio") != null, "o_prio, which the statement reads, has statistics now");
        exec("ROLLBACK");
    }

    @Test
    void theWindowIsSampledSmallTheColumnsAnalysedOnceAtTheSessionsTarget() throws SQLException {
        // 30 writers of 20 orders each: at PostgreSQL's default target all 30 xids would be most common values
        exec("UPDATE orders SET o_prio = o_prio + 1 WHERE o_id = 1", "ANALYZE " + buffer("orders"),
                "SELECT pgtrickle.refresh_stream_table('per_mode')");
        for (int i = 0; i < 30; i++) {
            exec("UPDATE orders SET o_prio = o_prio + 1 WHERE o_id BETWEEN " + (1000 + 20 * i) + " AND " + (1019 + 20 * i));
        }
        exec("DELETE FROM pg_statistic WHERE starelid = '" + buffer("orders") + "'::regclass");
        exec("BEGIN");
        one("SELECT pgtrickle.refresh_change_statistics(" + frontier() + ", " + counts() + ")::text");
        double analysed = estimate();
        assertTrue(analysed >= 600 && analysed <= 2400, "the window of 1,200 rows is estimated at " + analysed);
        long xids = Long.parseLong(one("SELECT count(*) FROM pg_stats ps, unnest(ps.most_common_vals::text::text[]) v WHERE ps.schemaname = 'pgtrickle_changes'"
                + " AND ps.tablename = (SELECT relname FROM pg_class WHERE oid = '" + buffer("orders") + "'::regclass) AND ps.attname = 'xid'"));
        assertTrue(xids > 0 && xids <= 10, "xid from a sample at statistics target 10: " + xids + " most common values");
        long bounds = Long.parseLong(one("SELECT coalesce(array_length(ps.histogram_bounds::text::text[], 1), 0) FROM pg_stats ps WHERE ps.schemaname = 'pgtrickle_changes'"
                + " AND ps.tablename = (SELECT relname FROM pg_class WHERE oid = '" + buffer("orders") + "'::regclass) AND ps.attname = 'o_id'"));
        assertTrue(bounds > 11, "o_id, analysed for the first time, at the session's target: " + bounds + " histogram bounds");
        assertEquals("100", one("SELECT current_setting('default_statistics_target')"), "the session's target is restored");
        exec("ROLLBACK");
    }

    /** A column's statistics in the orders buffer (most common values and distinct count), on this test's connection. */
    private String columnStatistics(String column) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT coalesce(ps.most_common_vals::text, '') || '|' || ps.n_distinct"
                + " FROM pg_stats ps JOIN pg_class b ON b.relname = ps.tablename WHERE ps.schemaname = 'pgtrickle_changes'"
                + " AND b.oid = '" + buffer("orders") + "'::regclass AND ps.attname = '" + column + "'")) {
            return rs.next() ? rs.getString(1) : null;
        }
    }

    @Test
    void aBufferAnotherSessionAnalysesIsNotWaitedForTheStatementRunsWithoutNestedLoops() throws Exception {
        staleBatch();
        try (Connection other = db.connect(); Statement o = other.createStatement()) {
            other.setAutoCommit(false);
            o.execute("LOCK TABLE " + buffer("orders") + " IN SHARE UPDATE EXCLUSIVE MODE");
            exec("SET lock_timeout = '20s'");
            exec("BEGIN");
            assertEquals("{\"enable_nestloop\": \"on\"}", one("SELECT pgtrickle.refresh_change_statistics(" + frontier()
                    + ", " + counts() + ")::text"));
            assertEquals("off", one("SHOW enable_nestloop"));
            exec("ROLLBACK");

            exec("BEGIN", "SELECT pgtrickle.refresh_stream_table('per_mode')");
            assertEquals("on", one("SHOW enable_nestloop"), "restored after the statement");
            exec("COMMIT");
            assertEquals("DIFFERENTIAL|false|", last());
            assertEquals(0, db.difference("per_mode"));
            other.rollback();
        }
    }

    /**
     * Only a statement that reads a source depends on the window's estimate: one that reads the
     * changes, its own rows and its running totals (a filter, counts per group) is refreshed without
     * statistics, however wrong the estimate; the join of per_mode still gets them.
     */
    @Test
    void aStatementThatReadsOnlyTheChangesTakesNoStatistics() throws SQLException {
        exec("SELECT pgtrickle.create_stream_table('per_prio', 'SELECT o_prio, count(*) AS n FROM orders GROUP BY o_prio', 'calculated')",
                "SELECT pgtrickle.create_stream_table('urgent', 'SELECT o_id FROM orders WHERE o_prio = 1', 'calculated')",
                // named after its source: its statement names public.orders_urgent, which is not public.orders
                "SELECT pgtrickle.create_stream_table('orders_urgent', 'SELECT o_id FROM orders WHERE o_prio = 2', 'calculated')");
        db.plan("per_prio");
        db.plan("urgent");
        db.plan("orders_urgent");
        assertEquals("orders_urgent false, per_mode true, per_prio false, urgent false", db.queryString("SELECT string_agg(s.pgt_name || ' ' || pgtrickle.delta_reads_sources(s),"
                + " ', ' ORDER BY s.pgt_name) FROM pgtrickle.pgt_stream_tables s"));
        exec("SELECT pgtrickle.refresh_stream_table('per_prio')", "SELECT pgtrickle.refresh_stream_table('urgent')");
        staleBatch();
        long before = analyses();
        exec("SELECT pgtrickle.refresh_stream_table('per_prio')", "SELECT pgtrickle.refresh_stream_table('urgent')");
        assertEquals("DIFFERENTIAL|false|", last("per_prio"));
        assertEquals("DIFFERENTIAL|false|", last("urgent"));
        assertEquals(before, analyses(), "the changes alone need no statistics");
        assertEquals(0, db.difference("per_prio"));
        assertEquals(0, db.difference("urgent"));
        exec("SELECT pgtrickle.refresh_stream_table('per_mode')");
        assertTrue(analyses() > before, "the join's statement gets them");
        assertEquals(0, db.difference("per_mode"));
    }

    @Test
    void aSmallRefreshStaysDifferentialAndAnalysesNothing() throws SQLException {
        exec("ANALYZE " + buffer("orders"), "ANALYZE " + buffer("lines"));
        long before = analyses();
        exec("UPDATE orders SET o_prio = o_prio + 1 WHERE o_id = 7");
        exec("SELECT pgtrickle.refresh_stream_table('per_mode')");
        assertEquals("DIFFERENTIAL|false|", last());
        assertEquals(before, analyses(), "a one-row window is not worth an ANALYZE");
        assertEquals(0, db.difference("per_mode"));
    }

    @Test
    void autoRecomputesWhenTheDifferentialStatementCostsMoreAndSaysWhy() throws SQLException {
        exec("SELECT pgtrickle.create_stream_table('per_mode_diff', 'SELECT l_mode, o_prio, count(*) AS n FROM orders, lines"
                + " WHERE o_id = l_order GROUP BY l_mode, o_prio', 'calculated', 'DIFFERENTIAL')");
        db.plan("per_mode_diff");
        exec("SELECT pgtrickle.refresh_stream_table('per_mode_diff')", "SELECT pgtrickle.refresh_stream_table('per_mode_diff')");
        exec("SET pg_trickle.differential_cost_check_ratio = 0.01");
        // every line changes: 40,000 buffered rows against 25,000 source rows
        exec("UPDATE lines SET l_mode = (l_mode + 1) % 7");
        exec("SELECT pgtrickle.refresh_stream_table('per_mode')");
        String[] h = last().split("\\|", 3);
        assertEquals("FULL", h[0]);
        assertEquals("true", h[1]);
        assertTrue(h[2].matches("estimated cost of the differential statement \\d+ > of recomputing \\d+ \\(40000 changed rows, \\d+ source rows\\)"), h[2]);
        assertEquals(h[2], db.queryString("SELECT fallback_reason FROM pgtrickle.get_refresh_history('per_mode', 1)"));
        assertEquals(0, db.difference("per_mode"));

        exec("SELECT pgtrickle.refresh_stream_table('per_mode_diff')");
        assertEquals("DIFFERENTIAL|false|", last("per_mode_diff"), "a DIFFERENTIAL stream table never switches");
        assertEquals(0, db.difference("per_mode_diff"));

        // the same change with the rule off stays differential
        exec("SET pg_trickle.differential_cost_check_ratio = 0", "UPDATE lines SET l_mode = (l_mode + 1) % 7");
        exec("SELECT pgtrickle.refresh_stream_table('per_mode')");
        assertEquals("DIFFERENTIAL|false|", last());

        // the change-ratio rule says why too
        exec("SET pg_trickle.differential_max_change_ratio = 0.5", "UPDATE lines SET l_mode = (l_mode + 1) % 7");
        exec("SELECT pgtrickle.refresh_stream_table('per_mode')");
        assertTrue(last().matches("FULL\\|true\\|40000 changed rows > pg_trickle.differential_max_change_ratio 0.5 of \\d+ source rows"), last());
        assertNull(db.queryString("SELECT fallback_reason FROM pgtrickle.get_refresh_history('per_mode_diff', 1)"));
    }

    @Test
    void theCostRulesVerdictIsReusedForWindowsOfAboutItsSize() throws SQLException {
        exec("SET pg_trickle.differential_cost_check_ratio = 0.01");
        exec("UPDATE lines SET l_mode = (l_mode + 1) % 7"); // 40,000 changes
        exec("SELECT pgtrickle.refresh_stream_table('per_mode')");
        String why = last();
        assertTrue(why.startsWith("FULL|true|estimated cost"), why);
        assertEquals("0|40000", memo());

        // the same window again: the remembered verdict, not asked again, and no statistics taken for it, nor
        // the window judged for changes that do not matter (relevant_buffers: the frontier's count of judgements)
        String judged = one("SELECT frontier ->> 'judged' FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'per_mode'");
        assertTrue(judged.contains("[1, 0]"), judged);
        exec("UPDATE lines SET l_mode = (l_mode + 1) % 7");
        long analysed = analyses("lines");
        exec("SELECT pgtrickle.refresh_stream_table('per_mode')");
        assertEquals(why, last());
        assertEquals("1|40000", memo());
        assertEquals(analysed, analyses("lines"), "a remembered verdict for FULL needs no statistics of the changes");
        assertEquals(judged, one("SELECT frontier ->> 'judged' FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'per_mode'"));

        // a verdict for FULL holds for every larger window: three times every line (120,000 rows, more than twice
        // the window asked about) is not asked about, and counted only up to the least window the verdict holds for
        long least = Long.parseLong(one("SELECT pgtrickle.cost_verdict_floor(frontier -> 'cost') FROM pgtrickle.pgt_stream_tables"
                + " WHERE pgt_name = 'per_mode'"));
        assertTrue(least >= 1000 && least <= 20000, "at least 1,000, at most half the window: " + least);
        exec("UPDATE lines SET l_mode = (l_mode + 1) % 7", "UPDATE lines SET l_mode = (l_mode + 1) % 7", "UPDATE lines SET l_mode = (l_mode + 1) % 7");
        exec("SELECT pgtrickle.refresh_stream_table('per_mode')");
        assertEquals(why, last());
        assertEquals("2|40000", memo());
        long counted = Long.parseLong(one("SELECT frontier -> 'timing' -> 'f' ->> 'n' FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'per_mode'"));
        assertTrue(counted >= least && counted < 120000, "counted " + counted + " of 120,000 changed rows, the least window " + least);
        assertEquals(0, db.difference("per_mode"));

        // a window below that is asked about anew
        long lines = (least - 1) / 2;
        exec("UPDATE lines SET l_mode = (l_mode + 1) % 7 WHERE (l_order, l_no) IN (SELECT l_order, l_no FROM lines ORDER BY 1, 2 LIMIT " + lines + ")");
        exec("SELECT pgtrickle.refresh_stream_table('per_mode')");
        assertEquals("0|" + 2 * lines, memo());
        assertEquals(0, db.difference("per_mode"));

        // off: nothing remembered is used
        exec("SET pg_trickle.differential_cost_check_ratio = 0", "UPDATE lines SET l_mode = (l_mode + 1) % 7");
        exec("SELECT pgtrickle.refresh_stream_table('per_mode')");
        assertEquals("DIFFERENTIAL|false|", last());
        assertEquals(0, db.difference("per_mode"));
    }

    @Test
    void aVerdictForFullHoldsFromItsFloorOrHalfItsWindowAndAtLeast1000Rows() throws SQLException {
        assertEquals("3000", one("SELECT pgtrickle.cost_verdict_floor('{\"why\": \"x\", \"pending\": 40000, \"floor\": 3000}')"));
        assertEquals("20000", one("SELECT pgtrickle.cost_verdict_floor('{\"why\": \"x\", \"pending\": 40000, \"floor\": 61384}')"));
        assertEquals("1000", one("SELECT pgtrickle.cost_verdict_floor('{\"why\": \"x\", \"pending\": 1500, \"floor\": 1000}')"));
        assertEquals("20000", one("SELECT pgtrickle.cost_verdict_floor('{\"why\": \"x\", \"pending\": 40000}')"), "a verdict from before floors");
        assertNull(one("SELECT pgtrickle.cost_verdict_floor('{\"why\": null, \"pending\": 40000, \"floor\": 3000}')"), "a verdict for DIFFERENTIAL");
    }

    /** The cost rule's remembered verdict of per_mode: times reused | window it was asked for. */
    private String memo() throws SQLException {
        return one("SELECT (frontier -> 'cost' ->> 'uses') || '|' || (frontier -> 'cost' ->> 'pending')"
                + " FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'per_mode'");
    }

    /** The planner's estimate of the orders buffer's window, asked on this test's connection (inside its transaction). */
    private double estimate() throws SQLException {
        String f = one("SELECT frontier ->> 'snapshot' FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'per_mode'");
        String plan = one("EXPLAIN (FORMAT JSON) SELECT 1 FROM " + buffer("orders") + " WHERE xid >= pg_snapshot_xmin('" + f + "')"
                + " AND NOT pg_visible_in_snapshot(xid, '" + f + "')");
        java.util.regex.Matcher m = java.util.regex.Pattern.compile("\"Plan Rows\": ([0-9.]+)").matcher(plan);
        assertTrue(m.find(), plan);
        return Double.parseDouble(m.group(1));
    }

    private String one(String sql) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
            assertTrue(rs.next(), sql);
            return rs.getString(1);
        }
    }

    private String frontier() {
        return "(SELECT (frontier ->> 'snapshot')::pg_snapshot FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'per_mode')";
    }

    /** The window's rows per source, as run_refresh hands them over. */
    private String counts() {
        return "(SELECT jsonb_object_agg(d.source_relid, pgtrickle.pending_change_count(d.source_relid::regclass, " + frontier() + "))"
                + " FROM pgtrickle.pgt_dependencies d WHERE d.pgt_id = (SELECT pgt_id FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'per_mode'))";
    }

    private String buffer(String source) throws SQLException {
        return db.queryString("SELECT pgtrickle.change_buffer('" + source + "')::text");
    }

    private long analyses() throws SQLException {
        return analyses("orders");
    }

    private long analyses(String source) throws SQLException {
        // pg_statistic rows of the buffer change only when it is analysed: their xmin is the analysing transaction
        return db.queryLong("SELECT coalesce(max(xmin::text::bigint), 0) FROM pg_statistic WHERE starelid = " + "'"
                + buffer(source) + "'::regclass");
    }

    private String last() throws SQLException {
        return last("per_mode");
    }

    private String last(String st) throws SQLException {
        return db.queryString("SELECT action || '|' || was_full_fallback || '|' || coalesce(fallback_reason, '')"
                + " FROM pgtrickle.pgt_refresh_history WHERE pgt_id = ? ORDER BY refresh_id DESC LIMIT 1", db.pgtId(st));
    }

    private void exec(String... sql) throws SQLException {
        try (Statement s = c.createStatement()) {
            for (String q : sql) {
                s.execute(q);
            }
        }
    }
}
