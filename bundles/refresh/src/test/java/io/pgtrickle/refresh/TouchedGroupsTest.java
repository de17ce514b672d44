package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The groups a change touches are recomputed from the sources by their key's values, so an index
 * on the key finds their rows: a hundred changed orders never make a refresh read all the orders
 * (TPC-H Q13, whose touched customers were recomputed by a hash join over every order, 30 ms
 * against 4). Keys with a NULL in them, which equal nothing, are recomputed too.
 * Over an outer join grouped by its preserved side, the keys whose padded row may have come or gone
 * are not looked for a second time: the changed rows' matches give them.
 */
class TouchedGroupsTest {

    private static final String PER_CUSTOMER = "SELECT c.ck, count(o.ok) AS n, max(o.v) AS top FROM c LEFT JOIN o ON o.ck = c.ck GROUP BY c.ck";

    private RefreshDatabase db;

    @BeforeEach
    void setUp() throws SQLException {
        db = new RefreshDatabase("refresh_touched");
        db.exec("CREATE TABLE c (ck int PRIMARY KEY, name text NOT NULL)",
                "CREATE TABLE o (ok int PRIMARY KEY, ck int NOT NULL, v int NOT NULL, tag text, w int)",
                "CREATE INDEX o_ck ON o (ck)",
                "INSERT INTO c SELECT i, 'c' || i FROM generate_series(1, 5000) i",
                "INSERT INTO o SELECT i, 1 + i % 5000, i % 1000, CASE WHEN i % 3 = 0 THEN NULL ELSE 't' || i % 7 END,"
                        + " NULLIF(i % 4, 0) FROM generate_series(1, 60000) i",
                "ANALYZE c", "ANALYZE o");
    }

    @AfterEach
    void tearDown() {
        db.close();
    }

    @Test
    void theTouchedGroupsAreFoundByTheIndexOnTheirKey() throws SQLException {
        // max() is not kept as a running total: the touched customers are recomputed from the orders
        db.createDifferential("per_customer", PER_CUSTOMER);
        // 100 changed orders of 100 customers, a customer's orders gone, a new customer without any
        db.exec("UPDATE o SET v = v + 1000 WHERE ok % 600 = 0", "DELETE FROM o WHERE ck = 42", "INSERT INTO c VALUES (5001, 'new')");
        long[] read = refreshReadingOrders("per_customer", null);
        assertEquals(0, read[0], "no refresh statement scanned the orders");
        assertTrue(read[1] > 0, "the touched customers' orders were found by the index");
        // the touched customers' orders, once: about 300 rows, not all 60,000; and not a second time to
        // tell whose padded row came or went (the changed orders' customers are all touched anyway)
        assertTrue(read[2] < 450, "orders read: " + read[2]);
        assertEquals(0, read[3], "the touched customers' stored rows were found by the row index, not by reading all 5,000");
        db.assertEqualsItsQuery("per_customer", "after the refresh");
    }

    @Test
    void theRefreshPlansAtTheDifferentialRandomPageCostAndGivesTheSessionItsOwnBack() throws SQLException {
        db.createDifferential("per_customer", PER_CUSTOMER);
        // what the refresh's statement runs under, seen by a trigger of the stream table it writes
        db.exec("CREATE TABLE seen (page_cost text)",
                "CREATE FUNCTION note_page_cost() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN"
                        + " INSERT INTO seen VALUES (current_setting('random_page_cost')); RETURN NULL; END $f$",
                "CREATE TRIGGER note AFTER INSERT ON per_customer FOR EACH STATEMENT EXECUTE FUNCTION note_page_cost()");
        String[][] cases = {{null, "1.1"}, {"0", "3"}, {"1.0", "1"}, {"5", "3"}};
        for (int i = 0; i < cases.length; i++) {
            db.exec("TRUNCATE seen", "UPDATE o SET v = v + 1000 WHERE ok % 600 = " + i);
            refreshReadingOrders("per_customer", cases[i][0]);
            assertEquals(cases[i][1], db.queryString("SELECT string_agg(DISTINCT page_cost, ',') FROM seen"),
                    "pg_trickle.differential_random_page_cost = " + cases[i][0] + " in a session at 3 (0: the session's own; never above it)");
            db.assertEqualsItsQuery("per_customer", "after the refresh");
        }
    }

