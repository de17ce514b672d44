package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Within one tick, stream tables on stream tables are refreshed upstreams first, so a chain catches
 * up in a single tick: base table → st_a → st_b → st_c, and a fan of stream tables on st_a.
 */
class DependencyOrderTest {

    private static final int FAN = 4;
    private static final int WORKERS = 4;

    private RefreshDatabase db;
    private RefreshEngine engine;

    @BeforeEach
    void setUp() throws Exception {
        db = new RefreshDatabase("refresh_order");
        db.exec("CREATE TABLE src (id int PRIMARY KEY, grp int NOT NULL, v int NOT NULL)",
                "INSERT INTO src SELECT g, g % 7, g FROM generate_series(1, 200) g");
        engine = new RefreshEngine(db.dataSource(), new EngineSettings(100_000, WORKERS, 3), new Listeners());
    }

    private void createStreamTables(boolean initialize) throws Exception {
        String init = initialize ? "true" : "false";
        db.exec("SELECT pgtrickle.create_stream_table('st_a', 'SELECT id, grp, v FROM src WHERE v % 3 <> 0', 'calculated', initialize => " + init + ")",
                "SELECT pgtrickle.create_stream_table('st_b', 'SELECT grp, sum(v) AS total, count(*) AS n FROM st_a GROUP BY grp', 'calculated', initialize => " + init + ")",
                "SELECT pgtrickle.create_stream_table('st_c', 'SELECT count(*) AS groups, sum(total) AS total, sum(n) AS n FROM st_b', 'calculated', initialize => " + init + ")");
        for (int k = 0; k < FAN; k++) {
            db.exec("SELECT pgtrickle.create_stream_table('fan" + k + "', 'SELECT id, v FROM st_a WHERE id % " + FAN + " = " + k
                    + "', 'calculated', initialize => " + init + ")");
        }
    }

    @AfterEach
    void tearDown() {
        if (engine != null) {
            engine.close();
        }
        db.close();
    }

    private List<RefreshEngine.Outcome> oneTick() throws Exception {
        List<CompletableFuture<RefreshEngine.Outcome>> futures = engine.tick();
        CompletableFuture.allOf(futures.toArray(CompletableFuture[]::new)).get(RefreshDatabase.PATIENCE.toSeconds(), TimeUnit.SECONDS);
        return futures.stream().map(CompletableFuture::join).collect(Collectors.toList());
    }

    /** History rows since {@code after} where a downstream's refresh got a lower refresh_id than its upstream's. */
    private long outOfOrder(long after) throws Exception {
        return db.queryLong("SELECT count(*) FROM pgtrickle.pgt_dependencies d"
                + " JOIN pgtrickle.pgt_stream_tables u ON u.pgt_relid = d.source_relid"
                + " JOIN pgtrickle.pgt_refresh_history hu ON hu.pgt_id = u.pgt_id AND hu.refresh_id > ?"
                + " JOIN pgtrickle.pgt_refresh_history hd ON hd.pgt_id = d.pgt_id AND hd.refresh_id > ?"
                + " WHERE d.source_type = 'STREAM_TABLE' AND hd.refresh_id < hu.refresh_id", after, after);
    }

    private long refreshesSince(long after, String streamTable) throws Exception {
        return db.queryLong("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE refresh_id > ? AND pgt_id = ?"
                + " AND status = 'COMPLETED' AND initiated_by = 'SCHEDULER'", after, db.pgtId(streamTable));
    }

    private long lastRefreshId() throws Exception {
        return db.queryLong("SELECT coalesce(max(refresh_id), 0) FROM pgtrickle.pgt_refresh_history");
    }

    @Test
    void aChainCatchesUpWithASourceWriteInOneTick() throws Exception {
        createStreamTables(true);
        for (String st : List.of("st_a", "st_b", "st_c", "fan0")) {
            assertEquals(0, db.difference(st), st + " is populated at creation");
        }
        long before = lastRefreshId();
        db.exec("INSERT INTO src SELECT g, g % 11, g FROM generate_series(201, 260) g",
                "UPDATE src SET v = v + 1 WHERE id % 4 = 0",
                "DELETE FROM src WHERE id BETWEEN 10 AND 30");

        List<RefreshEngine.Outcome> outcomes = oneTick();

        assertEquals(0, db.difference("st_a"), "st_a after one tick");
        assertEquals(0, db.difference("st_b"), "st_b, which reads st_a, after the same tick");
        assertEquals(0, db.difference("st_c"), "st_c, two links down, after the same tick");
        for (String st : List.of("st_a", "st_b", "st_c")) {
            assertEquals(1, refreshesSince(before, st), st + " was refreshed once, by that tick");
        }
        assertEquals(0, outOfOrder(before), "every upstream's refresh_id is below its downstreams' in this tick");
        assertTrue(outcomes.size() <= WORKERS, "no more refreshes claimed than workers: " + outcomes);
        assertEquals(0, engine.stats().failed());

        // the fan members the first tick had no worker for follow on the next ones
        for (int i = 0; i < 3; i++) {
            oneTick();
        }
        for (int k = 0; k < FAN; k++) {
            assertEquals(0, db.difference("fan" + k), "fan" + k + " caught up");
        }
        assertEquals(0, outOfOrder(before));
        assertEquals(0, db.queryLong("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE refresh_id > ? AND status <> 'COMPLETED'", before));
    }

