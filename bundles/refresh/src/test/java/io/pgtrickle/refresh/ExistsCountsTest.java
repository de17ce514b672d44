package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.SQLException;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * EXISTS, NOT EXISTS, IN and NOT IN over one table correlated by key equalities, whose keys no index
 * of that table leads with, read a derived table of the subquery's rows counted per key: a refresh looks
 * the changed keys up there, where it would count their rows in the table itself, which without
 * an index is a read of all of it. With such an index the table is read by it, as written.
 * (SublinksRandomizedTest runs both kinds round after round on tables without indexes.)
 */
class ExistsCountsTest {

    private RefreshDatabase db;

    @BeforeEach
    void setUp() throws SQLException {
        db = new RefreshDatabase("refresh_exists_counts");
        db.exec("CREATE TABLE c (id int PRIMARY KEY, region text NOT NULL)",
                "CREATE TABLE o (id int PRIMARY KEY, ck int, v int NOT NULL)",
                "INSERT INTO c SELECT i, 'r' || i % 5 FROM generate_series(1, 2000) i",
                "INSERT INTO o SELECT i, NULLIF(1 + i % 2000, 7), i % 1000 FROM generate_series(1, 50000) i",
                "ANALYZE c", "ANALYZE o");
    }

    @AfterEach
    void tearDown() {
        db.close();
    }

    @Test
    void existsWithoutAnIndexOnItsKeysReadsItsCountsNotTheTable() throws SQLException {
        String[][] stream = {
            {"big_buyers", "SELECT c.id, c.region FROM c WHERE EXISTS (SELECT FROM o WHERE o.ck = c.id AND o.v > 990)"},
            {"no_big_order", "SELECT c.region, count(*) AS n FROM c WHERE NOT EXISTS (SELECT 1 FROM o x WHERE x.ck = c.id AND x.v > 990)"
                    + " GROUP BY c.region"},
            {"in_big", "SELECT c.id FROM c WHERE c.id IN (SELECT o.ck FROM o WHERE o.v > 990)"},
            // one NULL among the tested values empties NOT IN: o.ck has NULLs (7), and some rows leave and come back
            {"not_in_big", "SELECT c.id, c.region FROM c WHERE c.id NOT IN (SELECT o.ck FROM o WHERE o.v > 985)"},
        };
        for (String[] st : stream) {
            db.createDifferential(st[0], st[1]);
            assertNotNull(db.derived(st[0]), st[0] + ": the subquery's rows are counted per key in a derived table");
        }
        // orders crossing the threshold both ways, a customer's last big order gone, one with a NULL key
        db.exec("UPDATE o SET v = 995 WHERE id % 997 = 0", "UPDATE o SET v = 10 WHERE ck = 12 AND v > 990",
                "DELETE FROM o WHERE ck = 13", "INSERT INTO o VALUES (60001, NULL, 999), (60002, 14, 999)");
        for (String[] st : stream) {
            assertEquals(0, db.refreshScanning(st[0], "o"), st[0] + ": the refresh did not read the orders");
            assertEquals("DIFFERENTIAL", db.lastRefresh(st[0]).action(), st[0]);
            db.assertEqualsItsQuery(st[0], "after the refresh");
        }
        // a FULL refresh refills the counts, and differential refreshes go on from them
        for (String[] st : stream) {
            db.refreshFullThenDifferential(st[0]);
        }
        db.exec("UPDATE o SET v = 999 WHERE ck = 12", "DELETE FROM o WHERE v > 990 AND ck < 100");
        for (String[] st : stream) {
            db.exec("SELECT pgtrickle.refresh_stream_table('" + st[0] + "')");
            db.assertEqualsItsQuery(st[0], "after a FULL refresh and more changes");
        }
    }

    @Test
    void existsWhoseKeysAnIndexFindsReadsTheTable() throws SQLException {
        db.exec("CREATE INDEX o_ck ON o (ck)");
        db.createDifferential("big_buyers", "SELECT c.id, c.region FROM c WHERE EXISTS (SELECT FROM o WHERE o.ck = c.id AND o.v > 990)");
        assertNull(db.derived("big_buyers"), "no derived table: the index finds a key's rows");
        // a correlation other than key equalities keeps the subquery as written too
        db.exec("DROP INDEX o_ck");
        db.createDifferential("other", "SELECT c.id FROM c WHERE EXISTS (SELECT FROM o WHERE o.ck = c.id AND o.v > c.id)");
        assertNull(db.derived("other"), "no derived table for a correlation that is not a key equality");
        db.exec("UPDATE o SET v = 995 WHERE id % 997 = 0");
        for (String st : new String[] {"big_buyers", "other"}) {
            assertTrue(db.refreshScanning(st, "o") > 0, st + ": the orders were read");
            db.assertEqualsItsQuery(st, "after the refresh");
        }
    }
}
