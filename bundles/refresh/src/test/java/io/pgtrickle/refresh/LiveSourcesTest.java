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
    void termsOfSourcesWithoutChangesAreLeftOutOfTheStatementItRuns() throws SQLException {
        // five sources: beyond four, a small table's old state is its rows less its changes
        db.exec("CREATE TABLE c (k int PRIMARY KEY, x int NOT NULL)", "CREATE TABLE d (k int PRIMARY KEY, y int NOT NULL)",
                "CREATE TABLE e (k int PRIMARY KEY, z int NOT NULL)",
                "INSERT INTO c SELECT i, i FROM generate_series(1, 50) i", "INSERT INTO d SELECT i, i FROM generate_series(1, 50) i",
                "INSERT INTO e SELECT i, i FROM generate_series(1, 50) i", "ANALYZE a, b, c, d, e");
        db.createDifferential("abcde", "SELECT a.k, a.v, b.w, c.x, d.y, e.z FROM a JOIN b ON a.k = b.k JOIN c ON c.k = a.k"
                + " JOIN d ON d.k = a.k JOIN e ON e.k = a.k");
        String delta = db.queryString("SELECT delta_sql FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'abcde'");
        String a = db.queryString("SELECT pgtrickle.change_buffer('a')::text");
        String b = db.queryString("SELECT pgtrickle.change_buffer('b')::text");
        String e = db.queryString("SELECT pgtrickle.change_buffer('e')::text");
        int all = legs(delta);
        assertEquals(16, all, "a term per combination of the four read by index (15), and e's changes");
        assertEquals(all, legs(render(delta, null)), "not knowing which sources changed: every term");
        assertEquals(1, legs(render(delta, a)), "a's changes only: its term");
        assertEquals(3, legs(render(delta, a, b)), "a's, b's, and both joined");
        assertEquals(2, legs(render(delta, e)), "e's changes, and the first term, which always stays and its gate excludes");
        assertEquals(1, legs(render(delta)), "nothing changed: one term stays (a union is never empty), excluded by its gate");
        // the CTE of e's changes (__pgt_dN AS MATERIALIZED (... FROM <e's buffer> b WHERE ...)
        String eChanges = "-__pgt_w FROM " + delta.substring(delta.lastIndexOf("__pgt_d", delta.indexOf(e + " b WHERE"))).split(" ")[0];
        assertTrue(delta.contains(eChanges), "e's old state is its rows less its changes: " + eChanges);
        assertTrue(!render(delta, a).contains(eChanges), "and, without changes of e, its rows");
        assertTrue(render(delta, a, e).contains(eChanges));

        // a refresh runs the statement without them: with changes of a only, e's changes are read by
        // the probe and the statement's checks that no source it left out has a TRUNCATE or changes
        // that matter to it, not by an old state
        db.exec("SELECT pgtrickle.refresh_stream_table('abcde')", "UPDATE a SET v = v + 1 WHERE k = 1");
        String bufferE = e.substring(e.indexOf('.') + 1);
        try (Connection c = db.connect(); Statement st = c.createStatement()) {
            c.setAutoCommit(false);
            String scans = "SELECT coalesce(sum(seq_scan + idx_scan), 0) FROM pg_stat_xact_user_tables WHERE relname = '" + bufferE + "'";
            long before = RefreshDatabase.row(st, scans)[0];
            st.execute("SELECT pgtrickle.refresh_stream_table('abcde')");
            assertEquals(3, RefreshDatabase.row(st, scans)[0] - before, "scans of e's buffer");
            c.commit();
        }
        db.assertEqualsItsQuery("abcde", "a's change");

        // each refresh runs the statement without the terms of what did not change, and is right
        String[] rounds = {"UPDATE a SET v = v + 1 WHERE k <= 3", "UPDATE e SET z = z + 1 WHERE k BETWEEN 2 AND 6",
            "UPDATE b SET w = w + 1 WHERE k = 7; DELETE FROM e WHERE k = 8; UPDATE a SET v = -v WHERE k = 7", "DELETE FROM c WHERE k > 45"};
        for (String round : rounds) {
            db.exec(round.split("; "));
            db.exec("SELECT pgtrickle.refresh_stream_table('abcde')");
            assertEquals("DIFFERENTIAL", db.lastRefresh("abcde").action(), round);
            db.assertEqualsItsQuery("abcde", round);
        }
    }

    /**
     * Whether a refresh's window holds a TRUNCATE marker is answered by the buffer's partial index
     * of markers, not by reading the window once more; and a marker is still found there.
     */
    @Test
    void theStatementFindsTruncationMarkersByTheirIndex() throws SQLException {
        db.createDifferential("ab_diff", "SELECT a.k, a.v, b.w FROM a JOIN b ON a.k = b.k");
        db.exec("INSERT INTO a SELECT i, i FROM generate_series(51, 3050) i", "INSERT INTO b SELECT i, i FROM generate_series(51, 3050) i");
        String buffer = db.queryString("SELECT pgtrickle.change_buffer('a')::text");
        String markers = buffer.substring(buffer.indexOf('.') + 1) + "_truncated_idx";
        try (Connection c = db.connect(); Statement st = c.createStatement()) {
            c.setAutoCommit(false);
            String uses = "SELECT pg_stat_get_xact_numscans('pgtrickle_changes." + markers + "'::regclass)";
            long before = RefreshDatabase.row(st, uses)[0];
            st.execute("SELECT pgtrickle.refresh_stream_table('ab_diff')");
            assertTrue(RefreshDatabase.row(st, uses)[0] - before >= 1, "the markers were asked of " + markers);
            c.commit();
        }
        assertEquals("DIFFERENTIAL", db.lastRefresh("ab_diff").action());
        db.assertEqualsItsQuery("ab_diff", "3,000 rows more");
        db.exec("INSERT INTO a VALUES (5000, 5000)", "TRUNCATE b", "INSERT INTO b VALUES (5000, 1)");
        db.exec("SELECT pgtrickle.refresh_stream_table('ab_diff')");
        assertEquals("FULL", db.lastRefresh("ab_diff").action(), "the marker in the window was found");
        db.assertEqualsItsQuery("ab_diff", "b truncated");
    }

    @Test
    void liveLegsLeavesOutTheMarkedPiecesWhoseBuffersHaveNoChanges() throws SQLException {
        String s = "/*pgt:marks*/1/*pgt:live x,y;*/2/*pgt:live z;*/3/*pgt:end*/4/*pgt:end*/5/*pgt:live ;p,q*/6/*pgt:end*/7";
        assertEquals("1234567", db.queryString("SELECT pgtrickle.live_legs(?, '{x,y,z,p}')", s), "all live");
        assertEquals(s, db.queryString("SELECT pgtrickle.live_legs(?, NULL)", s), "not known: the statement as it is");
        assertEquals("12457", db.queryString("SELECT pgtrickle.live_legs(?, '{x,y}')", s), "z dead inside a live piece; neither p nor q");
        assertEquals("1567", db.queryString("SELECT pgtrickle.live_legs(?, '{x,z,q}')", s), "y dead: the piece and what it holds");
        assertEquals("1567", db.queryString("SELECT pgtrickle.live_legs(?, '{z,q}')", s), "one of p, q is enough");
        assertEquals("157", db.queryString("SELECT pgtrickle.live_legs(?, '{}')", s));
        assertEquals("SELECT 1", db.queryString("SELECT pgtrickle.live_legs('SELECT 1', '{}')"), "no marks");
        String unmarked = s.substring("/*pgt:marks*/".length());
        assertEquals(unmarked, db.queryString("SELECT pgtrickle.live_legs(?, '{}')", unmarked), "marks count only in a statement the planner marked");
        assertEquals(null, db.queryString("SELECT pgtrickle.live_legs(NULL, '{x}')"));
        for (String[] bad : new String[][] {{"/*pgt:marks*/1/*pgt:end*/2", "malformed mark /*pgt:end*/2"},
                {"/*pgt:marks*/1/*pgt:live x*/2/*pgt:end*/", "malformed mark /*pgt:live x*/2"},
                {"/*pgt:marks*/1/*pgt:other*/2", "malformed mark /*pgt:other*/2"},
                {"/*pgt:marks*/1/*pgt:live x;*/2", "1 mark(s) /*pgt:live ...*/ without their /*pgt:end*/"}}) {
            SQLException e = org.junit.jupiter.api.Assertions.assertThrows(SQLException.class,
                    () -> db.queryString("SELECT pgtrickle.live_legs(?, '{x}')", bad[0]), bad[0]);
            assertTrue(e.getMessage().contains(bad[1]), e.getMessage());
        }
    }

    @Test
    void aQueryWhoseTextHasSuchAMarkGetsAStatementWithoutMarks() throws SQLException {
        db.createDifferential("marked", "SELECT a.k, b.w, '/*pgt:end*/' AS tag FROM a JOIN b ON a.k = b.k");
        String delta = db.queryString("SELECT delta_sql FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'marked'");
        assertTrue(!delta.contains("/*pgt:live"), "no marks of the planner's");
        db.exec("SELECT pgtrickle.refresh_stream_table('marked')", "UPDATE a SET v = v + 1, k = k + 100 WHERE k <= 3",
                "SELECT pgtrickle.refresh_stream_table('marked')");
        assertEquals("DIFFERENTIAL", db.lastRefresh("marked").action());
        db.assertEqualsItsQuery("marked", "after a refresh");
    }

    private String render(String delta, String... live) throws SQLException {
        try (Connection c = db.connect(); java.sql.PreparedStatement ps = c.prepareStatement("SELECT pgtrickle.live_legs(?, ?)")) {
            ps.setString(1, delta);
            ps.setArray(2, live == null ? null : c.createArrayOf("text", live));
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                return rs.getString(1);
            }
        }
    }

    /** How many terms (legs of a union of changes) a statement has. */
    private static int legs(String statement) {
        return statement.split("\\) __pgt_t\\(", -1).length - 1;
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
        assertEquals(db.queryString("SELECT pgtrickle.change_buffer('a')::text"), db.queryString("SELECT array_to_string(p.balanced, ',')"
                + " FROM pgtrickle.pgt_stream_tables s, pgtrickle.pending_changes(s.pgt_id, (s.frontier ->> 'snapshot')::pg_snapshot) p"
                + " WHERE s.pgt_name = 'ab'"), "as many inserts as deletes (updates) in a's window only, the ones relevant_buffers judges");
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