    @Test
    void aChainPopulatesInOneTickUpstreamsFirst() throws Exception {
        // unpopulated: all of them are due at once, and a downstream refreshed beside its upstream
        // would read the upstream still empty
        createStreamTables(false);
        engine = replace(engine, 16);
        long before = lastRefreshId();

        List<RefreshEngine.Outcome> outcomes = oneTick();

        assertEquals(3 + FAN, outcomes.size(), "every stream table was due: " + outcomes);
        assertTrue(outcomes.stream().allMatch(o -> o == RefreshEngine.Outcome.REFRESHED), outcomes.toString());
        for (String st : List.of("st_a", "st_b", "st_c")) {
            assertEquals(0, db.difference(st), st + " after one tick");
        }
        for (int k = 0; k < FAN; k++) {
            assertEquals(0, db.difference("fan" + k), "fan" + k + " after one tick");
        }
        assertTrue(db.queryLong("SELECT count(*) FROM st_b") > 0);
        assertEquals(0, outOfOrder(before), "every upstream's refresh_id is below its downstreams'");
    }

    @Test
    void aLongOverdueDownstreamPullsItsDueUpstreamAheadOfOthers() throws Exception {
        db.exec("SELECT pgtrickle.create_stream_table('x1', 'SELECT id FROM src WHERE v % 2 = 0', '10m')",
                "SELECT pgtrickle.create_stream_table('x2', 'SELECT id FROM src WHERE v % 2 = 1', '10m')",
                "SELECT pgtrickle.create_stream_table('up', 'SELECT id, grp, v FROM src', '10m')",
                "SELECT pgtrickle.create_stream_table('down', 'SELECT grp, count(*) AS n FROM up GROUP BY grp', '10m')",
                // x1 and x2 ten minutes past their schedule, up one second, down an hour
                "UPDATE pgtrickle.pgt_stream_tables SET last_refresh_at = now() - CASE pgt_name WHEN 'up' THEN interval '601 seconds'"
                        + " WHEN 'down' THEN interval '70 minutes' ELSE interval '20 minutes' END");
        engine = replace(engine, 1);
        List<String> refreshed = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            long before = lastRefreshId();
            assertEquals(List.of(RefreshEngine.Outcome.REFRESHED), oneTick(), "one worker, one refresh a tick");
            refreshed.add(db.queryString("SELECT s.pgt_name FROM pgtrickle.pgt_refresh_history h JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)"
                    + " WHERE h.refresh_id > ?", before));
        }
        assertEquals(List.of("up", "down"), refreshed.subList(0, 2),
                "down is the most overdue and must read a fresh up, so up goes first although it is the least overdue");
    }

    @Test
    void aDownstreamIsRefreshedInTheTickOnlyWhenItsUpstreamsRefreshLeftItSomethingToApply() throws Exception {
        createStreamTables(true);
        engine = replace(engine, 16);
        // v % 3 = 0: st_a filters the row out, so its refresh changes nothing downstream
        long before = lastRefreshId();
        db.exec("UPDATE src SET grp = grp + 1 WHERE id = 3");
        List<RefreshEngine.Outcome> outcomes = oneTick();
        assertEquals(1, refreshesSince(before, "st_a"));
        assertEquals(0, refreshesSince(before, "st_b"), "st_b had nothing to apply: " + outcomes);
        assertEquals(2 + FAN, outcomes.stream().filter(o -> o == RefreshEngine.Outcome.NOT_DUE).count(),
                "every downstream was asked and found nothing: " + outcomes);
        // a change st_a keeps: st_b has it to apply, and so does st_c after it
        before = lastRefreshId();
        db.exec("UPDATE src SET v = v + 3 WHERE id = 4");
        oneTick();
        for (String st : List.of("st_a", "st_b", "st_c")) {
            assertEquals(1, refreshesSince(before, st), st);
            assertEquals(0, db.difference(st), st);
        }
    }

    private RefreshEngine replace(RefreshEngine old, int workers) {
        old.close();
        return new RefreshEngine(db.dataSource(), new EngineSettings(100_000, workers, 3), new Listeners());
    }
}
