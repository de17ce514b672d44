package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * UNION, INTERSECT and EXCEPT keep each row's copies per branch in a state table, so a refresh
 * reads the changes and the counts of the rows they touch, never the branches' tables: no index
 * finds a row by the hash of its values, and recomputing the touched rows read every branch whole
 * (a UNION of two filters over 1M orders took as long as REFRESH MATERIALIZED VIEW). Where equal
 * values may print differently, or a branch has a subquery, the touched rows are still recomputed
 * from the query (SetOperationsRandomizedTest covers both ways, round after round). SELECT DISTINCT,
 * a UNION of one branch, is kept as running totals of each row's count the same way.
 */
class SetOperationsCountedTest {

    private RefreshDatabase db;

    @BeforeEach
    void setUp() throws SQLException {
        db = new RefreshDatabase("refresh_setops_counted");
        db.exec("CREATE TABLE x (a int, b int)", "CREATE TABLE y (a int, b int)", "CREATE TABLE z (a numeric, b int)",
                // duplicates in and across both tables, and NULLs (a set operation counts two NULLs as one row)
                "INSERT INTO x SELECT NULLIF(i % 50, 7), i % 9 FROM generate_series(1, 20000) i",
                "INSERT INTO y SELECT NULLIF(i % 60, 8), i % 6 FROM generate_series(1, 20000) i",
                "INSERT INTO z SELECT i % 40, i % 3 FROM generate_series(1, 2000) i",
                "ANALYZE x", "ANALYZE y", "ANALYZE z");
    }

    @AfterEach
    void tearDown() {
        db.close();
    }

    @Test
    void aRefreshReadsTheChangesAndTheCountsNotTheBranches() throws SQLException {
        String[][] stream = {
            {"u", "SELECT a, b FROM x UNION SELECT a, b FROM y"},
            {"i_all", "SELECT a, b FROM x INTERSECT ALL SELECT a, b FROM y"},
            {"e", "SELECT a, b FROM x EXCEPT SELECT a, b FROM y"},
            {"e_all", "SELECT a FROM x WHERE b > 2 EXCEPT ALL SELECT a FROM y WHERE b < 4"},
            {"nested", "(SELECT a FROM x UNION ALL SELECT b FROM y) INTERSECT SELECT a FROM y"},
        };
        for (String[] st : stream) {
            db.createDifferential(st[0], st[1]);
            assertNotNull(stateTable(st[0]), st[0] + ": its rows' counts are kept");
        }
        // copies of a row added and taken away, a row gone from one side only, a NULL row
        db.exec("UPDATE x SET b = b + 1 WHERE a = 3", "DELETE FROM y WHERE a = 5 AND b = 5", "INSERT INTO y VALUES (NULL, 2), (99, 1)",
                "DELETE FROM x WHERE a IS NULL AND b = 4", "INSERT INTO x SELECT a, b FROM x WHERE a = 11");
        for (String[] st : stream) {
            long[] read = refreshReading(st[0]);
            assertEquals(0, read[0], st[0] + ": the refresh read neither x nor y (scans " + read[0] + ")");
            assertEquals("DIFFERENTIAL", db.lastRefresh(st[0]).action(), st[0]);
            db.assertEqualsItsQuery(st[0], "after the refresh");
        }
        // a FULL refresh refills the counts: the next differential one starts from them
        db.exec("TRUNCATE y", "INSERT INTO y VALUES (3, 4), (3, 4), (NULL, NULL)");
        for (String[] st : stream) {
            db.exec("SELECT pgtrickle.refresh_stream_table('" + st[0] + "')");
            assertEquals("FULL", db.lastRefresh(st[0]).action(), st[0] + " after a TRUNCATE");
        }
        db.exec("DELETE FROM y WHERE a = 3", "INSERT INTO x VALUES (3, 4), (NULL, NULL)");
        for (String[] st : stream) {
            db.exec("SELECT pgtrickle.refresh_stream_table('" + st[0] + "')");
            assertEquals("DIFFERENTIAL", db.lastRefresh(st[0]).action(), st[0]);
            db.assertEqualsItsQuery(st[0], "after a FULL refresh and a differential one");
        }
    }

