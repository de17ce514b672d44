package io.pgtrickle.refresh;

import static io.pgtrickle.refresh.RefreshDatabase.await;
import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * More due than workers, between two ticks: a worker that finishes takes the next stream table the
 * last tick left, most urgent first, instead of idling until the next tick. Here the next tick is a
 * minute away and nothing wakes the scheduler, so everything refreshed after the first tick's one
 * refresh was taken from what that tick left.
 */
class BacklogTest {

    private static final int STREAM_TABLES = 12;

    private RefreshDatabase db;
    private RefreshEngine engine;

    @BeforeEach
    void setUp() throws Exception {
        db = new RefreshDatabase("refresh_backlog");
        for (int k = 0; k < STREAM_TABLES; k++) {
            db.exec("CREATE TABLE src" + k + " (id int PRIMARY KEY, v int NOT NULL)",
                    "INSERT INTO src" + k + " VALUES (1, 1)",
                    "SELECT pgtrickle.create_stream_table('st" + k + "', 'SELECT id, v FROM src" + k + "', 'calculated')");
            db.plan("st" + k);
        }
    }

    @AfterEach
    void tearDown() {
        if (engine != null) {
            engine.close();
        }
        db.close();
    }

    @Test
    void workersTakeWhatTheTickLeftAsTheyFinishNotAtTheNextTick() throws Exception {
        for (int k = 0; k < STREAM_TABLES; k++) {
            db.exec("UPDATE src" + k + " SET v = v + 1");
        }
        // one worker, a tick a minute, no wake
        engine = new RefreshEngine(db.dataSource(), new EngineSettings(60_000, 1, 3, 250, 0), new Listeners());
        engine.start();
        await("every stream table refreshed", () -> {
            for (int k = 0; k < STREAM_TABLES; k++) {
                if (db.difference("st" + k) != 0) {
                    return false;
                }
            }
            return true;
        });
        assertEquals(1, engine.stats().ticks(), "all of it from the first tick");
        assertEquals(STREAM_TABLES, engine.stats().refreshed());
    }
}
