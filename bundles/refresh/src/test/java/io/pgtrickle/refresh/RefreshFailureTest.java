package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pgtrickle.refresh.RefreshEngine.Outcome;
import java.sql.SQLException;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Failed refreshes are rolled back, recorded in their own transaction, retried after a backoff and
 * suspend the stream table at the error limit, which the database's setting decides when set.
 * The engine's clock is a counter here, so backoff is checked exactly instead of by waiting.
 */
class RefreshFailureTest {

    private static final long MS = TimeUnit.MILLISECONDS.toNanos(1);

    private final AtomicLong clock = new AtomicLong();
    private RefreshDatabase db;
    private RefreshEngine engine;
    private long pgtId;

    @BeforeEach
    void setUp() throws Exception {
        db = new RefreshDatabase("refresh_failure");
        db.exec("CREATE TABLE src (id int PRIMARY KEY, v int NOT NULL)",
                "INSERT INTO src VALUES (1, 10), (2, 20)",
                "SELECT pgtrickle.create_stream_table('ratios', 'SELECT id, 100 / v AS r FROM src', '100ms')");
        pgtId = db.pgtId("ratios");
    }

    @AfterEach
    void tearDown() {
        if (engine != null) {
            engine.close();
        }
        db.close();
    }

    private RefreshEngine engine(int maxConsecutiveErrors) {
        engine = new RefreshEngine(db.dataSource(), new EngineSettings(1000, 2, maxConsecutiveErrors), new Listeners(), clock::get, 1000);
        return engine;
    }

    private List<Outcome> tick() {
        return engine.tick().stream().map(CompletableFuture::join).collect(Collectors.toList());
    }

    private long failedRows() throws SQLException {
        return db.queryLong("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE pgt_id = ? AND status = 'FAILED'", pgtId);
    }

    private String status() throws SQLException {
        return db.queryString("SELECT status FROM pgtrickle.pgt_stream_tables WHERE pgt_id = ?", pgtId);
    }

    private long consecutiveErrors() throws SQLException {
        return db.queryLong("SELECT consecutive_errors FROM pgtrickle.pgt_stream_tables WHERE pgt_id = ?", pgtId);
    }

    @Test
    void aQueryFailingOnNewDataIsRecordedRetriedWithBackoffAndSuspendedAtTheLimit() throws Exception {
        engine(3);
        db.exec("INSERT INTO src VALUES (3, 0)"); // 100 / 0 at the next refresh

        // due 100 ms after the initial refresh
        RefreshDatabase.await("the first scheduled refresh", () -> tick().equals(List.of(Outcome.FAILED)));
        assertEquals(1, failedRows());
        assertEquals(1, consecutiveErrors());
        assertEquals("ACTIVE", status());
        assertTrue(db.queryString("SELECT last_error_message FROM pgtrickle.pgt_stream_tables WHERE pgt_id = ?", pgtId)
                .contains("division by zero"));
        assertTrue(db.queryString("SELECT error_message FROM pgtrickle.pgt_refresh_history WHERE pgt_id = ? AND status = 'FAILED'", pgtId)
                .contains("division by zero"));
        assertEquals(2, db.queryLong("SELECT count(*) FROM ratios"), "the failed refresh changed nothing");

        // 1 s backoff: still due, but not retried before it is over
        assertEquals(List.of(), tick());
        clock.addAndGet(999 * MS);
        assertEquals(List.of(), tick());
        clock.addAndGet(MS);
        assertEquals(List.of(Outcome.FAILED), tick());
        assertEquals(2, consecutiveErrors());

        // then 2 s
        clock.addAndGet(1000 * MS);
        assertEquals(List.of(), tick());
        clock.addAndGet(1000 * MS);
        assertEquals(List.of(Outcome.FAILED), tick());

        assertEquals("SUSPENDED", status(), "suspended at maxConsecutiveErrors = 3");
        assertEquals(3, consecutiveErrors());
        assertEquals(3, failedRows());
        assertEquals(3, engine.stats().failed());

        // suspended: no longer due, however long we wait
        clock.addAndGet(TimeUnit.MINUTES.toNanos(5));
        assertEquals(List.of(), tick());
        assertEquals(3, failedRows());

        // fixed and resumed: refreshed at once, the error count cleared
        db.exec("DELETE FROM src WHERE v = 0", "SELECT pgtrickle.resume_stream_table('ratios')");
        assertEquals(List.of(Outcome.REFRESHED), tick());
        assertEquals(0, consecutiveErrors());
        assertEquals("ACTIVE", status());
        assertEquals(0, db.difference("ratios"));
    }

    @Test
    void aDroppedSourceFailsTheRefreshAndIsRecorded() throws Exception {
        engine(3);
        db.exec("DROP TABLE src");
        RefreshFailedException e = assertThrows(RefreshFailedException.class, () -> engine.refresh("ratios"));
        assertTrue(e.recorded());
        assertEquals("ACTIVE", e.status());
        assertEquals(1, failedRows());
        assertEquals(1, consecutiveErrors());
        assertEquals(2, db.queryLong("SELECT count(*) FROM ratios"), "the stream table keeps its last good contents");
        System.out.println("dropped source: " + e.getMessage());
    }

    @Test
    void theDatabasesMaxConsecutiveErrorsWinsOverTheComponentDefault() throws Exception {
        db.exec("ALTER DATABASE " + db.name() + " SET pg_trickle.max_consecutive_errors = 2");
        engine(5);
        db.exec("INSERT INTO src VALUES (3, 0)");
        RefreshDatabase.await("the stream table is suspended", () -> {
            clock.addAndGet(TimeUnit.SECONDS.toNanos(61));
            tick();
            return "SUSPENDED".equals(status());
        });
        assertEquals(2, consecutiveErrors(), "the database said 2, the component 5");
        assertEquals(2, failedRows());
        assertEquals(2, engine.effectiveSettings().maxConsecutiveErrors());
    }

    @Test
    void theDatabasesSchedulerIntervalWinsAndNonsenseIsIgnored() throws Exception {
        engine(3);
        tick();
        assertEquals(1000, engine.effectiveSettings().schedulerIntervalMs(), "nothing set in the database: the component's value");

        db.exec("ALTER DATABASE " + db.name() + " SET pg_trickle.scheduler_interval_ms = 250");
        tick();
        assertEquals(250, engine.effectiveSettings().schedulerIntervalMs());

        db.exec("ALTER DATABASE " + db.name() + " SET pg_trickle.scheduler_interval_ms = 'often'",
                "ALTER DATABASE " + db.name() + " SET pg_trickle.max_consecutive_errors = 0");
        tick();
        assertEquals(new EngineSettings.Effective(1000, 3, 2, 0), engine.effectiveSettings(), "invalid values fall back to the component's");

        db.exec("ALTER DATABASE " + db.name() + " RESET pg_trickle.scheduler_interval_ms");
        tick();
        assertEquals(1000, engine.effectiveSettings().schedulerIntervalMs());
    }
}
