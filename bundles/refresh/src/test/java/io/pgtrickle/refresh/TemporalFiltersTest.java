package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Temporal filters (the engine's TemporalFilters): a comparison of a row's value with the
 * transaction's clock, AND-ed in WHERE, is maintained differentially. Rows leave (and enter) the
 * result as the clock moves, with no write; each refresh moves the clock's one-row derived table to
 * its transaction's time and removes (adds) the rows the move swept, found by their value's range.
 * Compared with the query in the refresh's own transaction, where now() is the refresh's clock.
 *
 * <p>Reproduce a failure with {@code -Dpgtrickle.test.seed=<seed>} (see {@link RandomizedRefreshTest}).
 */
class TemporalFiltersTest {

    private RefreshDatabase db;

    @BeforeEach
    void setUp() throws SQLException {
        db = new RefreshDatabase("refresh_temporal");
        db.exec("CREATE TABLE events (id int PRIMARY KEY, ts timestamptz NOT NULL, day date NOT NULL, v numeric(10,2) NOT NULL)",
                "CREATE INDEX events_ts ON events (ts)",
                "CREATE TABLE kinds (v int PRIMARY KEY, label text NOT NULL)",
                "INSERT INTO kinds SELECT i, CASE WHEN i % 7 = 0 THEN 'x' ELSE 'k' || i END FROM generate_series(0, 99) i",
                // old rows, far outside every window
                "INSERT INTO events SELECT i, now() - interval '3 days' - i * interval '1 second', current_date - 30, i % 100"
                        + " FROM generate_series(1, 20000) i",
                "ANALYZE events");
    }

    @AfterEach
    void tearDown() {
        db.close();
    }

    @Test
    void rowsLeaveAndEnterTheResultAsTheClockMovesRefreshedDifferentially() throws Exception {
        String[][] stream = {
            {"recent", "SELECT id, v FROM events WHERE ts > now() - interval '1 second'"},
            // rows dated ahead enter as the clock reaches them; the clock on the left
            {"arrived", "SELECT id, ts FROM events WHERE now() >= ts AND v > 50"},
            {"recent_totals", "SELECT count(*) AS n, sum(v) AS total FROM events WHERE ts >= CURRENT_TIMESTAMP - interval '800 milliseconds'"},
            {"recent_per_value", "SELECT v, count(*) AS n FROM events WHERE ts > transaction_timestamp() - interval '1 second' GROUP BY v"},
            {"this_week", "SELECT id, day FROM events WHERE day > CURRENT_DATE - 7 AND v < 30"},
            // equality: no range, the rows of the old and the new day
            {"today", "SELECT id FROM events WHERE ts::date = CURRENT_DATE AND v < 10"},
            {"local", "SELECT id, v FROM events WHERE ts::timestamp < LOCALTIMESTAMP AND v > 95"},
            // a window between two clocks (BETWEEN is two comparisons), over a join, beside EXISTS, in an inlined subquery
            {"between", "SELECT id FROM events WHERE ts BETWEEN now() - interval '1500 milliseconds' AND now() - interval '200 milliseconds'"},
            {"joined", "SELECT e.id, k.label FROM events e JOIN kinds k ON k.v = e.v WHERE e.ts > now() - interval '1 second'"},
            {"with_exists", "SELECT e.id FROM events e WHERE e.ts > now() - interval '1200 milliseconds'"
                    + " AND EXISTS (SELECT FROM kinds k WHERE k.v = e.v AND k.label <> 'x')"},
            {"inlined", "SELECT r.id, r.v FROM (SELECT id, v, ts FROM events WHERE ts > now() - interval '900 milliseconds') r WHERE r.v % 2 = 0"},
            {"outer_joined", "SELECT e.id, k.label FROM events e LEFT JOIN kinds k ON k.v = e.v AND k.label <> 'x'"
                    + " WHERE e.ts > now() - interval '1 second'"},
        };
        for (String[] st : stream) {
            db.createDifferential(st[0], st[1]);
            assertEquals("the query reads the current time (" + (st[1].contains("now()") ? "now()" : st[1].contains("transaction_timestamp")
                    ? "transaction_timestamp()" : "CURRENT_DATE, CURRENT_TIME, LOCALTIMESTAMP or the like") + ")",
                    db.queryString("SELECT recompute_reason FROM pgtrickle.explain_refresh_mode(?)", st[0]),
                    st[0] + ": its result still moves without its sources");
            assertNotNull(db.derived(st[0]), st[0] + ": the clock is a derived table");
            // the stored rows are of the clock at their refresh: the first refresh after planning fills the clock with them
            assertEquals("FULL", refreshAndCompare(st[0], st[1], "the first refresh after planning"), st[0]);
        }
        long seed = RandomizedRefreshTest.seed("TemporalFiltersTest");
        Random rnd = new Random(seed);
        int next = 100000;
        for (int round = 1; round <= 12; round++) {
            List<String> log = new ArrayList<>();
            // rows about to leave, just arrived, dated ahead; moved, deleted
            for (int k = 0; k < 4; k++) {
                int offset = rnd.nextInt(2400) - 1800;
                log.add("INSERT INTO events VALUES (" + next++ + ", clock_timestamp() + interval '" + offset + " milliseconds', current_date - "
                        + rnd.nextInt(10) + ", " + rnd.nextInt(100) + ")");
            }
            log.add("UPDATE events SET ts = clock_timestamp() + interval '" + (rnd.nextInt(1500) - 1000) + " milliseconds'"
                    + " WHERE id IN (SELECT id FROM events WHERE id >= 100000 ORDER BY id LIMIT 1 OFFSET " + rnd.nextInt(3 * round) + ")");
            log.add("DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id >= 100000 ORDER BY id DESC LIMIT 1 OFFSET "
                    + rnd.nextInt(3 * round) + ")");
            if (round % 4 == 2) {
                log.add("UPDATE kinds SET label = CASE WHEN label = 'x' THEN 'k' ELSE 'x' END WHERE v = " + rnd.nextInt(100));
            }
            if (round % 3 == 0) {
                log.clear(); // a round with no write at all: only the clock moves
            }
            db.exec(log.toArray(String[]::new));
            Thread.sleep(150 + rnd.nextInt(250));
            for (String[] st : stream) {
                assertEquals("DIFFERENTIAL", refreshAndCompare(st[0], st[1], "seed=" + seed + " round=" + round + " " + log),
                        st[0] + " seed=" + seed + " round=" + round);
            }
        }
        // planned again (after a time in FULL mode): the FULL refresh that fills the clock sets it as its own statement
        // read it, and differential refreshes go on from there
        for (String[] st : stream) {
            db.refreshFullThenDifferential(st[0]);
            assertEquals("FULL", refreshAndCompare(st[0], st[1], "the first refresh of the new plan"), st[0]);
        }
        Thread.sleep(300);
        db.exec("INSERT INTO events VALUES (" + next + ", clock_timestamp() - interval '700 milliseconds', current_date, 60)");
        Thread.sleep(400);
        for (String[] st : stream) {
            assertEquals("DIFFERENTIAL", refreshAndCompare(st[0], st[1], "after a FULL refresh"), st[0]);
        }
    }

    @Test
    void aDifferentialRefreshModeIsAcceptedForATemporalFilter() throws Exception {
        db.exec("SELECT pgtrickle.create_stream_table('asked', $q$SELECT id FROM events WHERE ts > now() - interval '1 hour'$q$,"
                + " 'calculated', 'DIFFERENTIAL')");
        db.plan("asked");
        assertEquals("DIFFERENTIAL|DIFFERENTIAL|", db.queryString("SELECT configured_mode || '|' || effective_mode || '|' || coalesce(downgrade_reason, '')"
                + " FROM pgtrickle.explain_refresh_mode('asked')"));
    }

    @Test
    void expiredRowsAreFoundByTheirRangeNotByReadingTheTable() throws Exception {
        db.createDifferential("recent", "SELECT id, v FROM events WHERE ts > now() - interval '1 second'");
        db.exec("INSERT INTO events SELECT i, clock_timestamp() - interval '500 milliseconds', current_date, 1 FROM generate_series(100001, 100005) i");
        refreshAndCompare("recent", "SELECT id, v FROM events WHERE ts > now() - interval '1 second'", "the rows in");
        assertEquals(5, db.queryLong("SELECT count(*) FROM recent"));
        Thread.sleep(700);
        try (Connection c = db.connect(); Statement s = c.createStatement()) {
            c.setAutoCommit(false);
            String counters = "SELECT seq_tup_read, coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables WHERE relname = 'events'";
            long[] before = RefreshDatabase.row(s, counters);
            s.execute("SELECT pgtrickle.refresh_stream_table('recent')");
            long[] after = RefreshDatabase.row(s, counters);
            c.commit();
            assertEquals(0, after[0] - before[0], "no row of events read by a scan of the table");
            assertTrue(after[1] - before[1] <= 20, "the expired rows fetched by the index on ts: " + (after[1] - before[1]));
        }
        RefreshDatabase.History last = db.lastRefresh("recent");
        assertEquals("DIFFERENTIAL", last.action(), "no source changed: the clock did");
        assertEquals(5, last.deleted(), "the five rows left the window");
        assertEquals(0, db.queryLong("SELECT count(*) FROM recent"));
    }

    @Test
    void theClockAnywhereElseKeepsTheQueryRecomputedWithTheReason() throws Exception {
        db.exec("SELECT pgtrickle.create_stream_table('ages', $q$SELECT id, now() - ts AS age FROM events WHERE v = 1$q$, 'calculated')",
                "SELECT pgtrickle.create_stream_table('stamped', $q$SELECT id FROM events WHERE ts < statement_timestamp() AND v = 1$q$, 'calculated')");
        db.plan("ages");
        db.plan("stamped");
        String ages = db.queryString("SELECT effective_mode || '|' || downgrade_reason FROM pgtrickle.explain_refresh_mode('ages')");
        assertTrue(ages.startsWith("FULL|the query reads the current time (now()) other than in a comparison AND-ed in its WHERE"), ages);
        assertEquals("FULL|the query reads the current time (statement_timestamp())",
                db.queryString("SELECT effective_mode || '|' || downgrade_reason FROM pgtrickle.explain_refresh_mode('stamped')"));
        for (String st : List.of("ages", "stamped")) {
            db.exec("SELECT pgtrickle.refresh_stream_table('" + st + "')");
            assertEquals("FULL", db.lastRefresh(st).action(), st + ": recomputed, never skipped");
        }
    }

    /**
     * Refreshes the stream table and compares it with its query by value and by text, in one
     * transaction (so now() is the refresh's); returns the refresh's action.
     */
    private String refreshAndCompare(String st, String query, String ctx) throws SQLException {
        try (Connection c = db.connect(); Statement s = c.createStatement()) {
            c.setAutoCommit(false);
            s.execute("SELECT pgtrickle.refresh_stream_table('" + st + "')");
            String action = one(s, "SELECT action FROM pgtrickle.get_refresh_history('" + st + "', 1)");
            String byValue = "SELECT count(*) FROM ((TABLE " + st + " EXCEPT ALL (" + query + ")) UNION ALL ((" + query + ") EXCEPT ALL TABLE "
                    + st + ")) d";
            String stored = "SELECT ROW(t.*)::text FROM " + st + " t";
            String fresh = "SELECT ROW(q.*)::text FROM (" + query + ") q";
            String byText = "SELECT count(*) FROM ((" + stored + " EXCEPT ALL " + fresh + ") UNION ALL (" + fresh + " EXCEPT ALL " + stored + ")) d";
            String value = one(s, byValue);
            String text = one(s, byText);
            String shown = "0".equals(value) && "0".equals(text) ? ""
                    : " stored " + one(s, "SELECT string_agg(ROW(t.*)::text, ' ' ORDER BY ROW(t.*)::text) FROM " + st + " t")
                            + " vs query " + one(s, "SELECT string_agg(ROW(q.*)::text, ' ' ORDER BY ROW(q.*)::text) FROM (" + query + ") q");
            c.commit();
            assertEquals("0", value, ctx + ": " + st + " differs from its query by value" + shown);
            assertEquals("0", text, ctx + ": " + st + " differs from its query by text" + shown);
            return action;
        }
    }

    private static String one(Statement s, String sql) throws SQLException {
        try (ResultSet rs = s.executeQuery(sql)) {
            return rs.next() ? rs.getString(1) : null;
        }
    }
}
