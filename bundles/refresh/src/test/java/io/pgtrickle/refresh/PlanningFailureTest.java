package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * A planning failure that says nothing about the query (here a lock timeout: a long transaction
 * holds the stream table while the planner needs it for its row index) leaves the stream table
 * unplanned, to be planned again, instead of storing "FULL for good" as if the query could not be
 * maintained differentially.
 */
class PlanningFailureTest {

    private RefreshDatabase db;

    @BeforeEach
    void setUp() throws Exception {
        db = new RefreshDatabase("planning_failure");
        db.exec("CREATE TABLE src (id int PRIMARY KEY, v int)", "INSERT INTO src VALUES (1, 1)",
                "SELECT pgtrickle.create_stream_table('copied', 'SELECT id, v FROM src', 'calculated', refresh_mode => 'DIFFERENTIAL')",
                "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET lock_timeout = ''200ms''', current_database()); END $$");
    }

    @AfterEach
    void tearDown() {
        db.close();
    }

    @Test
    void aLockTimeoutWhilePlanningIsRetriedNotTurnedIntoFull() throws Exception {
        try (Connection holder = db.connect(); Statement s = holder.createStatement()) {
            holder.setAutoCommit(false);
            s.execute("LOCK TABLE copied IN ACCESS EXCLUSIVE MODE");
            SQLException e = assertThrows(SQLException.class, () -> db.plan("copied"));
            assertEquals("55P03", e.getSQLState(), e.getMessage());
            holder.rollback();
        }
        assertEquals("DIFFERENTIAL|true|", db.queryString("SELECT refresh_mode || '|' || (delta_sql IS NULL) || '|'"
                + " || coalesce(refresh_mode_reason, '') FROM pgtrickle.pgt_stream_tables"), "no verdict on the query");
        db.plan("copied");
        assertEquals("DIFFERENTIAL|false|", db.queryString("SELECT refresh_mode || '|' || (delta_sql IS NULL) || '|'"
                + " || coalesce(refresh_mode_reason, '') FROM pgtrickle.pgt_stream_tables"));
        db.exec("INSERT INTO src VALUES (2, 2)", "SELECT pgtrickle.refresh_stream_table('copied')");
        assertEquals("DIFFERENTIAL", db.queryString("SELECT action FROM pgtrickle.get_refresh_history('copied', 1)"));
        assertEquals(0, db.difference("copied"));
    }
}
