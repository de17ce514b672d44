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
 * Changes that do not matter to a stream table: updates of columns none of its statements read, or
 * that set what was there. A refresh leaves their sources out of the differential statement
 * (pgtrickle.relevant_buffers), runs none when nothing else changed, and still prunes them; the
 * statement itself judges a source left out by the columns it reads, by value and text form
 * (DeltaPlanner.truncated), and writes nothing when one has changes that matter.
 */
class IrrelevantChangesTest {

    /** pgtrickle.relevant_buffers of customers' buffer, with the probe's count of its rows as the parameter: it or ''. */
    private static final String JUDGE = "SELECT coalesce(array_to_string(pgtrickle.relevant_buffers(s.pgt_id,"
            + " ARRAY[pgtrickle.change_buffer('customers')::text], jsonb_build_object('customers'::regclass::oid::text, ?::bigint),"
            + " (s.frontier ->> 'snapshot')::pg_snapshot, pg_current_snapshot()), ','), '') FROM pgtrickle.pgt_stream_tables s"
            + " WHERE s.pgt_name = 'by_region'";

    private RefreshDatabase db;

    @BeforeEach
    void setUp() throws SQLException {
        db = new RefreshDatabase("refresh_irrelevant");
        db.exec("CREATE TABLE customers (id int PRIMARY KEY, region text NOT NULL, balance numeric(10,2) NOT NULL, rating numeric)",
                "CREATE TABLE orders (id int PRIMARY KEY, cust int NOT NULL, amount numeric(10,2) NOT NULL, note text)",
                "INSERT INTO customers SELECT i, 'r' || (i % 4), i, 1.5 FROM generate_series(1, 6000) i",
                "INSERT INTO orders SELECT i, 1 + i % 6000, i / 4.0, 'n' FROM generate_series(1, 3000) i", "ANALYZE customers, orders");
        // DIFFERENTIAL: AUTO would recompute for changes of more than half the sources' rows
        db.exec("SELECT pgtrickle.create_stream_table('by_region', $q$SELECT c.region, o.id, o.amount, c.rating FROM orders o"
                + " JOIN customers c ON c.id = o.cust WHERE c.region <> 'closed'$q$, 'calculated', 'DIFFERENTIAL')");
        db.plan("by_region");
        db.exec("SELECT pgtrickle.refresh_stream_table('by_region')");
    }

    @AfterEach
    void tearDown() {
        db.close();
    }

    @Test
    void anUpdateOfColumnsTheStreamTableDoesNotReadRunsNoStatementAndIsPruned() throws SQLException {
        db.exec("UPDATE customers SET balance = balance + 1 WHERE id <= 2000", "UPDATE orders SET note = 'm' WHERE id <= 500",
                "UPDATE customers SET rating = rating WHERE id BETWEEN 2001 AND 2100");
        assertEquals(0, statementsRun(), "no differential statement");
        RefreshDatabase.History last = db.lastRefresh("by_region");
        assertEquals("DIFFERENTIAL", last.action());
        assertEquals(0, last.inserted() + last.deleted());
        db.assertEqualsItsQuery("by_region", "balances and notes updated");
        assertEquals(0, db.queryLong("SELECT count(*) FROM " + db.queryString("SELECT pgtrickle.change_buffer('customers')::text")),
                "the updates consumed are pruned like any other");
        assertEquals(0, db.queryLong("SELECT count(*) FROM " + db.queryString("SELECT pgtrickle.change_buffer('orders')::text")));
    }

    @Test
    void changesThatMatterAreAppliedBesideOnesThatDoNot() throws SQLException {
        db.exec("UPDATE customers SET balance = balance + 1", "UPDATE customers SET region = 'closed' WHERE id = 7",
                "DELETE FROM orders WHERE id = 9", "INSERT INTO orders VALUES (9001, 13, 2.5, 'x')");
        db.exec("SELECT pgtrickle.refresh_stream_table('by_region')");
        assertEquals("DIFFERENTIAL", db.lastRefresh("by_region").action());
        db.assertEqualsItsQuery("by_region", "a region closed, an order replaced (as many inserts as deletes), every balance");
    }

