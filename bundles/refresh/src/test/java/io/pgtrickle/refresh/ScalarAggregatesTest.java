package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;

import java.sql.SQLException;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * An uncorrelated scalar subquery that aggregates, compared in the query's WHERE, reads a one-row
 * derived table of its value: a refresh takes the value now and at the frontier from there, where
 * it aggregated the subquery's table twice (now, and as it was) and again in the terms that
 * evaluate the condition. (SublinksRandomizedTest runs such queries round after round.)
 */
class ScalarAggregatesTest {

    private RefreshDatabase db;

    @BeforeEach
    void setUp() throws SQLException {
        db = new RefreshDatabase("refresh_scalar_aggregates");
        db.exec("CREATE TABLE c (id int PRIMARY KEY, region text NOT NULL, bal numeric(12,2) NOT NULL)",
                "CREATE TABLE o (id int PRIMARY KEY, ck int NOT NULL, v int NOT NULL)",
                "CREATE INDEX o_ck ON o (ck)",
                "CREATE TABLE p (id int PRIMARY KEY, w int)",
                "INSERT INTO c SELECT i, 'r' || i % 5, (i * 37 % 2000) - 500 FROM generate_series(1, 3000) i",
                "INSERT INTO o SELECT i, 1 + i * 7 % 2000, i % 1000 FROM generate_series(1, 20000) i",
                "INSERT INTO p SELECT i, i % 50 FROM generate_series(1, 40) i",
                "ANALYZE c", "ANALYZE o", "ANALYZE p");
    }

    @AfterEach
    void tearDown() {
        db.close();
    }

    @Test
    void aComparisonWithAnAggregateReadsItsValueFromADerivedTable() throws SQLException {
        String[][] stream = {
            // TPC-H Q22's shape: the same table outside and inside, and a NOT EXISTS beside it
            {"richer_than_average", "SELECT c.id, c.region FROM c WHERE c.bal > (SELECT avg(x.bal) FROM c x WHERE x.bal > 0)"
                    + " AND NOT EXISTS (SELECT FROM o WHERE o.ck = c.id)"},
            {"richer_per_region", "SELECT c.region, count(*) AS n, sum(c.bal) AS total FROM c"
                    + " WHERE c.bal > (SELECT avg(x.bal) FROM c x WHERE x.bal > 0) GROUP BY c.region"},
            // over a join, in an expression
            {"near_the_top", "SELECT o.id, o.v FROM o WHERE o.v > (SELECT avg(o2.v) + 400 FROM o o2 JOIN c ON c.id = o2.ck WHERE c.region = 'r1')"},
            // count is 0, not NULL, over no rows
            {"against_a_count", "SELECT p.id FROM p WHERE p.w + 2 >= (SELECT count(*) FROM p q WHERE q.w > 40)"},
        };
        for (String[] st : stream) {
            db.createDifferential(st[0], st[1]);
            assertNotNull(db.derived(st[0]), st[0] + ": the subquery's value is a derived table");
            db.assertEqualsItsQuery(st[0], "after the first fill");
        }
        db.exec("UPDATE c SET bal = bal + 400 WHERE id % 97 = 0", "UPDATE c SET bal = -1 WHERE id % 89 = 0",
                "DELETE FROM o WHERE ck % 101 = 0", "UPDATE o SET v = 999 WHERE id % 503 = 0",
                "INSERT INTO c VALUES (5001, 'r1', 1999.99)", "UPDATE p SET w = 45 WHERE id < 5");
        for (String[] st : stream) {
            db.exec("SELECT pgtrickle.refresh_stream_table('" + st[0] + "')");
            assertEquals("DIFFERENTIAL", db.lastRefresh(st[0]).action(), st[0]);
            db.assertEqualsItsQuery(st[0], "after the refresh");
        }
        // every row of the subquery's tables gone, and back
        db.exec("DELETE FROM p WHERE w > 40", "UPDATE c SET bal = -bal WHERE bal > 0");
        for (String[] st : stream) {
            db.exec("SELECT pgtrickle.refresh_stream_table('" + st[0] + "')");
            db.assertEqualsItsQuery(st[0], "with the subquery's rows gone");
        }
        db.exec("UPDATE c SET bal = -bal WHERE bal < 0", "INSERT INTO p VALUES (41, 49), (42, 48), (43, 47)");
        for (String[] st : stream) {
            db.exec("SELECT pgtrickle.refresh_stream_table('" + st[0] + "')");
            db.assertEqualsItsQuery(st[0], "with them back");
        }
        // a FULL refresh refills the value, and differential refreshes go on from it
        for (String[] st : stream) {
            db.refreshFullThenDifferential(st[0]);
        }
        db.exec("UPDATE c SET bal = bal - 100 WHERE id % 7 = 0", "UPDATE p SET w = 49 WHERE id = 10");
        for (String[] st : stream) {
            db.exec("SELECT pgtrickle.refresh_stream_table('" + st[0] + "')");
            assertEquals("DIFFERENTIAL", db.lastRefresh(st[0]).action(), st[0]);
            db.assertEqualsItsQuery(st[0], "after a FULL refresh and more changes");
        }
    }

    @Test
    void theSubquerysTableIsReadOnlyWhereTheValueMovedPastRows() throws SQLException {
        db.createDifferential("richer", "SELECT c.id, c.region FROM c WHERE c.bal > (SELECT avg(x.bal) FROM c x WHERE x.bal > 0)");
        // a change the subquery filters out leaves its value: c is not read at all
        db.exec("UPDATE c SET region = 'r9' WHERE id IN (SELECT id FROM c WHERE bal <= 0 LIMIT 1)");
        assertEquals(0, db.refreshScanning("richer", "c"), "the value did not move: only the changes were read");
        db.assertEqualsItsQuery("richer", "after a change the subquery does not see");
        // one that moves it: c is read once, for the rows between the old and the new value
        db.exec("UPDATE c SET bal = bal + 1000 WHERE id = 11");
        assertEquals(1, db.refreshScanning("richer", "c"), "one read of c: the rows the value moved past");
        db.assertEqualsItsQuery("richer", "after a change that moved the average");
    }

    @Test
    void aCorrelatedScalarOrOneWithoutRunningTotalsStaysAsWritten() throws SQLException {
        db.createDifferential("above_own", "SELECT o.id FROM o WHERE o.v > (SELECT avg(o2.v) FROM o o2 WHERE o2.ck = o.ck)");
        assertNull(db.derived("above_own"), "a correlated subquery is not one value");
        // max without GROUP BY has no running total: its derived table would be refused, and with it the query
        db.createDifferential("near_the_top", "SELECT o.id FROM o WHERE o.v > (SELECT max(o2.v) - 3 FROM o o2)");
        assertNull(db.derived("near_the_top"), "max over all rows stays a subquery");
        db.exec("UPDATE o SET v = 0 WHERE id % 333 = 0", "UPDATE o SET v = 1200 WHERE id = 5");
        for (String st : new String[] {"above_own", "near_the_top"}) {
            db.exec("SELECT pgtrickle.refresh_stream_table('" + st + "')");
            assertEquals("DIFFERENTIAL", db.lastRefresh(st).action(), st);
            db.assertEqualsItsQuery(st, "after the refresh");
        }
    }
}
