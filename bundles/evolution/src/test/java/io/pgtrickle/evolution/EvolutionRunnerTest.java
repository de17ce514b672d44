package io.pgtrickle.evolution;

import static io.pgtrickle.testing.MigratedDatabase.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** The runner against a real database: it takes evolutions to the swap, rolls failed ones back, and resumes after a stop. */
class EvolutionRunnerTest {

    private static final String OLD = "SELECT id, customer, amount FROM orders WHERE amount > 5";
    private static final String NEW = "SELECT o.id, o.customer, o.amount, c.region FROM orders o JOIN customers c ON c.name = o.customer";

    private EvolutionDatabase db;
    private EvolutionRunner runner;

    private void ordersAndAStreamTable(int rows) throws SQLException {
        db = new EvolutionDatabase("evolution_runner", 0);
        db.exec("CREATE TABLE orders (id int PRIMARY KEY, customer text, amount numeric)",
                "CREATE TABLE customers (name text PRIMARY KEY, region text)",
                "INSERT INTO orders SELECT g, 'c' || (g % 10), g % 20 FROM generate_series(1, " + rows + ") g",
                "INSERT INTO customers SELECT 'c' || g, 'r' || (g % 3) FROM generate_series(0, 9) g",
                "SELECT pgtrickle.create_stream_table('big_orders', '" + OLD + "', schedule => '1h')");
    }

    @AfterEach
    void stop() {
        if (runner != null) {
            runner.close();
        }
        if (db != null) {
            db.close();
        }
    }

    @Test
    void takesAnEvolutionStartedFromSqlToTheSwap() throws Exception {
        ordersAndAStreamTable(1_000);
        runner = new EvolutionRunner(db.dataSource(), 50);
        runner.start();
        db.exec("SELECT pgtrickle.alter_query('big_orders', '" + NEW + "', shadow_build => true)");
        await("the swap", () -> "converged".equals(db.status("status", "big_orders")));
        assertEquals("0|0", db.difference(NEW, "big_orders"));
        assertEquals("SWAPPED|1000", db.status("phase || '|' || shadow_rows", "big_orders"));
    }

    @Test
    void anEvolutionStartedWhileTheRunnerWaitsIsTakenUpAtTheNextPoll() throws Exception {
        ordersAndAStreamTable(100);
        runner = new EvolutionRunner(db.dataSource(), 60_000);
        runner.start();
        Thread.sleep(2_000); // its first look, at once, finds nothing; the next is a minute away
        db.exec("SELECT pgtrickle.alter_query('big_orders', '" + NEW + "', shadow_build => true)");
        Thread.sleep(3_000);
        assertEquals("in_progress|BUILDING", db.status("status || '|' || phase", "big_orders"), "not before the next poll, a minute away");
        runner.close();

        runner = new EvolutionRunner(db.dataSource(), 100);
        runner.start();
        await("the swap", () -> "converged".equals(db.status("status", "big_orders")));
    }

    @Test
    void aStepThatFailsEndsTheEvolutionAndDropsTheShadow() throws Exception {
        ordersAndAStreamTable(1_000);
        runner = new EvolutionRunner(db.dataSource(), 50);
        runner.start();
        db.exec("SELECT pgtrickle.alter_query('big_orders', 'SELECT id, 100 / (amount - 5) AS ratio FROM orders', shadow_build => true)");
        await("the failure", () -> "failed".equals(db.status("status", "big_orders")));
        assertTrue(db.status("error", "big_orders").contains("division by zero"), db.status("error", "big_orders"));
        assertEquals(0, db.queryLong("SELECT count(*) FROM pg_class WHERE relname = '__pgt_shadow_big_orders'"));
        assertEquals(0, db.queryLong("SELECT count(*) FROM pgtrickle.pgt_stream_tables WHERE shadow_of IS NOT NULL"));
        assertEquals("0|0", db.difference(OLD, "big_orders"));
    }

    @Test
    void stoppedInTheMiddleOfABuildItLeavesNothingHalfDoneAndTheNextRunnerFinishes() throws Exception {
        ordersAndAStreamTable(10_000);
        db.exec("SELECT pgtrickle.alter_query('big_orders', '" + NEW + "', shadow_build => true)");
        // Another session holds customers, so the build is surely still running when the container stops;
        // a large table alone raced a fast machine, whose build committed before close() came.
        try (Connection holder = db.dataSource().getConnection(); Statement hold = holder.createStatement()) {
            holder.setAutoCommit(false);
            hold.execute("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE");
            runner = new EvolutionRunner(db.dataSource(), 50);
            runner.start();
            await("the build waiting for customers", () -> db.queryLong("SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
                    + " AND wait_event_type = 'Lock' AND query LIKE 'SELECT pgtrickle.evolution_step%'") == 1);
            runner.close(); // the container stops: the build is cancelled and rolls back
            runner = null;
            holder.rollback();
        }
        assertEquals("in_progress|BUILDING|0", db.status("status || '|' || phase || '|' || shadow_rows", "big_orders"));
        assertFalse(db.queryString("SELECT string_agg(relname, ',') FROM pg_class WHERE relname LIKE '\\_\\_pgt\\_%' AND relkind = 'i'") != null,
                "no index was left behind");

        runner = new EvolutionRunner(db.dataSource(), 50);
        runner.start();
        await("the swap", () -> "converged".equals(db.status("status", "big_orders")));
        assertEquals("0|0", db.difference(NEW, "big_orders"));
    }

    @Test
    void transientFailuresAreRetriedOthersEndTheEvolution() {
        assertTrue(EvolutionRunner.transientFailure(new SQLException("gone", "08006")));
        assertTrue(EvolutionRunner.transientFailure(new SQLException("deadlock", "40P01")));
        assertTrue(EvolutionRunner.transientFailure(new SQLException("shutting down", "57P01")));
        assertFalse(EvolutionRunner.transientFailure(new SQLException("division by zero", "22012")));
        assertFalse(EvolutionRunner.transientFailure(new SQLException("no such column", "42703")));
    }
}
