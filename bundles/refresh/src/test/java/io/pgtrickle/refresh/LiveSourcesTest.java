package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * A differential statement plans only the terms of the sources the refresh found changes in
 * ({@code $2}, DeltaPlanner.live), and a source that gains changes after that probe makes it
 * write nothing, so that the refresh runs it again with every term.
 */
class LiveSourcesTest {

    private RefreshDatabase db;

    @BeforeEach
    void setUp() throws SQLException {
        db = new RefreshDatabase("refresh_live");
        db.exec("CREATE TABLE a (k int PRIMARY KEY, v int NOT NULL)",
                "CREATE TABLE b (k int PRIMARY KEY, w int NOT NULL)",
                "INSERT INTO a SELECT i, i FROM generate_series(1, 50) i",
                "INSERT INTO b SELECT i, 10 * i FROM generate_series(1, 50) i",
                "SELECT pgtrickle.create_stream_table('ab', 'SELECT a.k, a.v, b.w FROM a JOIN b ON a.k = b.k', 'calculated')");
        db.plan("ab");
        db.exec("SELECT pgtrickle.refresh_stream_table('ab')", "SELECT pgtrickle.refresh_stream_table('ab')");
    }

    @AfterEach
    void tearDown() {
        db.close();
    }

    @Test
    void termsOfSourcesWithoutChangesAreNotPlanned() throws SQLException {
        db.exec("UPDATE a SET v = v + 1 WHERE k = 3");
        try (Connection c = db.connect(); Statement s = c.createStatement()) {
            s.execute("PREPARE delta(pg_snapshot, text[]) AS " + db.queryString("SELECT delta_sql FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'ab'"));
            String frontier = "'" + db.queryString("SELECT frontier ->> 'snapshot' FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'ab'") + "'";
            String bufferA = db.queryString("SELECT pgtrickle.change_buffer('a')::text");
            String bufferB = db.queryString("SELECT pgtrickle.change_buffer('b')::text");
            // the joins that apply the change to the stream table, and none of the terms'
            int apply = joins(s, "EXPLAIN EXECUTE delta(" + frontier + ", '{}')");
            assertEquals(apply + 3, joins(s, "EXPLAIN EXECUTE delta(" + frontier + ", NULL)"),
                    "unknown: every term planned, a's changes with b, a with b's changes, a's with b's");
            assertEquals(apply + 1, joins(s, "EXPLAIN EXECUTE delta(" + frontier + ", ARRAY['" + bufferA + "'])"), "a's term only");
            assertEquals(apply + 3, joins(s, "EXPLAIN EXECUTE delta(" + frontier + ", ARRAY['" + bufferA + "', '" + bufferB + "'])"));
        }
    }

    @Test
    void theProbeCountsEachSourcesChangesInOneCall() throws SQLException {
        String probe = "SELECT p.total || '|' || coalesce(p.counts::text, '-') || '|' || coalesce(p.buffers::text, '-')"
                + " FROM pgtrickle.pgt_stream_tables s, pgtrickle.pending_changes(s.pgt_id, (s.frontier ->> 'snapshot')::pg_snapshot) p"
                + " WHERE s.pgt_name = 'ab'";
        assertEquals("0|-|-", db.queryString(probe), "nothing past the frontier");
        db.exec("UPDATE a SET v = v + 1 WHERE k <= 3", "INSERT INTO b VALUES (51, 510)");
        String a = db.queryString("SELECT 'a'::regclass::oid::text");
        String b = db.queryString("SELECT 'b'::regclass::oid::text");
        assertEquals("7|{\"" + a + "\": 6, \"" + b + "\": 1}|" + db.queryString("SELECT array_agg(x ORDER BY x)::text FROM unnest(ARRAY["
                + "pgtrickle.change_buffer('a')::text, pgtrickle.change_buffer('b')::text]) x"), db.queryString(probe),
                "an update is two rows; the buffers with changes, as the differential statement's $2 names them");
        db.exec("SELECT pgtrickle.refresh_stream_table('ab')");
        assertEquals("0|-|-", db.queryString(probe));
    }

    /** How many joins a plan has. */
    private static int joins(Statement s, String explain) throws SQLException {
        int n = 0;
        try (ResultSet rs = s.executeQuery(explain)) {
            while (rs.next()) {
                n += rs.getString(1).matches("\\s*(->\\s*)?(Hash Join|Nested Loop|Merge Join).*") ? 1 : 0;
            }
        }
        return n;
    }

    @Test
    void aSourceThatGainsChangesAfterTheProbeIsNotMissed() throws Exception {
        // bob owns the stream table and lacks SELECT on b's buffer: the refresh grants it after its
        // probe, under an advisory lock this test holds while b changes
        db.exec("CREATE ROLE bob_" + db.name() + " NOSUPERUSER", "GRANT SELECT ON a, b TO bob_" + db.name(),
                "ALTER TABLE ab OWNER TO bob_" + db.name(), "GRANT USAGE ON SCHEMA pgtrickle_changes TO bob_" + db.name(),
                "SELECT pgtrickle.refresh_stream_table('ab')", "REVOKE SELECT ON " + db.queryString("SELECT pgtrickle.change_buffer('b')::text")
                        + " FROM bob_" + db.name());
        db.exec("UPDATE a SET v = v + 1 WHERE k BETWEEN 1 AND 5");
        long before = db.queryLong("SELECT coalesce(max(refresh_id), 0) FROM pgtrickle.pgt_refresh_history");
        try (Connection lock = db.connect(); Statement l = lock.createStatement()) {
            lock.setAutoCommit(false);
            l.execute("SELECT pg_advisory_xact_lock(hashtext('pgtrickle.grant_to_owner'))");
            CompletableFuture<Void> refresh = CompletableFuture.runAsync(() -> {
                try {
                    db.exec("SELECT pgtrickle.refresh_stream_table('ab')");
                } catch (SQLException e) {
                    throw new IllegalStateException(e);
                }
            });
            RefreshDatabase.await("the refresh waits for the grant, after its probe", () -> db.queryLong(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted") == 1);
            db.exec("UPDATE b SET w = w + 1 WHERE k BETWEEN 4 AND 8", "DELETE FROM b WHERE k = 9");
            lock.commit();
            refresh.get(60, TimeUnit.SECONDS);
        }
        RefreshDatabase.History h = db.lastRefresh("ab");
        assertTrue(h.refreshId() > before);
        assertEquals("DIFFERENTIAL", h.action(), "run again with every term, not recomputed");
        db.assertEqualsItsQuery("ab", "after a refresh whose probe missed b's changes");
        // rows 1-8 changed (a's 1-5, b's 4-8), each a delete and an insert; 9 deleted
        assertEquals(8, h.inserted());
        assertEquals(9, h.deleted());
    }
}