    @Test
    void touchedWindowPartitionsAndDistinctOnKeysAreFoundByTheIndexToo() throws SQLException {
        db.createDifferential("ranked", "SELECT o.ok, o.ck, rank() OVER (PARTITION BY o.ck ORDER BY o.v, o.ok) AS r FROM o");
        db.createDifferential("latest", "SELECT DISTINCT ON (o.ck) o.ck, o.ok, o.v FROM o ORDER BY o.ck, o.v DESC, o.ok");
        db.exec("UPDATE o SET v = v + 1000 WHERE ok % 600 = 0", "DELETE FROM o WHERE ck = 42");
        for (String st : new String[] {"ranked", "latest"}) {
            long[] read = refreshReadingOrders(st, null);
            assertEquals(0, read[0], st + ": no refresh statement scanned the orders");
            assertTrue(read[2] < 6000, st + ": orders read: " + read[2]);
            assertEquals(0, read[3], st + ": its stored rows were found by the row index");
            db.assertEqualsItsQuery(st, "after the refresh");
        }
    }

    /**
     * Refreshes {@code streamTable} with pg_trickle.differential_random_page_cost set to {@code pageCost}
     * (unless null) in a session whose random_page_cost is 3, and returns what it read of the
     * orders: sequential scans, index scans, rows; and the stream table's sequential scans. Counted as a difference within the refresh's
     * transaction: a session's counters of earlier transactions may not have been flushed yet.
     */
    private long[] refreshReadingOrders(String streamTable, String pageCost) throws SQLException {
        String counters = "SELECT o.seq_scan, o.idx_scan, o.seq_tup_read + o.idx_tup_fetch, coalesce(st.seq_scan, 0)"
                + " FROM pg_stat_xact_user_tables o LEFT JOIN pg_stat_xact_user_tables st ON st.relname = '" + streamTable + "'"
                + " WHERE o.relname = 'o'";
        try (Connection conn = db.connect(); Statement s = conn.createStatement()) {
            conn.setAutoCommit(false);
            s.execute("SET random_page_cost = 3");
            if (pageCost != null) {
                s.execute("SET pg_trickle.differential_random_page_cost = " + pageCost);
            }
            long[] before = RefreshDatabase.row(s, counters);
            s.execute("SELECT pgtrickle.refresh_stream_table('" + streamTable + "')");
            long[] after = RefreshDatabase.row(s, counters);
            assertEquals(3, RefreshDatabase.row(s, "SELECT current_setting('random_page_cost')::bigint")[0],
                    "the session's own random_page_cost is back");
            conn.commit();
            return new long[] {after[0] - before[0], after[1] - before[1], after[2] - before[2], after[3] - before[3]};
        }
    }

    @Test
    void groupsWithANullKeyAreRecomputedToo() throws SQLException {
        db.createDifferential("per_tag", "SELECT o.tag, count(*) AS n, max(o.v) AS top FROM o GROUP BY o.tag");
        db.createDifferential("per_pair", "SELECT o.tag, o.w, max(o.v) AS top FROM o GROUP BY o.tag, o.w");
        // the largest value of the NULL group goes, and a NULL row comes into another group
        db.exec("UPDATE o SET v = 2000 WHERE ok = 3", "SELECT pgtrickle.refresh_stream_table('per_tag')",
                "SELECT pgtrickle.refresh_stream_table('per_pair')");
        db.exec("DELETE FROM o WHERE ok = 3", "UPDATE o SET tag = NULL WHERE ok = 1", "UPDATE o SET tag = 'new' WHERE ok = 6");
        db.exec("SELECT pgtrickle.refresh_stream_table('per_tag')", "SELECT pgtrickle.refresh_stream_table('per_pair')");
        db.assertEqualsItsQuery("per_tag", "after the NULL group changed");
        db.assertEqualsItsQuery("per_pair", "after the NULL groups changed");
        assertEquals("999", db.queryString("SELECT top::text FROM per_tag WHERE tag IS NULL"), "the NULL group's largest value went back");
    }
}