    @Test
    void anEqualValueOfAnotherTextFormMatters() throws SQLException {
        db.exec("UPDATE customers SET rating = 1.50 WHERE id = 3", "UPDATE customers SET balance = balance + 1 WHERE id BETWEEN 11 AND 100");
        String buffer = db.queryString("SELECT pgtrickle.change_buffer('customers')::text");
        assertEquals(buffer, db.queryString(JUDGE, 182), "judged by text form: 1.5 and 1.50 are equal values");
        db.exec("SELECT pgtrickle.refresh_stream_table('by_region')");
        RefreshDatabase.History last = db.lastRefresh("by_region");
        assertEquals("DIFFERENTIAL", last.action());
        db.assertEqualsItsQuery("by_region", "1.5 -> 1.50");
        assertEquals(1, db.queryLong("SELECT count(*) FROM by_region WHERE rating::text = '1.50'"));
    }

    @Test
    void howManyRowsHaveAValueMattersThoughEveryValueIsBothInsertedAndDeleted() throws SQLException {
        createPerRegion();
        // deleted r1, r0, r1 and inserted r0, r0, r1: each text is on both sides, the counts are not
        db.exec("UPDATE customers SET region = CASE WHEN id = 5 THEN region ELSE 'r0' END WHERE id IN (1, 4, 5)");
        String buffer = db.queryString("SELECT pgtrickle.change_buffer('customers')::text");
        assertEquals(buffer, db.queryString(JUDGE.replace("'by_region'", "'per_region'"), 6));
        db.exec("SELECT pgtrickle.refresh_stream_table('per_region')");
        db.assertEqualsItsQuery("per_region", "r1 -> r0 once");
        assertEquals(1, db.queryLong("SELECT count(*) FROM per_region WHERE region = 'r0' AND n = 1501"));
    }

    @Test
    void onlyTheChangesTheProbeSawAreJudged() throws SQLException {
        createPerRegion();
        db.exec("UPDATE customers SET region = 'r0' WHERE id = 1");
        String probe = db.queryString("SELECT pg_current_snapshot()::text");
        // committed after the probe: undoes what the probe saw, by the columns read
        db.exec("UPDATE customers SET region = 'r1' WHERE id = 4");
        String judge = JUDGE.replace("'by_region'", "'per_region'");
        String buffer = db.queryString("SELECT pgtrickle.change_buffer('customers')::text");
        assertEquals(buffer, db.queryString(judge.replace("pg_current_snapshot()", "'" + probe + "'::pg_snapshot"), 2),
                "r1 -> r0, as far as the probe saw: it matters");
        assertEquals("", db.queryString(judge, 4), "with r0 -> r1 after it, nothing does");
        db.exec("SELECT pgtrickle.refresh_stream_table('per_region')");
        db.assertEqualsItsQuery("per_region", "moved and back");
    }

    @Test
    void aWindowOfMoreThanTenThousandRowsIsNotJudged() throws SQLException {
        db.exec("UPDATE customers SET balance = balance + 1 WHERE id <= 5001");
        String buffer = db.queryString("SELECT pgtrickle.change_buffer('customers')::text");
        assertEquals(buffer, db.queryString(JUDGE, 10_002), "10,002 rows, as the probe counted them: kept, unjudged");
        assertEquals("", db.queryString(JUDGE, 10_000), "up to 10,000: judged");
        assertEquals(1, statementsRun(), "the window not judged, the statement runs");
        db.assertEqualsItsQuery("by_region", "5,001 balances");
    }

