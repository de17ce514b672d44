package io.pgtrickle.refresh;

import static io.pgtrickle.refresh.RefreshDatabase.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * A commit wakes the scheduler between its ticks (pg_trickle.wake_interval_ms), and 'calculated' is
 * the default schedule: a default stream table follows its source within moments of a commit. The
 * scheduler interval here is ten minutes, so only the wake can explain a refresh after the first tick.
 */
class WakeTest {

    private static final long TEN_MINUTES_MS = 600_000;

    private RefreshDatabase db;
    private RefreshEngine engine;

    @BeforeEach
    void setUp() throws Exception {
        db = new RefreshDatabase("refresh_wake");
        db.exec("CREATE TABLE src (id int PRIMARY KEY, v int NOT NULL)",
                "INSERT INTO src SELECT g, g FROM generate_series(1, 10) g",
                "SELECT pgtrickle.create_stream_table('st', 'SELECT id, v FROM src WHERE v > 5')");
    }

    @AfterEach
    void tearDown() {
        if (engine != null) {
            engine.close();
        }
        db.close();
    }

    private void startAndAwaitPlan(long wakeIntervalMs) throws Exception {
        engine = new RefreshEngine(db.dataSource(), new EngineSettings(TEN_MINUTES_MS, 2, 3, 0, wakeIntervalMs), new Listeners());
        engine.start();
        // the first tick, at once, plans the stream table
        await("the first tick plans st", () -> db.queryLong("SELECT count(*) FROM pgtrickle.pgt_stream_tables WHERE delta_sql IS NOT NULL") == 1);
    }

    @Test
    void aCommitWakesTheSchedulerAndTheDefaultScheduleFollowsIt() throws Exception {
        assertEquals("calculated", db.queryString("SELECT schedule FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'st'"));
        startAndAwaitPlan(EngineSettings.DEFAULT_WAKE_INTERVAL_MS);
        for (int i = 0; i < 3; i++) {
            db.exec("INSERT INTO src VALUES (" + (100 + i) + ", 50)");
            int expected = 6 + i;
            await("st has the row inserted " + i, () -> db.queryLong("SELECT count(*) FROM st") == expected);
        }
        assertEquals(0, db.difference("st"));
        assertEquals(3, db.queryLong("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE action = 'DIFFERENTIAL'"
                + " AND initiated_by = 'SCHEDULER' AND rows_inserted = 1"), "one differential refresh per commit, by the scheduler");
    }

    /**
     * The wake waits in the database (pgtrickle.await_snapshot_change) rather than asking every wake
     * interval: the call returns once a transaction completes, with the snapshot that shows it.
     */
    @Test
    void theWakeWaitsInTheDatabaseUntilACommit() throws Exception {
        String since;
        java.util.concurrent.CompletableFuture<String> seen;
        for (int attempt = 1; ; attempt++) {
            String from = db.queryString("SELECT pg_current_snapshot()::text");
            java.util.concurrent.CompletableFuture<String> call = java.util.concurrent.CompletableFuture.supplyAsync(() -> {
                try {
                    return db.queryString("SELECT pgtrickle.await_snapshot_change(?, 10, 600000)", from);
                } catch (java.sql.SQLException e) {
                    throw new IllegalStateException(e);
                }
            });
            await("the call waits, or returns", () -> call.isDone() || db.queryLong("SELECT count(*) FROM pg_stat_activity"
                    + " WHERE state = 'active' AND query LIKE 'SELECT pgtrickle.await_snapshot_change%'") == 1);
            if (!call.isDone()) {
                since = from;
                seen = call;
                break;
            }
            // a transaction elsewhere in the cluster completed before the call began: it returned at once, rightly
            assertTrue(!call.get().equals(from) && attempt < 20, "attempt " + attempt + ": " + from + " -> " + call.get());
        }
        db.exec("INSERT INTO src VALUES (100, 50)");
        String after = seen.get(60, java.util.concurrent.TimeUnit.SECONDS);
        assertTrue(!after.equals(since), "returned with a later snapshot: " + since + " -> " + after);
        // a snapshot that has moved already: no wait at all (a ten-minute timeout would show)
        assertTrue(!db.queryString("SELECT pgtrickle.await_snapshot_change(?, 10, 600000)", since).equals(since));
    }

