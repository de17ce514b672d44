package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.Connection;
import java.sql.Statement;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Derived tables (an aggregating subquery kept as a table of the stream table) beyond the
 * randomized rounds of {@link DerivedTablesRandomizedTest}: a writer that commits between the
 * derived table's statement and the stream table's, a FULL refresh refilling them, and their tables
 * going with the plan and with the stream table.
 */
class DerivedTablesTest {

    private static final String QUERY = "SELECT c.id, s.total FROM c JOIN (SELECT cust, sum(amount) AS total FROM o GROUP BY cust) s"
            + " ON s.cust = c.id";

    private RefreshDatabase db;

    @BeforeEach
    void setUp() throws Exception {
        db = new RefreshDatabase("derived_tables");
        db.exec("CREATE TABLE c (id int PRIMARY KEY, grp int)",
                "CREATE TABLE o (id int PRIMARY KEY, cust int, amount int)",
                "INSERT INTO c SELECT g, g % 3 FROM generate_series(1, 10) g",
                "INSERT INTO o SELECT g, g % 10 + 1, g FROM generate_series(1, 50) g");
        db.createDifferential("totals", QUERY);
    }

    @AfterEach
    void tearDown() throws Exception {
        db.close();
    }

    private long derivedTables() throws Exception {
        return db.queryLong("SELECT count(*) FROM pg_class WHERE relnamespace = 'pgtrickle_changes'::regnamespace"
                + " AND relkind = 'r' AND relname LIKE 'derived\\_' || ? || '\\_%'", db.pgtId("totals"));
    }

    /**
     * The derived table's statement and the stream table's run one after the other; a writer that
     * commits in between is in the second's snapshot only. The derived table keeps its own
     * frontier, so the next refresh brings it on, though the stream table's frontier has passed the
     * writer: a refresh reads from the oldest of them. The two snapshots need not agree on the
     * refresh's own transaction either (a frontier records it as in progress where it was seen).
     */
    @Test
    void aWriterCommittingBetweenTheTwoStatementsReachesTheStreamTableAtTheNextRefresh() throws Exception {
        db.exec("INSERT INTO o VALUES (100, 1, 1000)");
        try (Connection locker = db.connect(); Connection writer = db.connect(); Connection refresher = db.connect();
                Statement l = locker.createStatement(); Statement w = writer.createStatement()) {
            locker.setAutoCommit(false);
            writer.setAutoCommit(false);
            // the stream table's statement reads c; the derived table's does not
            l.execute("LOCK TABLE c IN ACCESS EXCLUSIVE MODE");
            w.execute("INSERT INTO o VALUES (101, 2, 5000)");
            int pid;
            try (Statement r = refresher.createStatement(); var rs = r.executeQuery("SELECT pg_backend_pid()")) {
                rs.next();
                pid = rs.getInt(1);
            }
            CompletableFuture<Void> refresh = CompletableFuture.runAsync(() -> {
                try (Statement r = refresher.createStatement()) {
                    r.execute("SELECT pgtrickle.refresh_stream_table('totals')");
                } catch (Exception e) {
                    throw new IllegalStateException(e);
                }
            });
            // until the refresh waits for c: its derived table's statement has run
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (db.queryLong("SELECT count(*) FROM pg_locks WHERE pid = ? AND NOT granted AND relation = 'c'::regclass", pid) == 0) {
                assertTrue(System.nanoTime() < deadline, "the refresh never waited for c");
                Thread.sleep(20);
            }
            writer.commit();
            // and one that began after the refresh did: its commit makes the stream table's snapshot
            // count the refresh's own transaction as committed, where the derived table's did not
            db.exec("INSERT INTO o VALUES (102, 3, 7)");
            locker.rollback();
            refresh.get(30, TimeUnit.SECONDS);
        }
        assertEquals("DIFFERENTIAL", db.lastRefresh("totals").action());
        db.exec("SELECT pgtrickle.refresh_stream_table('totals')");
        assertEquals("DIFFERENTIAL", db.lastRefresh("totals").action(), "the derived table was behind: not nothing to do");
        db.assertEqualsItsQuery("totals", "after the refresh that follows the writer");
        assertEquals(5000 + 1 + 11 + 21 + 31 + 41, db.queryLong("SELECT total FROM totals WHERE id = 2"));
    }

    @Test
    void aFullRefreshRefillsTheDerivedTableAndTheNextRefreshIsDifferentialAgain() throws Exception {
        db.exec("TRUNCATE o", "INSERT INTO o VALUES (1, 3, 7), (2, 3, 8), (3, 4, 1)",
                "SELECT pgtrickle.refresh_stream_table('totals')");
        assertEquals("FULL", db.lastRefresh("totals").action());
        db.assertEqualsItsQuery("totals", "after the FULL refresh");
        long id = db.pgtId("totals");
        assertEquals(2, db.queryLong("SELECT count(*) FROM pgtrickle_changes.derived_" + id + "_1"));
        // only a derived table's own statement records changes: a refill leaves its buffer empty
        assertEquals(0, db.queryLong("SELECT count(*) FROM pgtrickle_changes.derived_" + id + "_1_changes"));
        db.exec("UPDATE o SET amount = amount + 1 WHERE cust = 3", "SELECT pgtrickle.refresh_stream_table('totals')");
        assertEquals("DIFFERENTIAL", db.lastRefresh("totals").action());
        db.assertEqualsItsQuery("totals", "after the FULL refresh and a change");
        assertEquals(17, db.queryLong("SELECT total FROM totals WHERE id = 3"));
    }

    @Test
    void theDerivedTablesGoWithThePlanAndWithTheStreamTable() throws Exception {
        // its table, its buffer, its running totals, as the catalog lists them
        assertEquals(3, derivedTables());
        long id = db.pgtId("totals");
        assertEquals("pgtrickle_changes.derived_" + id + "_1|pgtrickle_changes.derived_" + id + "_1_changes|pgtrickle_changes.derived_"
                + id + "_1_state|1", db.queryString("SELECT concat_ws('|', derived -> 0 ->> 'table', derived -> 0 ->> 'buffer',"
                        + " derived -> 0 ->> 'state_table', jsonb_array_length(derived)) FROM pgtrickle.pgt_stream_tables WHERE pgt_id = ?", id));
        db.exec("SELECT pgtrickle.alter_stream_table('totals', query => 'SELECT c.id, c.grp FROM c')");
        assertEquals(0, derivedTables(), "a new query's plan has none");
        assertEquals(0, db.queryLong("SELECT count(derived) FROM pgtrickle.pgt_stream_tables WHERE pgt_id = ?", id));
        db.exec("SELECT pgtrickle.alter_stream_table('totals', query => $q$" + QUERY + "$q$)");
        db.plan("totals");
        assertEquals(3, derivedTables());
        db.exec("INSERT INTO o VALUES (200, 5, 1)", "SELECT pgtrickle.refresh_stream_table('totals')");
        assertEquals("DIFFERENTIAL", db.lastRefresh("totals").action());
        db.assertEqualsItsQuery("totals", "after ALTER back");
        db.exec("SELECT pgtrickle.drop_stream_table('totals')");
        assertEquals(0, db.queryLong("SELECT count(*) FROM pg_class WHERE relnamespace = 'pgtrickle_changes'::regnamespace"
                + " AND relname LIKE 'derived\\_%'"));
    }
}