    @Test
    void theStatementJudgesASourceLeftOutByTheColumnsItReads() throws SQLException {
        String delta = db.queryString("SELECT delta_sql FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'by_region'");
        String frontier = db.queryString("SELECT frontier ->> 'snapshot' FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'by_region'");
        String orders = db.queryString("SELECT pgtrickle.change_buffer('orders')::text");
        try (Connection c = db.connect(); Statement s = c.createStatement()) {
            s.execute("PREPARE delta(pg_snapshot, text[]) AS " + delta);
            String run = "EXECUTE delta('" + frontier + "', ARRAY['" + orders + "'])";
            db.exec("UPDATE customers SET balance = 0 WHERE id < 100");
            assertEquals("f", nothingWritten(c, s, run), "customers left out with balances changed only: the statement ran");
            db.exec("UPDATE customers SET rating = 2 WHERE id = 5");
            assertEquals("t", nothingWritten(c, s, run), "a rating read by the statement changed: it wrote nothing");
        }
    }

    @Test
    void aSourceWhoseChangesKeepMatteringIsJudgedOnlyNowAndThen() throws SQLException {
        String verdicts = "SELECT frontier -> 'judged' ->> pgtrickle.change_buffer('customers')::text FROM pgtrickle.pgt_stream_tables"
                + " WHERE pgt_name = 'by_region'";
        // balances only: judged every time, never mattering, and no statement runs
        for (int round = 1; round <= 3; round++) {
            db.exec("UPDATE customers SET balance = balance + 1 WHERE id <= 20");
            assertEquals(0, statementsRun(), "round " + round);
            assertEquals("[0, 0]", db.queryString(verdicts));
        }
        // ratings, which the stream table reads: judged twice, then passed over 16 times, then judged again
        for (int round = 1; round <= 20; round++) {
            db.exec("UPDATE customers SET rating = rating + 1 WHERE id <= 20");
            assertEquals(1, statementsRun(), "round " + round);
            db.assertEqualsItsQuery("by_region", "ratings, round " + round);
            String expected = round <= 2 ? "[" + round + ", 0]" : round <= 18 ? "[2, " + (round - 2) + "]" : "[3, " + (round - 19) + "]";
            assertEquals(expected, db.queryString(verdicts), "round " + round);
        }
        // passed over, balances only: the statement runs, finds nothing that matters and writes nothing
        db.exec("UPDATE customers SET balance = balance + 1 WHERE id <= 20");
        assertEquals(1, statementsRun());
        assertEquals(0, db.lastRefresh("by_region").inserted() + db.lastRefresh("by_region").deleted());
        db.assertEqualsItsQuery("by_region", "balances while passed over");
    }

    /** A stream table reading only customers' region, refreshed. */
    private void createPerRegion() throws SQLException {
        db.exec("SELECT pgtrickle.create_stream_table('per_region', 'SELECT region, count(*) AS n FROM customers GROUP BY region',"
                + " 'calculated', 'DIFFERENTIAL')");
        db.plan("per_region");
        db.exec("SELECT pgtrickle.refresh_stream_table('per_region')");
    }

    /** Refreshes by_region and returns how many differential statements (pgtrickle.execute_as_owner) it ran. */
    private long statementsRun() throws SQLException {
        try (Connection c = db.connect(); Statement s = c.createStatement()) {
            c.setAutoCommit(false);
            s.execute("SET LOCAL track_functions = 'pl'");
            String calls = "SELECT coalesce(pg_stat_get_xact_function_calls("
                    + "'pgtrickle.execute_as_owner(pgtrickle.pgt_stream_tables, text, pg_snapshot)'::regprocedure), 0)";
            long before = RefreshDatabase.row(s, calls)[0];
            s.execute("SELECT pgtrickle.refresh_stream_table('by_region')");
            long after = RefreshDatabase.row(s, calls)[0];
            c.commit();
            return after - before;
        }
    }

    /** The statement's fourth column: whether it wrote nothing, for the refresh to run it again with every term. */
    private static String nothingWritten(Connection c, Statement s, String run) throws SQLException {
        c.setAutoCommit(false);
        try {
            s.execute("SET LOCAL pgtrickle.refreshing = 'on'");
            try (ResultSet rs = s.executeQuery(run)) {
                rs.next();
                return rs.getString(4);
            }
        } finally {
            c.rollback();
            c.setAutoCommit(true);
        }
    }
}
