package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.pgtrickle.api.refresh.RefreshEvent;
import io.pgtrickle.api.refresh.RefreshListener;
import io.pgtrickle.refresh.RefreshEngine.Outcome;
import java.sql.Connection;
import java.sql.SQLException;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.BrokenBarrierException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * {@code pg_trickle.max_concurrent_refreshes} set in the database wins over the container's number of
 * workers, like the other {@code pg_trickle.*} settings, and the pool follows it while running.
 */
class MaxConcurrentRefreshesTest {

    private static final int STREAM_TABLES = 3;

    private RefreshDatabase db;
    private RefreshEngine engine;
    /** When set, every refresh waits inside its transaction until this many refreshes are running. */
    private volatile CyclicBarrier together;

    @BeforeEach
    void setUp() throws Exception {
        db = new RefreshDatabase("refresh_concurrency");
        db.exec("CREATE TABLE src (id int PRIMARY KEY, v int NOT NULL)",
                "INSERT INTO src SELECT g, g FROM generate_series(1, 30) g");
        for (int k = 0; k < STREAM_TABLES; k++) {
            db.exec("SELECT pgtrickle.create_stream_table('st" + k + "', 'SELECT count(*) AS n FROM src WHERE id % " + STREAM_TABLES
                    + " = " + k + "', '1h')");
        }
        Listeners listeners = new Listeners();
        listeners.put(new RefreshListener() {
            @Override
            public void refreshed(RefreshEvent event, Connection connection) throws SQLException {
                CyclicBarrier barrier = together;
                if (barrier != null) {
                    try {
                        barrier.await(RefreshDatabase.PATIENCE.toSeconds(), TimeUnit.SECONDS);
                    } catch (InterruptedException | BrokenBarrierException | TimeoutException e) {
                        throw new SQLException("not " + barrier.getParties() + " refreshes at once", e);
                    }
                }
            }
        }, 0, 1);
        // the container allows one refresh at a time
        engine = new RefreshEngine(db.dataSource(), new EngineSettings(100_000, 1, 3), listeners);
    }

    @AfterEach
    void tearDown() {
        if (engine != null) {
            engine.close();
        }
        db.close();
    }

    private void setInDatabase(String value) throws SQLException {
        db.exec("ALTER DATABASE " + db.name() + " SET pg_trickle.max_concurrent_refreshes = " + value);
    }

    private void allDue() throws SQLException {
        db.exec("UPDATE pgtrickle.pgt_stream_tables SET last_refresh_at = now() - interval '2 hours'");
    }

    /** One tick: checks how many refreshes it handed out before waiting for them (one waiting alone would wait long). */
    private List<Outcome> tick(int expectedRefreshes, String why) throws Exception {
        List<CompletableFuture<Outcome>> futures = engine.tick();
        assertEquals(expectedRefreshes, futures.size(), why);
        CompletableFuture.allOf(futures.toArray(CompletableFuture[]::new)).get(2 * RefreshDatabase.PATIENCE.toSeconds(), TimeUnit.SECONDS);
        return futures.stream().map(CompletableFuture::join).collect(Collectors.toList());
    }

    @Test
    void theDatabasesSettingSizesThePoolAndNonsenseFallsBackToTheContainers() throws Exception {
        setInDatabase("3");
        allDue();
        together = new CyclicBarrier(STREAM_TABLES);
        assertEquals(Collections.nCopies(STREAM_TABLES, Outcome.REFRESHED),
                tick(STREAM_TABLES, "three refreshes handed out, as the database says, not the container's one"),
                "and running at the same time: each waited for the others inside its transaction");
        assertEquals(3, engine.effectiveSettings().workers());

        together = null;
        setInDatabase("'lots'");
        allDue();
        assertEquals(List.of(Outcome.REFRESHED), tick(1, "an invalid value is ignored: the container's one worker"));
        assertEquals(1, engine.effectiveSettings().workers());

        setInDatabase("2");
        together = new CyclicBarrier(2);
        assertEquals(List.of(Outcome.REFRESHED, Outcome.REFRESHED), tick(2, "the two still due, at once"));

        together = null;
        db.exec("ALTER DATABASE " + db.name() + " RESET pg_trickle.max_concurrent_refreshes");
        allDue();
        assertEquals(List.of(Outcome.REFRESHED), tick(1, "reset: the container's one worker again"));
        assertEquals(new EngineSettings.Effective(100_000, 3, 1, 0), engine.effectiveSettings());
    }
}