    @Test
    void theDatabasesZeroTurnsWakingOffAndOnlyTheIntervalTicks() throws Exception {
        db.exec("ALTER DATABASE " + db.name() + " SET pg_trickle.wake_interval_ms = 0");
        startAndAwaitPlan(EngineSettings.DEFAULT_WAKE_INTERVAL_MS);
        await("the database's value wins over the container's 10", () -> engine.effectiveSettings().wakeIntervalMs() == 0);
        db.exec("INSERT INTO src VALUES (100, 50)");
        Thread.sleep(1500);
        assertEquals(5, db.queryLong("SELECT count(*) FROM st"), "no tick for ten minutes: the commit is not applied");
        assertEquals(1, db.queryLong("SELECT count(*) FROM pgtrickle.due_stream_tables()"), "although st is due");
    }

    @Test
    void withoutProbingOnlyWhatIsDueByTheClockIsFound() throws Exception {
        db.exec("SELECT pgtrickle.create_stream_table('by_clock', 'SELECT count(*) AS n FROM src', '100ms')");
        db.exec("INSERT INTO src VALUES (100, 50)");
        await("by_clock is due by its schedule", () -> db.queryLong("SELECT count(*) FROM pgtrickle.due_stream_tables(false)"
                + " WHERE name = 'public.by_clock'") == 1);
        assertEquals("public.by_clock", db.queryString("SELECT string_agg(name, ',') FROM pgtrickle.due_stream_tables(false)"),
                "not probed: st's pending change is not looked for");
        assertEquals("public.by_clock,public.st", db.queryString("SELECT string_agg(name, ',' ORDER BY name) FROM pgtrickle.due_stream_tables()"));
    }

    @Test
    void ticksWithNothingDueAndNoCommitSinceDoNotProbeTheBuffers() throws Exception {
        engine = new RefreshEngine(db.dataSource(), new EngineSettings(20, 2, 3, 0, 0), new Listeners());
        engine.start();
        await("a few ticks with nothing due", () -> engine.stats().ticks() >= 10 && db.queryLong("SELECT count(*) FROM pgtrickle.pgt_stream_tables"
                + " WHERE delta_sql IS NOT NULL") == 1);
        // The engine's own first commits after the plan (a refresh of st when its schedule comes
        // round) may fall in a window on a busy machine, and rightly make the next tick probe: a
        // window of ten ticks without any probing must come, and soon, where every tick probing
        // would never give one.
        RefreshEngine.Stats later = null;
        boolean quietWindow = false;
        for (int window = 0; window < 5 && !quietWindow; window++) {
            RefreshEngine.Stats idle = engine.stats();
            await("ten more ticks", () -> engine.stats().ticks() >= idle.ticks() + 10);
            later = engine.stats();
            quietWindow = later.probingTicks() == idle.probingTicks();
        }
        assertTrue(quietWindow, "nothing committed in a window of ten ticks: no tick probed (five windows tried)");

        db.exec("INSERT INTO src VALUES (100, 50)");
        await("the commit is probed for and applied", () -> db.queryLong("SELECT count(*) FROM st") == 6);
        assertTrue(engine.stats().probingTicks() > later.probingTicks());
    }

    @Test
    void aCalculatedStreamTableOverASourceWithoutCaptureIsDueOnceASecond() throws Exception {
        db.exec("CREATE MATERIALIZED VIEW mv AS SELECT id, v FROM src",
                "SELECT pgtrickle.create_stream_table('over_mv', 'SELECT count(*) AS n FROM mv')");
        // one statement, so that a slow machine cannot let the second pass between the two looks
        assertEquals(0, db.queryLong("SELECT count(*) FROM pgtrickle.due_stream_tables() d JOIN pgtrickle.pgt_stream_tables s"
                + " ON s.pgt_id = d.pgt_id WHERE s.pgt_name = 'over_mv' AND now() - s.last_refresh_at < interval '1 second'"),
                "refreshed (created) less than a second ago: not due, however often the scheduler ticks");
        await("due again once a second has passed",
                () -> db.queryLong("SELECT count(*) FROM pgtrickle.due_stream_tables() WHERE name = 'public.over_mv'") == 1);
    }
}
