package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.Statement;
import java.util.HashSet;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** Stopping lets running refreshes finish within a bounded grace period and leaves no threads behind. */
class StopTest {

    private RefreshDatabase db;
    private final Listeners listeners = new Listeners();
    private final CountDownLatch entered = new CountDownLatch(1);
    private final AtomicLong refreshId = new AtomicLong();
    private long pgtId;

    @BeforeEach
    void setUp() throws Exception {
        db = new RefreshDatabase("refresh_stop");
        db.exec("CREATE TABLE src (id int PRIMARY KEY)",
                "SELECT pgtrickle.create_stream_table('st', 'SELECT id FROM src', '100ms')",
                "INSERT INTO src VALUES (1)");
        pgtId = db.pgtId("st");
    }

    @AfterEach
    void tearDown() {
        db.close();
    }

    @Test
    void aRefreshThatFinishesWithinTheGracePeriodCommits() throws Exception {
        listeners.put((e, c) -> {
            refreshId.set(e.refreshId());
            entered.countDown();
            try {
                Thread.sleep(300);
            } catch (InterruptedException ex) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted", ex);
            }
        }, 0, 1);
        RefreshEngine engine = new RefreshEngine(db.dataSource(), new EngineSettings(20, 2, 3), listeners, System::nanoTime,
                TimeUnit.SECONDS.toMillis(30));
        engine.start();
        assertTrue(entered.await(RefreshDatabase.PATIENCE.toSeconds(), TimeUnit.SECONDS));
        engine.close();

        assertTrue(engine.terminated());
        assertEquals("COMPLETED", db.queryString("SELECT status FROM pgtrickle.pgt_refresh_history WHERE refresh_id = ?", refreshId.get()));
        assertEquals(0, db.difference("st"));
    }

    @Test
    void aRefreshStillRunningAfterTheGracePeriodIsCutOffRolledBackAndNotCountedAsAFailure() throws Exception {
        listeners.put((e, c) -> {
            refreshId.set(e.refreshId());
            entered.countDown();
            try (Statement s = c.createStatement()) {
                // far longer than the grace period below, and than any test's patience
                s.execute("SELECT pg_sleep(600)");
            }
        }, 0, 1);
        RefreshEngine engine = new RefreshEngine(db.dataSource(), new EngineSettings(20, 2, 3), listeners, System::nanoTime, 200);
        engine.start();
        assertTrue(entered.await(RefreshDatabase.PATIENCE.toSeconds(), TimeUnit.SECONDS));
        engine.close();

        assertTrue(engine.terminated(), "close() returned after a bounded wait with every thread ended");
        assertEquals(1, engine.stats().abandoned());
        assertEquals(0, db.queryLong("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE refresh_id = ?", refreshId.get()),
                "the cut-off refresh did not commit");
        assertEquals(0, db.queryLong("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE status = 'FAILED'"),
                "stopping is not the stream table's fault");
        assertEquals(0, db.queryLong("SELECT consecutive_errors FROM pgtrickle.pgt_stream_tables WHERE pgt_id = ?", pgtId));
        assertEquals(0, db.queryLong("SELECT count(*) FROM st"));
    }

    @Test
    void aLongRunningRefreshStatementIsCancelledSoOtherContainersCanTakeOver() throws Exception {
        // pg_sleep runs inside run_refresh's own statement, for far longer than this test waits
        db.exec("SELECT pgtrickle.create_stream_table('slow', 'SELECT s.id FROM src s CROSS JOIN pg_sleep(600)', '1s', initialize => false)");
        long slow = db.pgtId("slow");
        RefreshEngine engine = new RefreshEngine(db.dataSource(), new EngineSettings(20, 2, 3), listeners, System::nanoTime, 200);
        engine.start();
        RefreshDatabase.await("the slow refresh is running", () -> db.queryLong(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE '%run_refresh%' AND state = 'active'"
                        + " AND pid <> pg_backend_pid()") == 1);
        engine.close();
        assertTrue(engine.terminated());

        RefreshDatabase.await("the server rolled the cancelled refresh back and released the stream table", () -> db.queryLong(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE '%run_refresh%'"
                        + " AND pid <> pg_backend_pid()") == 0);
        try (var c = db.connect(); var s = c.createStatement()) {
            // another container's scheduler would get the row now
            s.execute("SET lock_timeout = '5s'");
            c.setAutoCommit(false);
            assertTrue(s.executeQuery("SELECT 1 FROM pgtrickle.pgt_stream_tables WHERE pgt_id = " + slow + " FOR UPDATE").next());
            c.rollback();
        }
        assertEquals(0, db.queryLong("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE pgt_id = ? AND status = 'FAILED'", slow),
                "the stop's cancel is not counted against the stream table");
        assertEquals(0, db.queryLong("SELECT consecutive_errors FROM pgtrickle.pgt_stream_tables WHERE pgt_id = ?", slow));
    }

    @Test
    void noThreadOutlivesTheEngine() throws Exception {
        Set<Thread> before = Thread.getAllStackTraces().keySet();
        RefreshEngine engine = new RefreshEngine(db.dataSource(), new EngineSettings(20, 3, 3), listeners);
        engine.start();
        RefreshDatabase.await("the scheduler refreshes", () -> db.difference("st") == 0);
        Set<Thread> ours = new HashSet<>(Thread.getAllStackTraces().keySet());
        ours.removeAll(before);
        ours.removeIf(t -> !t.getName().startsWith("pgtrickle-refresh-"));
        assertTrue(ours.stream().anyMatch(t -> t.getName().contains("-scheduler-")), "the engine's threads: " + ours);
        assertTrue(ours.stream().anyMatch(t -> t.getName().contains("-worker-")), "the engine's threads: " + ours);

        engine.close();
        engine.close(); // idempotent
        assertTrue(engine.terminated());
        for (Thread t : ours) {
            // terminated() is set as each thread's last act; give it the moment to return
            t.join(RefreshDatabase.PATIENCE.toMillis());
            assertFalse(t.isAlive(), t.getName() + " outlived close()");
        }
        assertEquals(0, engine.tick().size(), "a closed engine does nothing");
    }
}