    @Test
    void valuesThatPrintDifferentlyAndBranchesWithSubqueriesAreRecomputed() throws SQLException {
        // 1 and 1.0 are one row of the UNION, printed as whichever PostgreSQL meets first
        db.createDifferential("by_numeric", "SELECT a FROM x UNION SELECT a FROM z");
        db.createDifferential("with_exists", "SELECT a, b FROM x WHERE EXISTS (SELECT FROM y WHERE y.a = x.a) EXCEPT SELECT b, a FROM y");
        for (String st : new String[] {"by_numeric", "with_exists"}) {
            assertNull(stateTable(st), st + ": recomputed, no counts kept");
        }
        db.exec("DELETE FROM z WHERE a = 5", "UPDATE x SET a = 100 WHERE a = 9", "DELETE FROM y WHERE a = 3");
        for (String st : new String[] {"by_numeric", "with_exists"}) {
            long[] read = refreshReading(st);
            assertTrue(read[0] > 0, st + ": its touched rows were recomputed from the tables");
            assertEquals("DIFFERENTIAL", db.lastRefresh(st).action(), st);
            db.assertEqualsItsQuery(st, "after the refresh");
        }
    }

    @Test
    void selectDistinctKeepsEachRowsCountToo() throws SQLException {
        db.createDifferential("d", "SELECT DISTINCT a, b FROM x WHERE b < 7");
        db.createDifferential("d_join", "SELECT DISTINCT x.a, y.b FROM x JOIN y ON y.a = x.b WHERE x.a < 5");
        db.createDifferential("d_numeric", "SELECT DISTINCT a FROM z");
        assertNotNull(stateTable("d"), "its rows' counts are kept");
        assertNotNull(stateTable("d_join"), "its rows' counts are kept");
        assertNull(stateTable("d_numeric"), "a numeric column (1 and 1.0 are one row, printed as DISTINCT meets them first): recomputed");
        db.exec("UPDATE x SET b = b + 1 WHERE a = 3", "DELETE FROM x WHERE a IS NULL AND b = 4", "INSERT INTO x VALUES (NULL, 2), (99, 1)",
                "DELETE FROM y WHERE a = 5", "INSERT INTO z VALUES (1, 1)", "DELETE FROM z WHERE a = 2");
        assertEquals(0, refreshReading("d")[0], "the refresh of d read no table");
        for (String st : new String[] {"d", "d_join", "d_numeric"}) {
            if (!st.equals("d")) {
                db.exec("SELECT pgtrickle.refresh_stream_table('" + st + "')");
            }
            assertEquals("DIFFERENTIAL", db.lastRefresh(st).action(), st);
            db.assertEqualsItsQuery(st, "after the refresh");
        }
    }

    private String stateTable(String streamTable) throws SQLException {
        return db.queryString("SELECT state_table FROM pgtrickle.pgt_stream_tables WHERE pgt_id = ?", db.pgtId(streamTable));
    }

    /** Refreshes the stream table and returns how often it scanned x, y or z (within its transaction's counters). */
    private long[] refreshReading(String streamTable) throws SQLException {
        String counters = "SELECT sum(seq_scan + coalesce(idx_scan, 0)) FROM pg_stat_xact_user_tables WHERE relname IN ('x', 'y', 'z')";
        try (Connection conn = db.connect(); Statement s = conn.createStatement()) {
            conn.setAutoCommit(false);
            long[] before = RefreshDatabase.row(s, counters);
            s.execute("SELECT pgtrickle.refresh_stream_table('" + streamTable + "')");
            long[] after = RefreshDatabase.row(s, counters);
            conn.commit();
            return new long[] {after[0] - before[0]};
        }
    }
}
