package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * AUTO's measured rule (issue 13, "AUTO chooses FULL when the differential cost exceeds recomputing"):
 * every refresh records what it took in the frontier's {@code timing}, and AUTO refreshes FULL while
 * the last differential refresh of a window of about this size took more than
 * {@code pg_trickle.differential_measured_ratio} times the last FULL one, trying the losing way
 * again now and then. What a refresh takes is not up to the test, so the decisions are checked
 * against measurements the test writes into the frontier; that refreshes record true ones is
 * checked on its own. The TPC-H benchmark shows the rule on real plans (docs/benchmarks/tpch.md).
 */
class MeasuredChoiceTest {

    private RefreshDatabase db;
    private Connection c;

    @BeforeEach
    void setUp() throws SQLException {
        db = new RefreshDatabase("refresh_measured");
        c = db.connect();
        exec("CREATE TABLE items (id int PRIMARY KEY, grp int NOT NULL, v int NOT NULL)",
                "INSERT INTO items SELECT i, i % 10, i FROM generate_series(1, 1000) i",
                "SELECT pgtrickle.create_stream_table('per_grp', 'SELECT grp, count(*) AS n, sum(v) AS total FROM items GROUP BY grp',"
                        + " 'calculated')");
        db.plan("per_grp");
        exec("SET pg_trickle.differential_measured_ratio = 1.25");
    }

    @AfterEach
    void tearDown() throws Exception {
        c.close();
        db.close();
    }

    @Test
    void everyRefreshRecordsWhatItTook() throws SQLException {
        // the first fill, at creation: FULL's lower bound
        assertEquals("1|true|1", one("SELECT (t ->> 'k') || '|' || (t -> 'f' ->> 'fill') || '|' || (t -> 'f' ->> 'at') FROM " + timing()));
        assertTrue(Double.parseDouble(one("SELECT t -> 'f' ->> 'ms' FROM " + timing())) > 0);

        exec("UPDATE items SET v = v + 1 WHERE id <= 5"); // 10 buffered rows
        refresh();
        assertEquals("DIFFERENTIAL|false|", last());
        assertEquals("2|10|2|1|8", one("SELECT concat_ws('|', t ->> 'k', t -> 'd' ->> 'n', t -> 'd' ->> 'at', t -> 'd' ->> 'c', t ->> 'wait')"
                + " FROM " + timing()));
        assertTrue(Double.parseDouble(one("SELECT t -> 'd' ->> 'ms' FROM " + timing())) > 0);

        // what it keeps is the lesser of the last two, so that one slow refresh decides nothing by itself
        measured("{\"d\": {\"ms\": 0.001, \"last\": 0.001, \"n\": 10, \"at\": 2, \"c\": 1}, \"f\": {\"ms\": 1, \"at\": 1, \"fill\": true},"
                + " \"k\": 2, \"wait\": 8}");
        exec("UPDATE items SET v = v + 1 WHERE id <= 5");
        refresh();
        assertEquals("0.001|2|3", one("SELECT concat_ws('|', t -> 'd' ->> 'ms', t -> 'd' ->> 'c', t -> 'd' ->> 'at') FROM " + timing()));
        assertTrue(Double.parseDouble(one("SELECT t -> 'd' ->> 'last' FROM " + timing())) > 0.001);

        // nothing to do counts nothing and keeps what was measured
        String before = one("SELECT t::text FROM " + timing());
        refresh();
        assertEquals("NO_DATA|false|", last());
        assertEquals(before, one("SELECT t::text FROM " + timing()));
        db.assertEqualsItsQuery("per_grp", "after the refreshes");
    }

