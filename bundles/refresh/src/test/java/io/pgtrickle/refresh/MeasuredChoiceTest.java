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

        // a window under half the measured one is not judged by it: differential, which measures it
        measured("{\"d\": {\"ms\": 50, \"n\": 30, \"at\": 6}, \"f\": {\"ms\": 5, \"n\": 10, \"at\": 6}, \"k\": 6, \"wait\": 8}");
        exec("UPDATE items SET v = v + 1 WHERE id <= 5");
        refresh();
        assertEquals("DIFFERENTIAL|false|", last());
        assertEquals("10|7", one("SELECT concat_ws('|', t -> 'd' ->> 'n', t -> 'd' ->> 'at') FROM " + timing()));

        // a larger window than measured costs the differential refresh at least as much
        measured("{\"d\": {\"ms\": 50, \"n\": 2, \"at\": 7}, \"f\": {\"ms\": 5, \"n\": 10, \"at\": 7}, \"k\": 7, \"wait\": 8}");
        exec("UPDATE items SET v = v + 1 WHERE id <= 5");
        refresh();
        assertTrue(last().startsWith("FULL|true|measured: the last differential refresh took 50.0 ms for 2 changes"), last());

        // within 1.25 times (or 1 ms) of FULL, the differential refresh stays
        measured("{\"d\": {\"ms\": 6, \"n\": 10, \"at\": 8}, \"f\": {\"ms\": 5, \"n\": 10, \"at\": 8}, \"k\": 8, \"wait\": 8}");
        exec("UPDATE items SET v = v + 1 WHERE id <= 5");
        refresh();
        assertEquals("DIFFERENTIAL|false|", last());
        db.assertEqualsItsQuery("per_grp", "after the differential refreshes");
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
        measured("{\"d\": {\"ms\": 9, \"n\": 10, \"at\": 2, \"c\": 2}, \"f\": {\"ms\": 20, \"at\": 1, \"fill\": true}, \"k\": 2000,"
                + " \"wait\": 8}");
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
        return db.queryString("SELECT action || '|' || was_full_fallback || '|' || coalesce(fallback_reason, '')"
                + " FROM pgtrickle.pgt_refresh_history WHERE pgt_id = ? ORDER BY refresh_id DESC LIMIT 1", db.pgtId("per_grp"));
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
