package io.pgtrickle.refresh;

import static io.pgtrickle.refresh.RefreshDatabase.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pgtrickle.api.refresh.RefreshEvent;
import io.pgtrickle.api.refresh.RefreshListener;
import io.pgtrickle.refresh.RefreshEngine.Outcome;
import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Two schedulers on one database, as two containers would run: a stream table is never refreshed by
 * both at once, and when one stops the other carries on.
 *
 * <p>A refresh here outlasts the 100 ms schedule on any machine, so every stream table is due again
 * as soon as it is refreshed and the workers are always saturated: a busy machine changes how long
 * the test takes, not what it exercises. That needs due work served most overdue first
 * (FairSchedulingTest): in pgt_id order st0 and st1 took every free worker, st2 and st3 were never
 * refreshed, and on a busy machine (where a refresh took longer than the schedule) this test timed out.
 */
class TwoSchedulersTest {

    private static final int STREAM_TABLES = 4;

    private RefreshDatabase db;
    private RefreshEngine first;
    private RefreshEngine second;

    /** Refreshes running right now, per stream table, across both engines. */
    private final Map<Long, AtomicInteger> running = new ConcurrentHashMap<>();
    private final AtomicInteger mostAtOnce = new AtomicInteger();

    /** Records which engine committed which refresh, and detects overlapping refreshes of one stream table. */
    private final class OverlapDetector implements RefreshListener {
        final Set<Long> refreshIds = ConcurrentHashMap.newKeySet();

        @Override
        public void refreshed(RefreshEvent event, Connection connection) throws SQLException {
            AtomicInteger n = running.computeIfAbsent(event.pgtId(), id -> new AtomicInteger());
            mostAtOnce.accumulateAndGet(n.incrementAndGet(), Math::max);
            try (Statement s = connection.createStatement()) {
                // hold the refresh open past the schedule: an overlap would have time to happen, and
                // the stream table is due again when its refresh ends
                s.execute("SELECT pg_sleep(0.15)");
            } finally {
                n.decrementAndGet();
            }
            refreshIds.add(event.refreshId());
        }
    }

    private final OverlapDetector firstSaw = new OverlapDetector();
    private final OverlapDetector secondSaw = new OverlapDetector();

    @BeforeEach
    void setUp() throws Exception {
        db = new RefreshDatabase("refresh_two");
        db.exec("CREATE TABLE src (id serial PRIMARY KEY, v int NOT NULL)");
        for (int k = 0; k < STREAM_TABLES; k++) {
            db.exec("SELECT pgtrickle.create_stream_table('st" + k + "', 'SELECT count(*) AS n, sum(v) AS s FROM src WHERE id % "
                    + STREAM_TABLES + " = " + k + "', '100ms')");
        }
        first = engine(firstSaw);
        second = engine(secondSaw);
    }

    private RefreshEngine engine(RefreshListener listener) {
        Listeners listeners = new Listeners();
        listeners.put(listener, 0, 1);
        // two workers each for four stream tables: both engines always find work, and contend for it
        return new RefreshEngine(db.dataSource(), new EngineSettings(10, 2, 3), listeners);
    }

    @AfterEach
    void tearDown() {
        first.close();
        second.close();
        db.close();
    }

    private boolean upToDate() throws SQLException {
        for (int k = 0; k < STREAM_TABLES; k++) {
            if (db.difference("st" + k) != 0) {
                return false;
            }
        }
        return true;
    }