    @Test
    void fullWhileTheDifferentialRefreshTookLongerAndSaysWhy() throws SQLException {
        measured("{\"d\": {\"ms\": 50, \"n\": 10, \"at\": 5}, \"f\": {\"ms\": 5, \"n\": 10, \"at\": 5}, \"k\": 5, \"wait\": 8}");
        exec("UPDATE items SET v = v + 1 WHERE id <= 5");
        refresh();
        assertEquals("FULL|true|measured: the last differential refresh took 50.0 ms for 10 changes, the last FULL one 5.0 ms", last());
        assertEquals(last().split("\\|", 3)[2], db.queryString("SELECT fallback_reason FROM pgtrickle.get_refresh_history('per_grp', 1)"));
        // FULL measured anew, the differential measurement kept
        assertEquals("6|6|50", one("SELECT concat_ws('|', t ->> 'k', t -> 'f' ->> 'at', t -> 'd' ->> 'ms') FROM " + timing()));
        db.assertEqualsItsQuery("per_grp", "after a measured FULL refresh");

        // a window under half the measured one is not judged by it: differential, which measures it,
        // once the running totals the FULL refresh left are refilled (staleRunningTotals...)
        measured("{\"d\": {\"ms\": 50, \"n\": 30, \"at\": 6}, \"f\": {\"ms\": 5, \"n\": 10, \"at\": 6}, \"k\": 6, \"wait\": 8}");
        exec("UPDATE items SET v = v + 1 WHERE id <= 5");
        refresh();
        assertTrue(last().startsWith("FULL|true|the running totals and derived tables were left"), last());
        exec("UPDATE items SET v = v + 1 WHERE id <= 5");
        refresh();
        assertEquals("DIFFERENTIAL|false|", last());
        assertEquals("10|7", one("SELECT concat_ws('|', t -> 'd' ->> 'n', t -> 'd' ->> 'at') FROM " + timing()));

        // a larger window than measured costs the differential refresh at least as much
        measured("{\"d\": {\"ms\": 50, \"n\": 2, \"at\": 7}, \"f\": {\"ms\": 5, \"n\": 10, \"at\": 7}, \"k\": 7, \"wait\": 8}");
        exec("UPDATE items SET v = v + 1 WHERE id <= 5");
        refresh();
        assertTrue(last().startsWith("FULL|true|measured: the last differential refresh took 50.0 ms for 2 changes"), last());

        // within 1.25 times (or 1 ms) of FULL, the differential refresh stays (after the refill)
        measured("{\"d\": {\"ms\": 6, \"n\": 10, \"at\": 8}, \"f\": {\"ms\": 5, \"n\": 10, \"at\": 8}, \"k\": 8, \"wait\": 8}");
        exec("UPDATE items SET v = v + 1 WHERE id <= 5");
        refresh();
        assertTrue(last().startsWith("FULL|true|the running totals"), last());
        exec("UPDATE items SET v = v + 1 WHERE id <= 5");
        refresh();
        assertEquals("DIFFERENTIAL|false|", last());
        db.assertEqualsItsQuery("per_grp", "after the differential refreshes");
    }

    /**
     * While AUTO measures FULL the cheaper way, its FULL refreshes leave the running totals (and
     * derived tables) as they were, where refilling them was most of such a refresh: the frontier
     * says they are stale. The first refresh that would be differential refills them instead (a
     * FULL refresh that says why, whose time is not FULL's and which leaves what AUTO measured and
     * meant to try for the next one), and the differential refreshes after it are right.
     */
    @Test
    void steadyFullRefreshesLeaveTheRunningTotalsToTheNextDifferentialOne() throws SQLException {
        String state = db.queryString("SELECT state_table FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'per_grp'");
        String totals = "SELECT string_agg(ROW(s.*)::text, ',' ORDER BY ROW(s.*)::text) FROM " + state + " s";
        String stale = "SELECT coalesce(frontier ->> 'stale', 'fresh') FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'per_grp'";
        String before = one(totals);
        for (int i = 0; i < 2; i++) {
            measured("{\"d\": {\"ms\": 50, \"n\": 10, \"at\": 5}, \"f\": {\"ms\": 5, \"n\": 10, \"at\": 5}, \"k\": 5, \"wait\": 8}");
            exec("UPDATE items SET v = v + 1 WHERE id <= 5", "DELETE FROM items WHERE id = " + (900 + i));
            refresh();
            assertTrue(last().startsWith("FULL|true|measured: "), last());
            assertEquals("true", one(stale));
            assertEquals(before, one(totals), "the running totals are left as they were");
            db.assertEqualsItsQuery("per_grp", "a steady FULL refresh");
        }
        // nothing to do keeps them stale
        refresh();
        assertEquals("NO_DATA|false|", last());
        assertEquals("true", one(stale));

        String timing = "{\"d\": {\"ms\": 5, \"n\": 10, \"at\": 5}, \"f\": {\"ms\": 50, \"n\": 10, \"at\": 5}, \"k\": 5, \"wait\": 8}";
        measured(timing);
        exec("UPDATE items SET v = v + 1 WHERE id <= 5");
        refresh();
        assertEquals("FULL|true|the running totals and derived tables were left as they were by FULL refreshes: refilled before a differential one",
                last());
        assertEquals("fresh", one(stale));
        assertTrue(!before.equals(one(totals)), "refilled");
        assertEquals("t", one("SELECT t = '" + timing + "'::jsonb FROM " + timing()), "what AUTO measured is kept");
        db.assertEqualsItsQuery("per_grp", "the refill");
        for (int i = 0; i < 3; i++) {
            exec("UPDATE items SET v = v + 1 WHERE id % 7 = " + i, "INSERT INTO items VALUES (" + (2000 + i) + ", " + i + ", 1)");
            refresh();
            assertEquals("DIFFERENTIAL|false|", last());
            db.assertEqualsItsQuery("per_grp", "a differential refresh on the refilled running totals");
        }
    }

