package io.pgtrickle.refresh;

import static io.pgtrickle.refresh.RefreshDatabase.await;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.sql.Connection;
import java.sql.Statement;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * A session holding a new stream table's lock (which planning needs for the row index) does not
 * stop the scheduler: the tick puts that stream table's planning off and goes on planning, probing
 * and refreshing the others, and plans it once the lock is gone.
 */
class PlanningLockTest {

    private RefreshDatabase db;
    private RefreshEngine engine;

    @BeforeEach
    void setUp() throws Exception {
        db = new RefreshDatabase("planning_lock");
        // 'held' first: the tick plans in pgt_id order, so before the fix it never got past it
        db.exec("CREATE TABLE src (id int PRIMARY KEY, v int NOT NULL)",
                "INSERT INTO src VALUES (1, 1)",
                "SELECT pgtrickle.create_stream_table('held', 'SELECT id, v FROM src')",
                "SELECT pgtrickle.create_stream_table('free', 'SELECT id, v FROM src WHERE v > 0')");
    }

    @AfterEach
    void tearDown() {
        if (engine != null) {
            engine.close();
        }
        db.close();
    }

    @Test
    void aLockedNewStreamTableDoesNotStopTheOthers() throws Exception {
        try (Connection holder = db.connect(); Statement s = holder.createStatement()) {
            holder.setAutoCommit(false);
            s.execute("LOCK TABLE held IN ACCESS EXCLUSIVE MODE");
            engine = new RefreshEngine(db.dataSource(), new EngineSettings(200, 2, 3, 0, 0), new Listeners());
            engine.start();
            await("free is planned past held", () -> db.queryLong(
                    "SELECT count(*) FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'free' AND delta_sql IS NOT NULL") == 1);
            db.exec("INSERT INTO src VALUES (2, 2)");
            await("free follows its source while held is locked", () -> db.queryLong("SELECT count(*) FROM free") == 2);
            assertEquals("DIFFERENTIAL", db.queryString("SELECT action FROM pgtrickle.get_refresh_history('free', 1)"));
            assertEquals(1, db.queryLong("SELECT count(*) FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'held' AND delta_sql IS NULL"),
                    "held waits for its lock");
            holder.rollback();
        }
        await("held is planned once the lock is gone", () -> db.queryLong(
                "SELECT count(*) FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'held' AND delta_sql IS NOT NULL") == 1);
        await("and follows its source", () -> db.queryLong("SELECT count(*) FROM held") == 2);
        assertEquals(0, db.difference("held"));
        assertEquals(0, db.difference("free"));
    }
}
