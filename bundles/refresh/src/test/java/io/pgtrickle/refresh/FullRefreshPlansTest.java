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
 * A refresh's statements are prepared once per session (pgtrickle.execute_statement): a FULL
 * refresh's, which takes no parameter, with its plan, which PostgreSQL makes again when what it
 * reads changes; a differential one parsed only, planned at every refresh for the window it
 * reads. The refreshes run in one session, {@link #session}, as the engine's pooled connections
 * run them.
 */
class FullRefreshPlansTest {

    private static final String PREPARED = "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'pgtrickle\\_once\\_%'";
    private static final String PARSED = "SELECT count(*) || ' ' || coalesce(sum(generic_plans), 0) || ' ' || coalesce(sum(custom_plans), 0)"
            + " FROM pg_prepared_statements WHERE name LIKE 'pgtrickle\\_each\\_%'";
    /** How many times the session ran the FULL statements from a plan it kept. */
    private static final String KEPT_PLANS = "SELECT coalesce(sum(generic_plans), 0) FROM pg_prepared_statements WHERE name LIKE 'pgtrickle\\_once\\_%'";

    private RefreshDatabase db;
    private Connection session;

    @BeforeEach
    void setUp() throws SQLException {
        db = new RefreshDatabase("refresh_full_plans");
        session = db.connect();
        db.exec("CREATE TABLE items (id int PRIMARY KEY, grp int NOT NULL, v numeric NOT NULL)",
                "INSERT INTO items SELECT i, i % 7, i / 3.0 FROM generate_series(1, 500) i", "ANALYZE items");
    }

    @AfterEach
    void tearDown() throws SQLException {
        session.close();
        db.close();
    }

    private void run(String... statements) throws SQLException {
        try (Statement s = session.createStatement()) {
            for (String statement : statements) {
                s.execute(statement);
            }
        }
    }

    private String sessionString(String query) throws SQLException {
        try (Statement s = session.createStatement(); ResultSet rs = s.executeQuery(query)) {
            rs.next();
            return rs.getString(1);
        }
    }

    private long sessionLong(String query) throws SQLException {
        try (Statement s = session.createStatement(); ResultSet rs = s.executeQuery(query)) {
            rs.next();
            return rs.getLong(1);
        }
    }

    @Test
    void aFullRefreshIsPlannedOncePerSession() throws SQLException {
        db.exec("SELECT pgtrickle.create_stream_table('per_group', 'SELECT grp, sum(v) AS total, count(*) AS n FROM items GROUP BY grp',"
                + " 'calculated', 'FULL')");
        for (int round = 1; round <= 4; round++) {
            db.exec("UPDATE items SET v = v + 1 WHERE id % 50 = " + round, "INSERT INTO items VALUES (" + (1000 + round) + ", 9, 1.50)");
            run("SELECT pgtrickle.refresh_stream_table('per_group')");
            assertEquals("FULL", db.lastRefresh("per_group").action());
            db.assertEqualsItsQuery("per_group", "round " + round);
        }
        assertEquals(1, sessionLong(PREPARED), "one statement prepared for the stream table");
        assertEquals(4, sessionLong(KEPT_PLANS), "every refresh ran it from the plan kept");
    }

    @Test
    void aStreamTableMadeAgainUnderTheSameNameIsPlannedAgain() throws SQLException {
        String create = "SELECT pgtrickle.create_stream_table('big_items', 'SELECT id, v FROM items WHERE v > 100', 'calculated', 'FULL')";
        run(create, "UPDATE items SET v = v + 1 WHERE id < 10", "SELECT pgtrickle.refresh_stream_table('big_items')");
        db.assertEqualsItsQuery("big_items", "first");
        // the same statement's text, another stream table and row index
        run("SELECT pgtrickle.drop_stream_table('big_items')", "ALTER TABLE items ADD COLUMN note text",
                "UPDATE items SET v = v * 2 WHERE id % 3 = 0", create,
                "UPDATE items SET v = v + 1 WHERE id > 400", "SELECT pgtrickle.refresh_stream_table('big_items')");
        assertEquals("FULL", db.lastRefresh("big_items").action());
        db.assertEqualsItsQuery("big_items", "made again, its source altered");
    }

    @Test
    void aSessionKeepsAtMostFiftyStatements() throws SQLException {
        for (int i = 0; i < 50; i++) {
            run(String.format("PREPARE pgtrickle_once_%03d AS SELECT %d", i, i));
        }
        run("SELECT pgtrickle.create_stream_table('per_group', 'SELECT grp, count(*) AS n FROM items GROUP BY grp', 'calculated', 'FULL')",
                "INSERT INTO items VALUES (2000, 3, 1)", "SELECT pgtrickle.refresh_stream_table('per_group')");
        db.assertEqualsItsQuery("per_group", "refreshed with fifty statements kept");
        assertEquals(50, sessionLong(PREPARED));
        assertEquals(0, sessionLong("SELECT count(*) FROM pg_prepared_statements WHERE name = 'pgtrickle_once_000'"),
                "the oldest plan went");
        assertEquals(1, sessionLong("SELECT count(*) FROM pg_prepared_statements WHERE name = 'pgtrickle_once_001'"));
    }

    @Test
    void aDifferentialStatementIsParsedOnceAndPlannedAtEveryRefresh() throws SQLException {
        db.exec("SELECT pgtrickle.create_stream_table('big_items', 'SELECT id, v FROM items WHERE v > 100', 'calculated', 'DIFFERENTIAL')");
        db.plan("big_items");
        // more than the 5 custom plans after which PostgreSQL may keep a generic one of its own accord
        for (int round = 1; round <= 8; round++) {
            run("UPDATE items SET v = v + 50 WHERE id % 40 = " + round, "SELECT pgtrickle.refresh_stream_table('big_items')");
            assertEquals("DIFFERENTIAL", db.lastRefresh("big_items").action());
            db.assertEqualsItsQuery("big_items", "round " + round);
        }
        assertEquals(0, sessionLong(PREPARED), "no plan kept for the differential statement");
        assertEquals("1 0 8", sessionString(PARSED), "one statement, planned at each of the 8 refreshes for its window");
    }

    @Test
    void theSessionListsWhatItPreparedAndMakesAgainWhatWentElsewhere() throws SQLException {
        db.exec("SELECT pgtrickle.create_stream_table('per_group', 'SELECT grp, count(*) AS n FROM items GROUP BY grp', 'calculated', 'FULL')");
        run("INSERT INTO items VALUES (3000, 1, 1)", "SELECT pgtrickle.refresh_stream_table('per_group')");
        String name = sessionString("SELECT name FROM pg_prepared_statements WHERE name LIKE 'pgtrickle\\_once\\_%'");
        assertEquals(name, sessionString("SELECT current_setting('pgtrickle.prepared_statements')"),
                "the name is listed, and later refreshes ask the list, not pg_prepared_statements");

        // gone behind the list's back: EXECUTE fails, and the refresh prepares it again
        run("DEALLOCATE ALL", "INSERT INTO items VALUES (3001, 2, 1)", "SELECT pgtrickle.refresh_stream_table('per_group')");
        assertEquals("FULL", db.lastRefresh("per_group").action());
        db.assertEqualsItsQuery("per_group", "after DEALLOCATE ALL");
        assertEquals(1, sessionLong(PREPARED));

        // prepared in a transaction that rolled back: the statement stays, the list does not; found, not prepared twice
        run("DEALLOCATE ALL", "SET pgtrickle.prepared_statements = ''", "INSERT INTO items VALUES (3002, 3, 1)",
                "BEGIN", "SELECT pgtrickle.refresh_stream_table('per_group')", "ROLLBACK");
        assertEquals("", sessionString("SELECT current_setting('pgtrickle.prepared_statements')"));
        assertEquals(1, sessionLong(PREPARED));
        run("SELECT pgtrickle.refresh_stream_table('per_group')");
        assertEquals("FULL", db.lastRefresh("per_group").action());
        db.assertEqualsItsQuery("per_group", "after a rolled back refresh");
        assertEquals(name, sessionString("SELECT current_setting('pgtrickle.prepared_statements')"));
    }

    @Test
    void theProbeIsPlannedOnceAndReadsTheBufferByItsIndex() throws SQLException {
        db.exec("SELECT pgtrickle.create_stream_table('big_items', 'SELECT id, v FROM items WHERE v > 100', 'calculated', 'DIFFERENTIAL')");
        db.plan("big_items");
        // a buffer whose statistics say it holds 2,000 rows (the refresh deletes them, the statistics stay)
        run("UPDATE items SET v = v + 1", "UPDATE items SET v = v + 1",
                "ANALYZE " + db.queryString("SELECT pgtrickle.change_buffer('items')::text"),
                "SELECT pgtrickle.refresh_stream_table('big_items')");
        assertEquals("DIFFERENTIAL", db.lastRefresh("big_items").action());
        String probes = "SELECT count(*) || ' ' || coalesce(sum(generic_plans), 0) || ' ' || coalesce(sum(custom_plans), 0)"
                + " FROM pg_prepared_statements WHERE name LIKE 'pgtrickle\\_pending\\_%'";
        for (int round = 1; round <= 3; round++) {
            run("SELECT pgtrickle.refresh_stream_table('big_items')");
            assertEquals("NO_DATA", db.lastRefresh("big_items").action(), "round " + round);
        }
        assertEquals("1 4 0", sessionString(probes), "one probe, run from one plan by this refresh and the three no-ops");
        String plan = sessionString("SELECT format('EXPLAIN (FORMAT JSON) EXECUTE %I(%L, NULL)', name, '1:1:') FROM pg_prepared_statements"
                + " WHERE name LIKE 'pgtrickle\\_pending\\_%'");
        run("SET plan_cache_mode = force_generic_plan");
        String kept = sessionString(plan);
        run("RESET plan_cache_mode");
        assertTrue(kept.contains("\"Index Name\""), "the plan kept reads the xid index: " + kept);

        // gone (DEALLOCATE ALL): prepared again; a change is counted by it
        run("DEALLOCATE ALL", "UPDATE items SET v = v + 1 WHERE id = 7", "SELECT pgtrickle.refresh_stream_table('big_items')");
        assertEquals("DIFFERENTIAL", db.lastRefresh("big_items").action());
        db.assertEqualsItsQuery("big_items", "after DEALLOCATE ALL");
        assertEquals("1 1 0", sessionString(probes));
    }
}