    /** The same for a plan's derived table (an aggregating subquery in FROM), kept by the differential refreshes after the refill. */
    @Test
    void steadyFullRefreshesLeaveTheDerivedTablesToTheNextDifferentialOne() throws SQLException {
        exec("SELECT pgtrickle.create_stream_table('sizes', 'SELECT g.n, count(*) AS groups FROM"
                + " (SELECT grp, count(*) AS n FROM items GROUP BY grp) g GROUP BY g.n', 'calculated')");
        db.plan("sizes");
        assertEquals("1", one("SELECT jsonb_array_length(derived) FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'sizes'"));
        String frontier = "UPDATE pgtrickle.pgt_stream_tables SET frontier = frontier || jsonb_build_object('timing', '%s'::jsonb)"
                + " WHERE pgt_name = 'sizes'";
        String fullWins = "{\"d\": {\"ms\": 50, \"n\": 10, \"at\": 5}, \"f\": {\"ms\": 5, \"n\": 10, \"at\": 5}, \"k\": 5, \"wait\": 8}";
        String diffWins = "{\"d\": {\"ms\": 5, \"n\": 10, \"at\": 5}, \"f\": {\"ms\": 50, \"n\": 10, \"at\": 5}, \"k\": 5, \"wait\": 8}";
        String[] rounds = {"DELETE FROM items WHERE id % 10 = 3 AND id < 300", "INSERT INTO items SELECT i, 3, i FROM generate_series(3000, 3100) i",
            "UPDATE items SET grp = 4 WHERE id % 10 = 5 AND id < 500", "DELETE FROM items WHERE grp = 7"};
        String[] expected = {"FULL|true|measured: ", "FULL|true|measured: ", "FULL|true|the running totals", "DIFFERENTIAL|false|"};
        for (int i = 0; i < rounds.length; i++) {
            exec(String.format(frontier, i < 2 ? fullWins : diffWins), rounds[i], "SELECT pgtrickle.refresh_stream_table('sizes')");
            String action = last("sizes");
            assertTrue(action.startsWith(expected[i]), rounds[i] + ": " + action);
            db.assertEqualsItsQuery("sizes", rounds[i]);
        }
    }

