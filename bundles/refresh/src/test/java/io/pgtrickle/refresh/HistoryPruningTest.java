package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The scheduler prunes the refresh history past pg_trickle.history_retention_days: at its first tick,
 * then about once a minute, and at every tick while whole batches go. The clock is a counter.
 */
class HistoryPruningTest {

    private final AtomicLong clock = new AtomicLong(1);
    private RefreshDatabase db;
    private RefreshEngine engine;

    @BeforeEach
    void setUp() throws Exception {
        db = new RefreshDatabase("history_pruning");
        db.exec("CREATE TABLE src (id int PRIMARY KEY)",
                "SELECT pgtrickle.create_stream_table('ids', 'SELECT id FROM src', '1h')",
                "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET pg_trickle.history_retention_days = 30', current_database()); END $$");
        engine = new RefreshEngine(db.dataSource(), new EngineSettings(1000, 1, 3), new Listeners(), clock::get, 1000);
    }

    @AfterEach
    void tearDown() {
        engine.close();
        db.close();
    }

    @Test
    void oldHistoryGoesAtTheFirstTickThenAboutOnceAMinuteAndAtOnceWhileBatchesAreFull() throws Exception {
        aged(3);
        tick();
        assertEquals(0, old(), "pruned at the first tick");

        aged(3);
        clock.addAndGet(RefreshEngine.HISTORY_PRUNE_INTERVAL_NANOS - 1);
        tick();
        assertEquals(3, old(), "not again within a minute");
        clock.addAndGet(1);
        tick();
        assertEquals(0, old(), "a minute later");

        // more than a batch: the next tick goes on, without waiting a minute
        aged(RefreshEngine.HISTORY_PRUNE_BATCH + 5);
        clock.addAndGet(RefreshEngine.HISTORY_PRUNE_INTERVAL_NANOS);
        tick();
        assertEquals(5, old());
        tick();
        assertEquals(0, old());
        assertEquals(1, db.queryLong("SELECT count(*) FROM pgtrickle.pgt_refresh_history"), "the initial refresh, recent, stays");
    }

    /** {@code n} history rows of the stream table from 31 to 40 days ago, older than its initial refresh. */
    private void aged(int n) throws Exception {
        db.exec("INSERT INTO pgtrickle.pgt_refresh_history (pgt_id, start_time, action, status)"
                + " SELECT s.pgt_id, now() - interval '31 days' - (g % 10) * interval '1 day', 'NO_DATA', 'COMPLETED'"
                + " FROM pgtrickle.pgt_stream_tables s, generate_series(1, " + n + ") g");
    }

    private long old() throws Exception {
        return db.queryLong("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE start_time < now() - interval '30 days'");
    }

    private void tick() {
        engine.tick().forEach(CompletableFuture::join);
    }
}
