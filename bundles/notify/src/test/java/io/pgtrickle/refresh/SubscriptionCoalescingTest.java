package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.pgtrickle.notify.TrailingNotifications;
import java.sql.Connection;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.postgresql.PGConnection;
import org.postgresql.PGNotification;

/**
 * TEST-2 of the v0.33 plan: the scheduler refreshes a stream table at 10 Hz for more than 10 s
 * while a writer changes its source continuously; a LISTEN client on the subscribed channel, with
 * the default 250 ms window, gets at most one notification per window, a trailing one after the
 * last change, and counts that add up to the refresh history's.
 *
 * <p>In the notify bundle, since announcing is its part (its trigger on the refresh history, and
 * its timer for the trailing notifications), and in the engine's package, to drive the engine.
 */
class SubscriptionCoalescingTest {

    private static final long WRITE_MILLIS = 10_500;
    private static final int WINDOW_MS = EngineSettings.DEFAULT_NOTIFY_COALESCE_MS;

    private RefreshDatabase db;
    private RefreshEngine engine;
    private TrailingNotifications trailing;

    @BeforeEach
    void setUp() throws Exception {
        db = new RefreshDatabase("refresh_coalescing");
        db.exec("CREATE TABLE events (id bigserial PRIMARY KEY, kind int)",
                "SELECT pgtrickle.create_stream_table('kinds', 'SELECT kind, count(*) AS n FROM events GROUP BY kind', '100ms')",
                "SELECT pgtrickle.subscribe('kinds', 'kinds_changed')");
        engine = new RefreshEngine(db.dataSource(), new EngineSettings(100, 2, 3, WINDOW_MS), new Listeners());
        trailing = new TrailingNotifications(db.dataSource(), 200);
    }

    @AfterEach
    void tearDown() throws Exception {
        engine.close();
        trailing.close();
        db.close();
    }

    @Test
    void atMostOneNotificationPerWindowATrailingOneAndExactTotals() throws Exception {
        List<JsonNode> heard = new ArrayList<>();
        ObjectMapper json = new ObjectMapper();
        try (Connection listener = db.connect(); Connection writer = db.connect()) {
            try (Statement s = listener.createStatement()) {
                s.execute("LISTEN kinds_changed");
            }
            engine.start();
            AtomicBoolean writing = new AtomicBoolean(true);
            Thread w = new Thread(() -> {
                try (Statement s = writer.createStatement()) {
                    for (int i = 0; writing.get(); i++) {
                        s.execute("INSERT INTO events (kind) VALUES (" + (i % 7) + ")");
                        if (i % 5 == 4) {
                            s.execute("DELETE FROM events WHERE id = (SELECT min(id) FROM events)");
                        }
                        Thread.sleep(15);
                    }
                } catch (Exception e) {
                    throw new IllegalStateException(e);
                }
            }, "writer");
            long started = System.nanoTime();
            w.start();
            PGConnection pg = listener.unwrap(PGConnection.class);
            while (System.nanoTime() - started < TimeUnit.MILLISECONDS.toNanos(WRITE_MILLIS)) {
                collect(pg.getNotifications(100), heard, json);
            }
            writing.set(false);
            w.join();
            long wrote = System.nanoTime() - started;

            // after the last change: the refresh that applies it, then (at the latest) the trailing
            // notification once its window closes
            // (in this order: the refresh that applies the last change may commit between the reads,
            // and a last change read before it would let the wait end without its notification)
            RefreshDatabase.await("the last change is applied and announced", () -> {
                if (db.difference("kinds") != 0) {
                    return false;
                }
                long lastChange = db.queryLong("SELECT coalesce(max(refresh_id), 0) FROM pgtrickle.pgt_refresh_history"
                        + " WHERE rows_inserted + rows_deleted > 0");
                collect(pg.getNotifications(100), heard, json);
                return !heard.isEmpty()
                        && heard.get(heard.size() - 1).get("refresh_id").asLong() == lastChange
                        && db.queryLong("SELECT pending_refreshes FROM pgtrickle.list_subscriptions()") == 0;
            });
            long elapsed = System.nanoTime() - started;

            long changed = db.queryLong("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE rows_inserted + rows_deleted > 0");
            long announced = heard.stream().mapToLong(n -> n.has("refreshes") ? n.get("refreshes").asLong() : 1).sum();
            System.out.printf("[SubscriptionCoalescingTest] %d refreshes with changes in %d ms of writing, %d notifications%n",
                    changed, TimeUnit.NANOSECONDS.toMillis(wrote), heard.size());

            assertTrue(changed >= 50, "the scheduler refreshed at about 10 Hz: " + changed + " refreshes with changes");
            long windows = TimeUnit.NANOSECONDS.toMillis(elapsed) / WINDOW_MS + 1;
            assertTrue(heard.size() <= windows, heard.size() + " notifications in " + windows + " windows");
            assertTrue(heard.size() < changed, "coalescing folded refreshes: " + heard.size() + " notifications for " + changed);
            assertEquals(changed, announced, "every refresh with changes is announced once, alone or folded");
            assertEquals(db.queryLong("SELECT sum(rows_inserted) FROM pgtrickle.pgt_refresh_history"),
                    heard.stream().mapToLong(n -> n.get("inserted_count").asLong()).sum());
            assertEquals(db.queryLong("SELECT sum(rows_deleted) FROM pgtrickle.pgt_refresh_history"),
                    heard.stream().mapToLong(n -> n.get("deleted_count").asLong()).sum());
            // in refresh order, each folding exactly the refreshes since the previous one
            long previous = 0;
            for (JsonNode n : heard) {
                long first = n.has("first_refresh_id") ? n.get("first_refresh_id").asLong() : n.get("refresh_id").asLong();
                assertTrue(first > previous && n.get("refresh_id").asLong() >= first, "order: " + heard);
                previous = n.get("refresh_id").asLong();
            }
        }
    }

    private static void collect(PGNotification[] got, List<JsonNode> into, ObjectMapper json) throws Exception {
        if (got != null) {
            for (PGNotification n : got) {
                into.add(json.readTree(n.getParameter()));
            }
        }
    }
}
