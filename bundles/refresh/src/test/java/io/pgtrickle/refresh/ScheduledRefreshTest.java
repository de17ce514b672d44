package io.pgtrickle.refresh;

import static io.pgtrickle.refresh.RefreshDatabase.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The scheduler thread, unattended, keeps stream tables equal to their queries. */
class ScheduledRefreshTest {

    private RefreshDatabase db;
    private RefreshEngine engine;

    @BeforeEach
    void setUp() throws Exception {
        db = new RefreshDatabase("refresh_scheduled");
        db.exec("CREATE TABLE src (id int PRIMARY KEY, grp text NOT NULL, v int NOT NULL)",
                "INSERT INTO src SELECT g, 'g' || (g % 3), g FROM generate_series(1, 20) g",
                "SELECT pgtrickle.create_stream_table('totals', 'SELECT grp, sum(v) AS total, count(*) AS n FROM src GROUP BY grp', '100ms')",
                // created unpopulated: the scheduler must populate it
                "SELECT pgtrickle.create_stream_table('big', 'SELECT id, v FROM src WHERE v > 10', '100ms', initialize => false)");
        engine = new RefreshEngine(db.dataSource(), new EngineSettings(20, 2, 3), new Listeners());
    }

    @AfterEach
    void tearDown() {
        if (engine != null) {
            engine.close();
        }
        db.close();
    }

    @Test
    void scheduledRefreshesBringStreamTablesUpToDateAfterSourceWrites() throws Exception {
        assertEquals(0, db.queryLong("SELECT count(*) FROM big"), "not populated before the scheduler runs");
        engine.start();
        await("the scheduler populates big", () -> db.queryLong("SELECT count(*) FROM big") == 10 && db.difference("big") == 0);

        long before = db.queryLong("SELECT coalesce(max(refresh_id), 0) FROM pgtrickle.pgt_refresh_history");
        db.exec("INSERT INTO src SELECT g, 'g' || (g % 4), g FROM generate_series(21, 40) g",
                "UPDATE src SET v = v * 10 WHERE id % 5 = 0",
                "DELETE FROM src WHERE id BETWEEN 3 AND 6",
                "INSERT INTO src VALUES (100, 'new group', 7)");
        await("both stream tables match their queries after the writes",
                () -> db.difference("totals") == 0 && db.difference("big") == 0
                        && db.queryLong("SELECT count(*) FROM totals WHERE grp = 'new group'") == 1);

        assertEquals(0, db.queryLong("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE refresh_id > ? "
                + "AND (status <> 'COMPLETED' OR initiated_by <> 'SCHEDULER')", before), "every scheduled refresh committed");
        assertTrue(db.queryLong("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE refresh_id > ? AND action IN ('FULL', 'DIFFERENTIAL')"
                + " AND rows_inserted + rows_deleted > 0", before) >= 2, "both stream tables applied changes");
        assertEquals("ACTIVE", db.queryString("SELECT string_agg(DISTINCT status, ',') FROM pgtrickle.pgt_stream_tables"));
        assertEquals(0, engine.stats().lockedElsewhere(),
                "one engine alone never tries a stream table it is already refreshing (in-flight guard)");
        assertEquals(0, engine.stats().failed());
    }
}
