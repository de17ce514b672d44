package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * A differential statement reads of a source's changes only the columns its query names and the
 * rows its own conditions on that source keep (plan.ChangeReads), and is exact whatever reads the
 * same source otherwise: a self-join with other conditions, a subquery, a whole row.
 */
class ChangeReadsTest {

    private static final long SEED = Long.getLong("pgtrickle.test.seed", 20261205L);

    private RefreshDatabase db;

    @BeforeEach
    void setUp() throws SQLException {
        db = new RefreshDatabase("refresh_reads");
        db.exec("CREATE TABLE t (k int PRIMARY KEY, g int NOT NULL, v int, pad text, \"Note\" numeric)",
                "INSERT INTO t SELECT i, i % 7, i % 100, repeat('x', 200), (i % 5)::numeric / 2 FROM generate_series(1, 500) i");
    }

    @AfterEach
    void tearDown() {
        db.close();
    }

    @Test
    void onlyTheNamedColumnsAndTheRowsTheConditionsKeepAreNetted() throws SQLException {
        db.createDifferential("few", "SELECT k, v FROM t WHERE v < 5");
        db.exec("SELECT pgtrickle.refresh_stream_table('few')");
        String delta = db.queryString("SELECT delta_sql FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'few'");
        String changes = delta.substring(delta.indexOf("__pgt_d0 AS MATERIALIZED"), delta.indexOf("__pgt_trunc"));
        assertFalse(changes.contains("pad"), "the changes are read without the column the query does not name: " + changes);
        assertTrue(changes.contains("b.v < 5"), "and through the query's condition on them: " + changes);

        // pad only: what is read of each update's delete and insert is equal, and nets out
        db.exec("UPDATE t SET pad = pad || 'y' WHERE k <= 200");
        assertEquals(0, changesRead(delta), "an update of a column the query does not name is no change to it");
        // 200 rows leave the condition: their deletes are read (10 had v < 5), their inserts (v >= 100) are not
        db.exec("UPDATE t SET v = v + 100 WHERE k <= 200");
        assertEquals(10, changesRead(delta), "only the changed rows the condition keeps are read");
        db.exec("SELECT pgtrickle.refresh_stream_table('few')");
        db.assertEqualsItsQuery("few", "after the update");
    }

    @Test
    void thePlanRecordsTheColumnsItReadsAndOnlyTheyAreAnalysed() throws SQLException {
        db.createDifferential("few", "SELECT k, v FROM t WHERE v < 5");
        db.createDifferential("groups", "SELECT g, count(*) AS n FROM t GROUP BY g");
        assertEquals("{k,v}|{g}", db.queryString("SELECT string_agg(d.columns_used::text, '|' ORDER BY s.pgt_name)"
                + " FROM pgtrickle.pgt_dependencies d JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)"));
        db.exec("SELECT pgtrickle.create_stream_table('recomputed', 'SELECT k, md5(t::text) AS h FROM t', 'calculated')");
        db.plan("recomputed");
        assertEquals(null, db.queryString("SELECT d.columns_used::text FROM pgtrickle.pgt_dependencies d"
                + " JOIN pgtrickle.pgt_stream_tables s USING (pgt_id) WHERE s.pgt_name = 'recomputed'"), "a FULL plan reads no change");

        // statistics that describe an earlier, smaller window: the refresh of a statement that reads
        // the source (the groups whose maximum may have gone, rescanned) analyses the buffer again
        db.createDifferential("top", "SELECT g, max(v) AS m FROM t GROUP BY g");
        String buffer = db.queryString("SELECT pgtrickle.change_buffer('t')::text");
        db.exec("UPDATE t SET v = v WHERE k = 1", "ANALYZE " + buffer + " (xid)", "SELECT pgtrickle.refresh_stream_table('top')",
                "UPDATE t SET pad = pad || 'z', v = v + 1 WHERE k <= 300", "SELECT pgtrickle.refresh_stream_table('top')");
        String analysed = "SELECT string_agg(attname::text, ',' ORDER BY attname) FROM pg_stats WHERE schemaname || '.' || tablename = ?";
        assertEquals("action,g,v,xid", db.queryString(analysed, buffer), "the window and the columns the refreshing stream table reads");
        db.assertEqualsItsQuery("top", "after the refresh");
        // asked for no stream table in particular: the columns of all that read the source
        db.exec("UPDATE t SET g = g + 1 WHERE k <= 300");
        db.queryString("SELECT pgtrickle.refresh_change_statistics((frontier ->> 'snapshot')::pg_snapshot, jsonb_build_object('t'::regclass::oid, 600))::text"
                + " FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'top'");
        assertEquals("action,g,k,v,xid", db.queryString(analysed, buffer));
        db.exec("SELECT pgtrickle.refresh_stream_table('few')");
        db.assertEqualsItsQuery("few", "after the refresh");
    }