    @Test
    void theWayThatLostIsTriedAgainLessOftenEachTimeItLoses() throws SQLException {
        // FULL has won since refresh 1; at refresh 10 the differential refresh is tried again
        measured("{\"d\": {\"ms\": 5000, \"n\": 10, \"at\": 1}, \"f\": {\"ms\": 500, \"n\": 10, \"at\": 9}, \"k\": 9, \"wait\": 8}");
        exec("UPDATE items SET v = v + 1 WHERE id <= 5");
        refresh();
        assertEquals("DIFFERENTIAL|false|", last());
        // it took far less than 500 ms: the verdict turned, and the next trial of FULL is 8 refreshes away
        assertTrue(Double.parseDouble(one("SELECT t -> 'd' ->> 'ms' FROM " + timing())) < 400);
        assertEquals("10|8", one("SELECT concat_ws('|', t -> 'd' ->> 'at', t ->> 'wait') FROM " + timing()));

        // the differential refresh has won since refresh 1; at refresh 10 FULL is tried again, and loses
        measured("{\"d\": {\"ms\": 0.001, \"n\": 10, \"at\": 9}, \"f\": {\"ms\": 2000, \"n\": 10, \"at\": 1}, \"k\": 9, \"wait\": 8}");
        exec("UPDATE items SET v = v + 1 WHERE id <= 5");
        refresh();
        assertEquals("FULL|true|measured: trying FULL again, the last FULL refresh took 2000.0 ms, the last differential one 0.0 ms"
                + " for 10 changes", last());
        // lost by more than 128 times: not tried again for 1,024 refreshes (8 times the loss ratio, at most 1,024)
        assertEquals("10|1024", one("SELECT concat_ws('|', t -> 'f' ->> 'at', t ->> 'wait') FROM " + timing()));
        // the trial left the running totals as they were: refilled first
        exec("UPDATE items SET v = v + 1 WHERE id <= 5");
        refresh();
        assertTrue(last().startsWith("FULL|true|the running totals"), last());
        exec("UPDATE items SET v = v + 1 WHERE id <= 5");
        refresh();
        assertEquals("DIFFERENTIAL|false|", last());
        db.assertEqualsItsQuery("per_grp", "after the trials");
    }

    @Test
    void fullIsTriedOnceTheDifferentialRefreshTakesLongerThanTheFirstFill() throws SQLException {
        // one slow differential refresh (the first after a plan or a restart is cold) is not enough
        measured("{\"d\": {\"ms\": 50, \"n\": 10, \"at\": 2, \"c\": 1}, \"f\": {\"ms\": 2, \"at\": 1, \"fill\": true}, \"k\": 2, \"wait\": 8}");
        exec("UPDATE items SET v = v + 1 WHERE id <= 5");
        refresh();
        assertEquals("DIFFERENTIAL|false|", last());
        measured("{\"d\": {\"ms\": 50, \"n\": 10, \"at\": 2, \"c\": 2}, \"f\": {\"ms\": 2, \"at\": 1, \"fill\": true}, \"k\": 2, \"wait\": 8}");
        exec("UPDATE items SET v = v + 1 WHERE id <= 5");
        refresh();
        assertEquals("FULL|true|measured: trying FULL, the last differential refresh took 50.0 ms for 10 changes, the first fill 2.0 ms",
                last());
        assertEquals("measured", one("SELECT coalesce(t -> 'f' ->> 'fill', 'measured') FROM " + timing()));

        // the fill ran cold, so FULL is tried from half of it on ...
        measured("{\"d\": {\"ms\": 12, \"n\": 10, \"at\": 2, \"c\": 2}, \"f\": {\"ms\": 20, \"at\": 1, \"fill\": true}, \"k\": 2,"
                + " \"wait\": 8}");
        exec("UPDATE items SET v = v + 1 WHERE id <= 5");
        refresh();
        assertEquals("FULL|true|measured: trying FULL, the last differential refresh took 12.0 ms for 10 changes, the first fill 20.0 ms",
                last());

        // ... and never while the differential refresh takes less than that, however long it runs
        // (once the running totals the trials left are refilled)
        measured("{\"d\": {\"ms\": 9, \"n\": 10, \"at\": 2, \"c\": 2}, \"f\": {\"ms\": 20, \"at\": 1, \"fill\": true}, \"k\": 2000,"
                + " \"wait\": 8}");
        exec("UPDATE items SET v = v + 1 WHERE id <= 5");
        refresh();
        assertTrue(last().startsWith("FULL|true|the running totals"), last());
        exec("UPDATE items SET v = v + 1 WHERE id <= 5");
        refresh();
        assertEquals("DIFFERENTIAL|false|", last());

        // never measured at all (a stream table from before the rule): tried after 8 refreshes with changes
        measured("{\"d\": {\"ms\": 3, \"n\": 10, \"at\": 7}, \"k\": 7, \"wait\": 8}");
        exec("UPDATE items SET v = v + 1 WHERE id <= 5");
        refresh();
        assertEquals("DIFFERENTIAL|false|", last());
        measured("{\"d\": {\"ms\": 3, \"n\": 10, \"at\": 8}, \"k\": 8, \"wait\": 8}");
        exec("UPDATE items SET v = v + 1 WHERE id <= 5");
        refresh();
        assertTrue(last().startsWith("FULL|true|measured: trying FULL, never measured; the last differential refresh took "), last());
        db.assertEqualsItsQuery("per_grp", "after the trials");
    }