    @Test
    void aStreamTableIsNeverRefreshedByTwoSchedulersAtOnceAndOneCarriesOnAlone() throws Exception {
        first.start();
        second.start();
        await("both schedulers refreshed changed stream tables many times", () -> {
            db.exec("INSERT INTO src (v) SELECT g FROM generate_series(1, 8) g");
            return firstSaw.refreshIds.size() >= 20 && secondSaw.refreshIds.size() >= 20;
        });
        first.close();
        assertTrue(first.terminated(), "the stopped scheduler's threads are gone");

        assertEquals(1, mostAtOnce.get(), "no stream table was ever refreshed twice at the same time");
        Set<Long> both = ConcurrentHashMap.newKeySet();
        both.addAll(firstSaw.refreshIds);
        both.retainAll(secondSaw.refreshIds);
        assertEquals(Set.of(), both);
        System.out.printf("first: %s, second: %s%n", first.stats(), second.stats());

        long lastOfFirst = firstSaw.refreshIds.stream().mapToLong(Long::longValue).max().orElseThrow();
        db.exec("INSERT INTO src (v) SELECT g FROM generate_series(1, 100) g");
        await("the remaining scheduler brings every stream table up to date", this::upToDate);
        // stopped before counting, so that no refresh commits between reading its listener's log and the history
        second.close();

        long after = db.queryLong("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE refresh_id > ? AND status = 'COMPLETED'"
                + " AND rows_inserted > 0", lastOfFirst);
        assertTrue(after >= STREAM_TABLES, "every stream table was refreshed with changes after the first scheduler stopped");
        assertEquals(0, db.queryLong("SELECT count(*) FROM pgtrickle.pgt_refresh_history h WHERE refresh_id > ? AND NOT refresh_id = ANY (?)",
                lastOfFirst, secondSaw.refreshIds.toArray(new Long[0])),
                "every refresh committed since came from the second scheduler");
        assertEquals(0, db.queryLong("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE status <> 'COMPLETED'"));
        assertEquals(firstSaw.refreshIds.size() + secondSaw.refreshIds.size(),
                db.queryLong("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE initiated_by = 'SCHEDULER'"),
                "every committed scheduled refresh was seen by exactly one engine's listener");
    }
    @Test
    void aStreamTableAnotherSessionIsRefreshingGoesAfterTheRestOfWhatIsDueForAWhile() throws Exception {
        AtomicLong clock = new AtomicLong();
        try (RefreshEngine alone = new RefreshEngine(db.dataSource(), new EngineSettings(10, 1, 3), new Listeners(), clock::get, 1000);
             Connection elsewhere = db.connect()) {
            db.exec("UPDATE pgtrickle.pgt_stream_tables SET last_refresh_at = now() - CASE pgt_name WHEN 'st0' THEN interval '1 hour'"
                    + " WHEN 'st1' THEN interval '30 minutes' ELSE interval '0' END");
            for (int k = 0; k < STREAM_TABLES; k++) {
                // planning writes the catalog row, which the lock below would hold up
                db.plan("st" + k);
            }
            // another container's refresh of st0, the most overdue, holds its catalog row
            elsewhere.setAutoCommit(false);
            try (Statement s = elsewhere.createStatement()) {
                s.execute("SELECT FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'st0' FOR UPDATE");
            }
            assertEquals(List.of(Outcome.LOCKED_ELSEWHERE), tick(alone));
            long before = db.queryLong("SELECT max(refresh_id) FROM pgtrickle.pgt_refresh_history");
            assertEquals(List.of(Outcome.REFRESHED), tick(alone), "the one worker went to the next most overdue, not to st0 again");
            assertEquals("st1", db.queryString("SELECT s.pgt_name FROM pgtrickle.pgt_refresh_history h"
                    + " JOIN pgtrickle.pgt_stream_tables s USING (pgt_id) WHERE h.refresh_id > ?", before));

            elsewhere.rollback();
            clock.addAndGet(RefreshEngine.HELD_ELSEWHERE_DEFER_NANOS);
            before = db.queryLong("SELECT max(refresh_id) FROM pgtrickle.pgt_refresh_history");
            assertEquals(List.of(Outcome.REFRESHED), tick(alone), "deferred only for a while");
            assertEquals("st0", db.queryString("SELECT s.pgt_name FROM pgtrickle.pgt_refresh_history h"
                    + " JOIN pgtrickle.pgt_stream_tables s USING (pgt_id) WHERE h.refresh_id > ?", before));
        }
    }

    private static List<Outcome> tick(RefreshEngine engine) {
        return engine.tick().stream().map(CompletableFuture::join).collect(Collectors.toList());
    }
}