    @Test
    void aQueryReadingWholeRowsIsRecomputed() throws SQLException {
        List<String> queries = List.of("SELECT k, md5(t::text) AS h FROM t WHERE v < 20",
                "SELECT k, row_to_json(t) ->> 'pad' AS p FROM t WHERE v BETWEEN 10 AND 30",
                "SELECT g, count(t) AS n FROM t GROUP BY g");
        for (int i = 0; i < queries.size(); i++) {
            db.exec("SELECT pgtrickle.create_stream_table('w" + i + "', $q$" + queries.get(i) + "$q$, 'calculated')");
            db.plan("w" + i);
            assertEquals("FULL|the query reads a table's whole row (t.* or t used as a value)",
                    db.queryString("SELECT effective_mode || '|' || downgrade_reason FROM pgtrickle.explain_refresh_mode(?)", "w" + i), queries.get(i));
        }
        db.exec("UPDATE t SET pad = 'changed', v = v + 1 WHERE k % 10 = 0", "INSERT INTO t VALUES (9999, 1, 15, 'new', 2.50)");
        for (int i = 0; i < queries.size(); i++) {
            db.exec("SELECT pgtrickle.refresh_stream_table('w" + i + "')");
            db.assertEqualsItsQuery("w" + i, queries.get(i));
        }
    }

    /** The rows of CTE __pgt_d0 (the first source's netted changes) when the delta statement runs now; rolled back. */
    private long changesRead(String delta) throws SQLException {
        String frontier = db.queryString("SELECT frontier ->> 'snapshot' FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'few'");
        try (Connection c = db.connect(); Statement s = c.createStatement()) {
            c.setAutoCommit(false);
            // the stream table's guard lets refreshes write it
            s.execute("SET LOCAL pgtrickle.refreshing = on");
            s.execute("PREPARE delta(pg_snapshot, text[]) AS " + delta);
            try (ResultSet rs = s.executeQuery("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE delta('" + frontier + "', NULL)")) {
                rs.next();
                String plan = rs.getString(1);
                int at = plan.indexOf("\"Subplan Name\": \"CTE __pgt_d0\"");
                assertTrue(at > 0, plan);
                java.util.regex.Matcher m = java.util.regex.Pattern.compile("\"Actual Rows\": ([0-9.]+)").matcher(plan.substring(at));
                assertTrue(m.find(), plan);
                return Math.round(Double.parseDouble(m.group(1)));
            } finally {
                c.rollback();
            }
        }
    }

    @Test
    void everyReaderOfTheSourceGetsTheRowsItNeeds() throws SQLException {
        List<String> queries = List.of(
                // two occurrences, each with its own condition: the changes read are either's
                "SELECT x.k AS xk, y.k AS yk FROM t x JOIN t y ON x.g = y.g AND y.v > 97 WHERE x.v < 2",
                // one occurrence without a condition of its own: every change
                "SELECT x.k AS xk, y.v FROM t x JOIN t y ON x.k = y.k + 1 WHERE x.v < 3",
                // OR: each table's part of every alternative (TPC-H Q19), or nothing when an alternative has none
                "SELECT x.k AS xk, y.k AS yk FROM t x JOIN t y ON x.k = y.k + 1 WHERE (x.v < 10 AND y.g = 1) OR (x.v > 90 AND y.g IN (2, 3))",
                "SELECT x.k AS xk, y.k AS yk FROM t x JOIN t y ON x.k = y.k + 2 WHERE (x.v < 10 AND y.g = 1) OR y.g = 3",
                "SELECT x.k AS xk, y.v FROM t x JOIN t y ON x.k = y.k + 3 WHERE NOT (x.v < 50 AND y.g = 1) AND x.g = 2",
                // a subquery's own condition, beside the outer one
                "SELECT k, v FROM t WHERE v < 10 AND EXISTS (SELECT FROM t t2 WHERE t2.g = t.g AND t2.v > 95)",
                "SELECT k FROM t WHERE v >= 90 AND k NOT IN (SELECT t2.k + 1 FROM t t2 WHERE t2.v < 20)",
                // a quoted column, and one read only by a condition
                "SELECT k, \"Note\" FROM t WHERE \"Note\" > 1 AND pad LIKE '%y%'",
                // nothing of the row but its existence
                "SELECT g, count(*) AS n FROM t GROUP BY g",
                "SELECT count(*) AS n, sum(v) AS s FROM t WHERE v > 50");
        for (int i = 0; i < queries.size(); i++) {
            db.createDifferential("r" + i, queries.get(i));
        }
        Random random = new Random(SEED);
        for (int round = 1; round <= 12; round++) {
            int from = random.nextInt(500);
            db.exec("UPDATE t SET v = (v + " + random.nextInt(100) + ") % 100, pad = CASE WHEN k % 3 = 0 THEN pad || 'y' ELSE pad END,"
                            + " \"Note\" = CASE WHEN k % 4 = 0 THEN \"Note\" * 1.0 + 0.5 ELSE \"Note\" END WHERE k BETWEEN " + from + " AND " + (from + 60),
                    "DELETE FROM t WHERE k % 97 = " + random.nextInt(97),
                    "INSERT INTO t SELECT 1000 * " + round + " + i, i % 7, (i * 37) % 100, 'z', 1.00 FROM generate_series(1, 20) i");
            for (int i = 0; i < queries.size(); i++) {
                db.exec("SELECT pgtrickle.refresh_stream_table('r" + i + "')");
                assertEquals("DIFFERENTIAL", db.lastRefresh("r" + i).action(), queries.get(i));
                db.assertEqualsItsQuery("r" + i, "seed " + SEED + " round " + round + ": " + queries.get(i));
            }
        }
    }
}