    @Test
    void offAndDifferentialStreamTablesNeverSwitch() throws SQLException {
        String fullWins = "{\"d\": {\"ms\": 50, \"n\": 10, \"at\": 5}, \"f\": {\"ms\": 5, \"n\": 10, \"at\": 5}, \"k\": 5, \"wait\": 8}";
        exec("SET pg_trickle.differential_measured_ratio = 0");
        measured(fullWins);
        exec("UPDATE items SET v = v + 1 WHERE id <= 5");
        refresh();
        assertEquals("DIFFERENTIAL|false|", last());

        // not a number: the default, with one warning naming the setting
        exec("SET pg_trickle.differential_measured_ratio = 'fast'");
        measured(fullWins);
        exec("UPDATE items SET v = v + 1 WHERE id <= 5");
        try (Statement s = c.createStatement()) {
            s.execute("SELECT pgtrickle.refresh_stream_table('per_grp')");
            assertEquals("pgtrickle: ignoring pg_trickle.differential_measured_ratio = 'fast': not a number >= 0; using the default 1.25",
                    s.getWarnings() == null ? null : s.getWarnings().getMessage());
        }
        assertTrue(last().startsWith("FULL|true|measured: "), last());

        exec("SET pg_trickle.differential_measured_ratio = 1.25",
                "SELECT pgtrickle.create_stream_table('per_grp_diff', 'SELECT grp, count(*) AS n FROM items GROUP BY grp', 'calculated',"
                        + " 'DIFFERENTIAL')");
        db.plan("per_grp_diff");
        exec("UPDATE pgtrickle.pgt_stream_tables SET frontier = frontier || jsonb_build_object('timing', '" + fullWins + "'::jsonb)"
                + " WHERE pgt_name = 'per_grp_diff'", "UPDATE items SET v = v + 1 WHERE id <= 5");
        exec("SELECT pgtrickle.refresh_stream_table('per_grp_diff')");
        assertEquals("DIFFERENTIAL", db.lastRefresh("per_grp_diff").action());
        db.assertEqualsItsQuery("per_grp_diff", "a DIFFERENTIAL stream table");
    }

    /** Writes measurements into per_grp's frontier, as refreshes would have recorded them. */
    private void measured(String timing) throws SQLException {
        exec("UPDATE pgtrickle.pgt_stream_tables SET frontier = frontier || jsonb_build_object('timing', '" + timing + "'::jsonb)"
                + " WHERE pgt_name = 'per_grp'");
    }

    private static String timing() {
        return "(SELECT frontier -> 'timing' FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'per_grp') AS x(t)";
    }

    private void refresh() throws SQLException {
        exec("SELECT pgtrickle.refresh_stream_table('per_grp')");
    }

    private String last() throws SQLException {
        return last("per_grp");
    }

    /** The last refresh of {@code streamTable}: action|was_full_fallback|fallback_reason. */
    private String last(String streamTable) throws SQLException {
        return db.queryString("SELECT action || '|' || was_full_fallback || '|' || coalesce(fallback_reason, '')"
                + " FROM pgtrickle.pgt_refresh_history WHERE pgt_id = ? ORDER BY refresh_id DESC LIMIT 1", db.pgtId(streamTable));
    }

    private String one(String sql) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
            assertTrue(rs.next(), sql);
            return rs.getString(1);
        }
    }

    private void exec(String... sql) throws SQLException {
        try (Statement s = c.createStatement()) {
            for (String q : sql) {
                s.execute(q);
            }
        }
    }
}
