package io.pgtrickle.evolution;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.pgtrickle.testing.MigratedDatabaseTest;
import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.postgresql.PGConnection;
import org.postgresql.PGNotification;

/**
 * Shadow evolution (zero-downtime ALTER QUERY) through the SQL API, stepped by hand the way the
 * evolution bundle steps it: each {@code evolution_step} call in its own transaction.
 */
class EvolutionTest extends MigratedDatabaseTest {

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String OLD = "SELECT id, customer, amount FROM orders WHERE amount > 5";
    private static final String NEW = "SELECT o.id, o.customer, o.amount, r.region FROM orders o JOIN customers r ON r.name = o.customer";

    EvolutionTest() {
        super("evolution");
    }

    @BeforeEach
    void ordersAndAStreamTable() throws SQLException {
        exec("CREATE TABLE orders (id int PRIMARY KEY, customer text, amount numeric)");
        exec("CREATE TABLE customers (name text PRIMARY KEY, region text)");
        exec("INSERT INTO orders SELECT g, 'c' || (g % 10), g % 20 FROM generate_series(1, 200) g");
        exec("INSERT INTO customers SELECT 'c' || g, CASE WHEN g < 5 THEN 'north' ELSE 'south' END FROM generate_series(0, 8) g");
        exec("SELECT pgtrickle.create_stream_table('big_orders', '" + OLD + "', schedule => '1h')");
        exec("SET pg_trickle.shadow_build_enabled = on");
        exec("SET pg_trickle.shadow_refresh_throttle_ms = 0");
        // no engine runs here to plan the shadow: catch-ups need not leave it room to
        exec("SET pg_trickle.scheduler_interval_ms = 0");
    }

    @Test
    void theFlagIsOffByDefaultAndNamedInTheError() throws SQLException {
        exec("RESET pg_trickle.shadow_build_enabled");
        assertFails("SELECT pgtrickle.alter_query('big_orders', '" + NEW + "', shadow_build => true)",
                "set pg_trickle.shadow_build_enabled = on", "0A000");
        assertFails("SELECT pgtrickle.alter_stream_table('big_orders', query => '" + NEW + "', shadow_build => true)",
                "pg_trickle.shadow_build_enabled", "0A000");
        assertNothingOfAnEvolution();
        // without shadow_build the query is rebuilt in place, flag or not
        exec("SELECT pgtrickle.alter_query('big_orders', '" + NEW + "')");
        assertEquals(string("SELECT count(*) FROM (" + NEW + ") q"), string("SELECT count(*) FROM big_orders"));
    }

    @Test
    void badRequestsAreRefusedAndLeaveNothingBehind() throws SQLException {
        String alter = "SELECT pgtrickle.alter_query('big_orders', '%s', shadow_build => true)";
        assertFails(String.format(alter, "SELEC nonsense"), "invalid query for stream table big_orders", "42601");
        assertFails(String.format(alter, "SELECT * FROM no_such_table"), "no_such_table", "42P01");
        assertFails("SELECT pgtrickle.alter_stream_table('big_orders', query => 'SELECT id, random() AS r FROM orders', refresh_mode => 'DIFFERENTIAL', shadow_build => true)", "DIFFERENTIAL refresh cannot maintain", "0A000");
        assertFails(String.format(alter, "SELECT id FROM big_orders"), "reads big_orders itself", "42P19");
        assertFails("SELECT pgtrickle.alter_stream_table('big_orders', schedule => '5m', shadow_build => true)", "needs a new query", "22023");
        assertFails(String.format(alter, "SELECT 1 AS __pgt_x"), "reserved", "42939");
        assertFails("SELECT pgtrickle.alter_query('nope', '" + NEW + "', shadow_build => true)", "does not exist", "42P01");
        exec("CREATE MATERIALIZED VIEW big_orders_summary AS SELECT count(*) FROM big_orders");
        assertFails(String.format(alter, NEW), "materialized view big_orders_summary", "2BP01");
        exec("DROP MATERIALIZED VIEW big_orders_summary");
        assertNothingOfAnEvolution();
        assertEquals("1h", string("SELECT schedule FROM pgtrickle.pgt_stream_tables"), "the failed call changed nothing else");

        // an unprivileged caller may not read the sources (the query's own privileges are checked)
        exec("CREATE ROLE evolution_nobody");
        exec("GRANT USAGE ON SCHEMA pgtrickle TO evolution_nobody");
        exec("SET ROLE evolution_nobody");
        SQLException denied = assertThrows(SQLException.class, () -> exec(String.format(alter, NEW)));
        exec("RESET ROLE");
        assertTrue(denied.getMessage().contains("permission denied"), denied.getMessage());
        assertNothingOfAnEvolution();
    }

    @Test
    void aSecondEvolutionIsRefusedWhileOneRuns() throws SQLException {
        long ev = start(NEW);
        assertFails("SELECT pgtrickle.alter_query('big_orders', 'SELECT id FROM orders', shadow_build => true)",
                "an evolution of big_orders is already in progress (evolution " + ev, "55006");
        assertFails("SELECT pgtrickle.alter_stream_table('big_orders', query => 'SELECT id FROM orders')",
                "an evolution of big_orders is in progress", "55006");
        // other changes are fine meanwhile
        exec("SELECT pgtrickle.alter_stream_table('big_orders', schedule => '5m')");
        assertEquals("5m", string("SELECT schedule FROM pgtrickle.pgt_stream_tables WHERE shadow_of IS NULL"));
    }

    @Test
    void theShadowIsBuiltCaughtUpAndSwappedInWithEverythingTheUserAdded() throws Exception {
        exec("CREATE INDEX big_orders_customer ON big_orders (customer)");
        exec("ALTER TABLE big_orders ADD CONSTRAINT big_orders_key PRIMARY KEY (id)");
        exec("CREATE INDEX big_orders_amount ON big_orders (amount) WHERE amount > 10");
        exec("COMMENT ON TABLE big_orders IS 'orders worth a look'");
        exec("COMMENT ON COLUMN big_orders.customer IS 'who'");
        exec("CREATE ROLE evolution_reader");
        exec("GRANT SELECT ON big_orders TO evolution_reader");
        exec("SELECT pgtrickle.subscribe('big_orders', 'big_orders_events')");
        exec("SET pg_trickle.notify_coalesce_ms = 0");
        String oldRelid = string("SELECT 'big_orders'::regclass::oid::text");
        Connection listener = db.connect();
        try (Statement s = listener.createStatement()) {
            s.execute("LISTEN big_orders_events");
        }

        long ev = start(NEW);
        assertEquals("true|public.__pgt_shadow_big_orders", string("SELECT in_shadow_build || '|' || shadow_table_name"
                + " FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'big_orders'"));
        assertEquals("in_progress|BUILDING|0", status("status || '|' || phase || '|' || shadow_rows"));
        assertEquals(List.of("public.big_orders"), strings("SELECT name FROM pgtrickle.pgt_status()"), "the shadow is not a stream table of its own");
        assertFails("SELECT pgtrickle.refresh_stream_table('__pgt_shadow_big_orders')", "is the shadow of an evolution", "42809");

        // built: the new query's rows, the applicable indexes (under temporary names), live untouched
        assertEquals(0, step(ev));
        assertEquals("in_progress|CATCHING_UP|1", status("status || '|' || phase || '|' || build_progress"));
        assertSameRows(NEW, "__pgt_shadow_big_orders");
        assertSameRows(OLD, "big_orders");
        assertEquals(3, Integer.parseInt(string("SELECT count(*) FROM pg_indexes WHERE tablename = '__pgt_shadow_big_orders'")));

        // the live table keeps refreshing with the old query while sources change
        exec("INSERT INTO orders VALUES (1001, 'c1', 50), (1002, 'c9', 1)");
        exec("UPDATE customers SET region = 'east' WHERE name = 'c2'");
        exec("DELETE FROM orders WHERE id = 3");
        exec("SELECT pgtrickle.refresh_stream_table('big_orders')");
        assertSameRows(OLD, "big_orders");

        // catches up, converges, swaps
        assertEquals(0, step(ev), "caught up with the live frontier: swap next");
        assertEquals("SWAPPING", status("phase"));
        exec("INSERT INTO orders VALUES (1003, 'c4', 30)"); // the swap's last catch-up takes it
        assertNull(stepOrNull(ev));

        assertEquals("converged|SWAPPED", status("status || '|' || phase"));
        assertSameRows(NEW, "big_orders");
        assertNotEquals(oldRelid, string("SELECT 'big_orders'::regclass::oid::text"));
        assertEquals("false|", string("SELECT in_shadow_build || '|' || coalesce(shadow_table_name, '') FROM pgtrickle.pgt_stream_tables"));
        assertEquals("1", string("SELECT count(*) FROM pgtrickle.pgt_stream_tables"));
        assertEquals(null, string("SELECT to_regclass('__pgt_shadow_big_orders')"));
        assertEquals("orders worth a look|who", string("SELECT obj_description('big_orders'::regclass, 'pg_class') || '|' "
                + "|| col_description('big_orders'::regclass, 2)"));
        assertEquals("t", string("SELECT has_table_privilege('evolution_reader', 'big_orders', 'SELECT')"));
        assertEquals(List.of("big_orders_amount", "big_orders_customer", "big_orders_key"),
                strings("SELECT indexname FROM pg_indexes WHERE tablename = 'big_orders' ORDER BY 1"));
        assertEquals("p", string("SELECT contype FROM pg_constraint WHERE conname = 'big_orders_key' AND conrelid = 'big_orders'::regclass"));
        assertEquals(List.of("pgt_guard_truncate", "pgt_guard_write"),
                strings("SELECT tgname FROM pg_trigger WHERE tgrelid = 'big_orders'::regclass ORDER BY 1"));
        assertFails("DELETE FROM big_orders", "only its refreshes write it", "0A000");

        // subscribers: one notification marked as an evolution, counting the old-to-new difference
        String[] diff = string("SELECT inserted_count || ' ' || deleted_count || ' ' || refresh_id FROM pgtrickle.pgt_evolutions").split(" ");
        assertEquals(string("SELECT count(*) FROM big_orders"), diff[0], "every row differs: the new query has another column");
        List<JsonNode> heard = drain(listener);
        assertEquals(2, heard.size(), "the live table's refresh during the build, then the swap: " + heard);
        assertFalse(heard.get(0).has("evolution"));
        JsonNode swap = heard.get(1);
        assertTrue(swap.get("evolution").asBoolean());
        assertEquals(Long.parseLong(diff[0]), swap.get("inserted_count").asLong());
        assertEquals(Long.parseLong(diff[1]), swap.get("deleted_count").asLong());
        assertEquals(Long.parseLong(diff[2]), swap.get("refresh_id").asLong());
        assertEquals("REINITIALIZE|COMPLETED", string("SELECT action || '|' || status FROM pgtrickle.pgt_refresh_history WHERE refresh_id = " + diff[2]));

        // the new query is live: the next refresh follows it, and the subscription still hears
        exec("INSERT INTO orders VALUES (1004, 'c0', 2)");
        exec("SELECT pgtrickle.refresh_stream_table('big_orders')");
        assertSameRows(NEW, "big_orders");
        assertEquals(1, drain(listener).size());
        listener.close();

        // nothing of the shadow is left: no catalog row, no capture consumer, no stray objects
        assertEquals("0", string("SELECT count(*) FROM pgtrickle.pgt_change_tracking t, unnest(t.tracked_by_pgt_ids) c"
                + " WHERE c NOT IN (SELECT pgt_id FROM pgtrickle.pgt_stream_tables)"));
        assertEquals(List.of("customers", "orders"), strings("SELECT c.relname FROM pgtrickle.pgt_change_tracking t"
                + " JOIN pg_class c ON c.oid = t.source_relid ORDER BY 1"));
        assertEquals("0", string("SELECT count(*) FROM pg_class WHERE relname LIKE '\\_\\_pgt\\_%'"));
    }

    @Test
    void sameColumnsCountOnlyTheRowsThatDifferAndDownstreamStreamTablesStayCorrect() throws Exception {
        String downstream = "SELECT customer, count(*) AS n FROM big_orders GROUP BY customer";
        exec("SELECT pgtrickle.create_stream_table('per_customer', '" + downstream + "', schedule => '1h')");
        exec("SELECT pgtrickle.subscribe('big_orders', 'big_orders_events')");
        String wider = "SELECT id, customer, amount FROM orders WHERE amount > 2";
        long ev = start(wider);
        step(ev);
        step(ev);
        assertNull(stepOrNull(ev));
        assertSameRows(wider, "big_orders");
        String expectedMore = string("SELECT count(*) FROM orders WHERE amount > 2 AND amount <= 5");
        assertEquals(expectedMore + "|0", string("SELECT inserted_count || '|' || deleted_count FROM pgtrickle.pgt_evolutions"));

        // the downstream stream table recomputes from the new storage, then follows it differentially
        exec("SELECT pgtrickle.refresh_stream_table('per_customer')");
        assertSameRows("SELECT customer, count(*) AS n FROM (" + wider + ") q GROUP BY customer", "per_customer");
        exec("INSERT INTO orders VALUES (2000, 'c3', 4), (2001, 'zed', 9)");
        exec("SELECT pgtrickle.refresh_stream_table('big_orders')");
        exec("SELECT pgtrickle.refresh_stream_table('per_customer')");
        assertSameRows("SELECT customer, count(*) AS n FROM (" + wider + ") q GROUP BY customer", "per_customer");
    }

    @Test
    void downstreamColumnsMustStay() throws SQLException {
        exec("SELECT pgtrickle.create_stream_table('per_customer', 'SELECT customer, count(*) AS n FROM big_orders GROUP BY customer')");
        assertFails("SELECT pgtrickle.alter_query('big_orders', 'SELECT id, amount FROM orders', shadow_build => true)",
                "drops or retypes columns that other stream tables may read: customer text", "2BP01");
        assertNothingOfAnEvolution();
    }

    @Test
    void aQueryThatFailsAtRunTimeRollsBackAndTheLiveTableKeepsRefreshing() throws SQLException {
        // valid, maintainable, and dividing by zero for the order whose amount is 5
        long ev = start("SELECT o.id, 100 / (o.amount - 5) AS ratio, c.region FROM orders o JOIN customers c ON c.name = o.customer");
        assertEquals("t", string("SELECT EXISTS (SELECT FROM pgtrickle.pgt_change_tracking WHERE source_relid = 'customers'::regclass)"),
                "the new query's own source is captured from the start");
        SQLException failed = assertThrows(SQLException.class, () -> step(ev));
        assertEquals("22012", failed.getSQLState());
        exec("SELECT pgtrickle.fail_evolution(" + ev + ", '" + failed.getMessage().replace("'", "''") + "')");

        assertEquals("failed|FAILED|true", status("status || '|' || phase || '|' || (error LIKE '%division by zero%')"));
        assertNothingOfAnEvolutionButItsRecord();
        assertEquals("f", string("SELECT EXISTS (SELECT FROM pgtrickle.pgt_change_tracking WHERE source_relid = 'customers'::regclass)"),
                "capture set up for the shadow alone is gone");
        assertEquals("0", string("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'customers'::regclass"));
        exec("INSERT INTO orders VALUES (3000, 'c1', 99)");
        exec("SELECT pgtrickle.refresh_stream_table('big_orders')");
        assertSameRows(OLD, "big_orders");
        // and a new evolution may start
        start(NEW);
    }

    @Test
    void anEvolutionThatCannotConvergeInTimeIsRolledBack() throws SQLException {
        long ev = start(NEW);
        exec("SET pg_trickle.shadow_convergence_timeout = '1ms'");
        exec("SELECT pg_sleep(0.01)");
        assertNull(stepOrNull(ev));
        assertEquals("failed|true", status("status || '|' || (error LIKE 'did not converge within pg_trickle.shadow_convergence_timeout (00:00:00.001; phase BUILDING)')"));
        assertNothingOfAnEvolutionButItsRecord();
        assertSameRows(OLD, "big_orders");
        // a number is milliseconds; an unreadable value falls back to the default (1 hour) with a warning
        exec("SET pg_trickle.shadow_convergence_timeout = '60000'");
        assertEquals("00:01:00", string("SELECT pgtrickle.shadow_convergence_timeout()::text"));
        exec("SET pg_trickle.shadow_convergence_timeout = 'soon'");
        assertEquals("01:00:00", string("SELECT pgtrickle.shadow_convergence_timeout()::text"));
    }

    @Test
    void theThrottleSpacesCatchUpRefreshes() throws SQLException {
        long ev = start(NEW);
        exec("SET pg_trickle.shadow_refresh_throttle_ms = 60000");
        assertEquals(60000, step(ev), "built; the first catch-up is a throttle interval away");
        int wait = step(ev);
        assertTrue(wait > 50000 && wait <= 60000, "still throttled: " + wait);
        assertEquals("CATCHING_UP|0", status("phase || '|' || catch_up_refreshes"));
        exec("SET pg_trickle.shadow_refresh_throttle_ms = 0");
        assertEquals(0, step(ev));
        assertEquals("SWAPPING|1", status("phase || '|' || catch_up_refreshes"));
    }

    @Test
    void whileTheShadowAwaitsItsPlanCatchUpsLeaveTheEngineASchedulerInterval() throws SQLException {
        long ev = start(NEW);
        exec("SET pg_trickle.scheduler_interval_ms = 60000");
        assertEquals(0, step(ev), "built");
        int wait = step(ev);
        assertTrue(wait > 50000 && wait <= 60000, "a throttle of 0 waits for the planner: " + wait);
        assertEquals("CATCHING_UP|0", status("phase || '|' || catch_up_refreshes"));

        // once planned (refused here, so FULL: nothing left to wait for), the throttle alone counts
        exec("SELECT pgtrickle.set_refresh_plan(s.pgt_id, s.defining_query, NULL, 'test: no plan', NULL, NULL)"
                + " FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_name = '__pgt_shadow_big_orders'");
        assertEquals(0, step(ev));
        assertEquals("SWAPPING|1", status("phase || '|' || catch_up_refreshes"));
    }

    @Test
    void aReaderHoldingTheTableMakesTheSwapGiveUpQuicklyAndTryAgain() throws Exception {
        long ev = start(NEW);
        step(ev);
        step(ev);
        String before = string("SELECT 'big_orders'::regclass::oid::text");
        try (Connection reader = db.connect()) {
            reader.setAutoCommit(false);
            try (Statement s = reader.createStatement()) {
                s.execute("SELECT count(*) FROM big_orders"); // a long read holds ACCESS SHARE until it ends
                int wait = step(ev);
                assertTrue(wait >= 100, "backs off: " + wait);
                assertEquals("SWAPPING|5", status("phase || '|' || swap_attempts"), "five tries in the step");
                assertEquals(before, string("SELECT 'big_orders'::regclass::oid::text"), "nothing swapped");
                // a longer lock timeout outwaits the reader, which ends in the meantime
                exec("SET pg_trickle.shadow_swap_lock_timeout_ms = 20000");
                exec("SELECT pg_sleep(" + (wait + 50) / 1000.0 + ")");
                CompletableFuture<Void> readerEnds = CompletableFuture.runAsync(() -> {
                    try {
                        Thread.sleep(300);
                        reader.commit();
                    } catch (Exception e) {
                        throw new IllegalStateException(e);
                    }
                });
                assertNull(stepOrNull(ev));
                readerEnds.join();
            }
        }
        assertEquals("converged|5", status("status || '|' || swap_attempts"));
        assertSameRows(NEW, "big_orders");
    }

    @Test
    void cancelDropAndAnAbandonedStepLeaveNoOrphans() throws SQLException {
        long ev = start(NEW);
        // a container that dies in the middle of the build: its transaction rolls back, the step is redone
        c.setAutoCommit(false);
        step(ev);
        c.rollback();
        c.setAutoCommit(true);
        assertEquals("BUILDING|0", status("phase || '|' || shadow_rows"));
        assertEquals(0, step(ev));
        assertEquals("CATCHING_UP", status("phase"));

        exec("SELECT pgtrickle.cancel_evolution('big_orders')");
        assertEquals("cancelled|CANCELLED|cancelled by " + string("SELECT current_user"), status("status || '|' || phase || '|' || error"));
        assertNothingOfAnEvolutionButItsRecord();
        assertFails("SELECT pgtrickle.cancel_evolution('big_orders')", "no evolution of big_orders is in progress", "42704");
        assertNull(stepOrNull(ev), "a step of a cancelled evolution does nothing");

        start(NEW);
        exec("SELECT pgtrickle.drop_stream_table('big_orders')");
        assertEquals("0", string("SELECT count(*) FROM pgtrickle.pgt_stream_tables"));
        assertEquals("0", string("SELECT count(*) FROM pgtrickle.pgt_evolutions"));
        assertEquals(null, string("SELECT to_regclass('__pgt_shadow_big_orders')"));
        assertEquals("0", string("SELECT count(*) FROM pgtrickle.pgt_change_tracking"));
    }

    @Test
    void statusReadWhileTheEvolutionEndsReportsItsEnd() throws Exception {
        step(start(NEW));
        try (Connection canceller = db.connect(); Connection watcher = db.connect()) {
            canceller.setAutoCommit(false);
            try (Statement s = canceller.createStatement()) {
                s.execute("SELECT pgtrickle.cancel_evolution('big_orders')"); // drops the shadow, not yet committed
            }
            CompletableFuture<String> read = CompletableFuture.supplyAsync(() -> {
                try (Statement s = watcher.createStatement();
                        var rs = s.executeQuery("SELECT status || '|' || phase FROM pgtrickle.view_evolution_status('big_orders')")) {
                    rs.next();
                    return rs.getString(1);
                } catch (SQLException e) {
                    throw new IllegalStateException(e);
                }
            });
            // counting the shadow's rows waits for the cancel's lock on it
            long deadline = System.currentTimeMillis() + 10_000;
            while (!"t".equals(string("SELECT EXISTS (SELECT FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    + " AND query LIKE '%view_evolution_status%')"))) {
                assertTrue(System.currentTimeMillis() < deadline, "the status read never waited for the cancel");
                Thread.sleep(20);
            }
            canceller.commit();
            assertEquals("cancelled|CANCELLED", read.get());
        }
    }

    @Test
    void statusListsEveryEvolutionNewestFirst() throws SQLException {
        long first = start(NEW);
        exec("SELECT pgtrickle.cancel_evolution('big_orders')");
        long second = start("SELECT id, customer FROM orders");
        assertEquals(List.of(second + "|in_progress|public.big_orders", first + "|cancelled|public.big_orders"),
                strings("SELECT evolution_id || '|' || status || '|' || stream_table FROM pgtrickle.view_evolution_status()"));
        assertEquals(second + "|SELECT id, customer FROM orders|" + string("SELECT count(*) FROM big_orders"),
                string("SELECT evolution_id || '|' || new_query || '|' || live_rows FROM pgtrickle.view_evolution_status('big_orders')"));
    }

    // What users put on a stream table is carried over to the new storage by the swap ...

    @Test
    void dependentViewsAreRecreatedOnTheNewStorageWithTheirOptionsOwnersCommentsAndGrants() throws SQLException {
        exec("CREATE ROLE evolution_view_owner");
        exec("CREATE ROLE evolution_viewer");
        exec("GRANT SELECT ON big_orders TO evolution_view_owner");
        exec("CREATE VIEW big_view WITH (security_barrier) AS SELECT id, customer, amount FROM big_orders WHERE amount > 10"
                + " WITH LOCAL CHECK OPTION");
        exec("CREATE VIEW per_customer_view AS SELECT customer, count(*) AS n FROM big_view GROUP BY customer");
        exec("CREATE SCHEMA reports");
        exec("CREATE VIEW reports.\"Top Orders\" AS SELECT v.customer, v.n, b.id FROM per_customer_view v JOIN big_orders b USING (customer)");
        exec("ALTER VIEW big_view OWNER TO evolution_view_owner");
        exec("GRANT SELECT ON big_view TO evolution_viewer");
        exec("GRANT SELECT (customer) ON per_customer_view TO evolution_viewer");
        exec("COMMENT ON VIEW big_view IS 'the big ones'");
        exec("COMMENT ON COLUMN big_view.customer IS 'who'");
        // a stream table that reads one of the views knows it by OID
        exec("SELECT pgtrickle.create_stream_table('customer_counts', 'SELECT customer, n FROM per_customer_view', schedule => '1h')");

        swap(start(NEW));

        String big = "SELECT id, customer, amount FROM (" + NEW + ") q WHERE amount > 10";
        String perCustomer = "SELECT customer, count(*) AS n FROM (" + big + ") b GROUP BY customer";
        assertSameRows(big, "big_view");
        assertSameRows(perCustomer, "per_customer_view");
        assertSameRows("SELECT v.customer, v.n, b.id FROM (" + perCustomer + ") v JOIN (" + NEW + ") b USING (customer)",
                "reports.\"Top Orders\"");
        assertEquals("evolution_view_owner|the big ones|who|{check_option=local,security_barrier=true}",
                string("SELECT c.relowner::regrole || '|' || obj_description(c.oid, 'pg_class') || '|' || col_description(c.oid, 2)"
                        + " || '|' || (SELECT array_agg(o ORDER BY o) FROM unnest(c.reloptions) o)::text FROM pg_class c WHERE c.oid = 'big_view'::regclass"));
        exec("SET ROLE evolution_viewer");
        String seen = string("SELECT count(*) FROM big_view") + "|" + string("SELECT count(customer) FROM per_customer_view");
        SQLException notGranted = assertThrows(SQLException.class, () -> exec("SELECT n FROM per_customer_view"));
        exec("RESET ROLE");
        assertEquals(string("SELECT count(*) FROM (" + big + ") b") + "|" + string("SELECT count(*) FROM (" + perCustomer + ") p"), seen);
        assertEquals("42501", notGranted.getSQLState(), "only the column granted");

        assertEquals(List.of("big_view", "per_customer_view"),
                strings("SELECT d.source_relid::regclass::text FROM pgtrickle.pgt_dependencies d JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)"
                        + " WHERE s.pgt_name = 'customer_counts' AND d.source_type = 'VIEW' ORDER BY 1"));
        exec("SELECT pgtrickle.refresh_stream_table('customer_counts')");
        assertSameRows(perCustomer, "customer_counts");
    }

    @Test
    void aViewCreatedDuringTheEvolutionIsCarriedToo() throws SQLException {
        long ev = start(NEW);
        step(ev);
        exec("CREATE VIEW late_view AS SELECT customer, amount FROM big_orders WHERE amount < 3");
        swap(ev);
        assertSameRows("SELECT customer, amount FROM (" + NEW + ") q WHERE amount < 3", "late_view");
    }

    @Test
    void tableAndColumnGrantsCommentsStorageParametersAndTheOwnerCarryOver() throws SQLException {
        exec("CREATE ROLE evolution_owner");
        exec("CREATE ROLE evolution_columns");
        exec("GRANT SELECT (id, customer) ON big_orders TO evolution_columns");
        exec("COMMENT ON TABLE big_orders IS 'orders'");
        exec("COMMENT ON COLUMN big_orders.amount IS 'how much'");
        exec("ALTER TABLE big_orders SET (fillfactor = 70, autovacuum_enabled = false, toast.autovacuum_enabled = false)");
        long ev = start(NEW);
        assertEquals("{autovacuum_enabled=false,fillfactor=70}", sortedOptions("__pgt_shadow_big_orders"),
                "the build fills the shadow as the live table is filled");
        // changed while the evolution runs
        exec("ALTER TABLE big_orders OWNER TO evolution_owner");
        exec("ALTER TABLE big_orders SET (fillfactor = 80)");

        swap(ev);

        assertEquals("evolution_owner", string("SELECT relowner::regrole::text FROM pg_class WHERE oid = 'big_orders'::regclass"));
        assertEquals("{autovacuum_enabled=false,fillfactor=80}", sortedOptions("big_orders"));
        assertEquals("{autovacuum_enabled=false}", string("SELECT t.reloptions::text FROM pg_class c JOIN pg_class t ON t.oid = c.reltoastrelid"
                + " WHERE c.oid = 'big_orders'::regclass"));
        assertEquals("orders|how much", string("SELECT obj_description('big_orders'::regclass, 'pg_class') || '|' "
                + "|| col_description('big_orders'::regclass, 3)"));
        assertEquals("true|true|false", string("SELECT has_column_privilege('evolution_columns', 'big_orders', 'id', 'SELECT') || '|' ||"
                + " has_column_privilege('evolution_columns', 'big_orders', 'customer', 'SELECT') || '|' ||"
                + " has_column_privilege('evolution_columns', 'big_orders', 'amount', 'SELECT')"));
        exec("SET ROLE evolution_columns");
        String seen = string("SELECT count(DISTINCT (id, customer)) FROM big_orders");
        exec("RESET ROLE");
        assertEquals(string("SELECT count(*) FROM (" + NEW + ") q"), seen);
    }

    @Test
    void policiesAndRowLevelSecurityCarryOver() throws SQLException {
        exec("CREATE ROLE evolution_tenant");
        exec("GRANT SELECT ON big_orders TO evolution_tenant");
        exec("ALTER TABLE big_orders ENABLE ROW LEVEL SECURITY");
        exec("ALTER TABLE big_orders FORCE ROW LEVEL SECURITY");
        exec("CREATE POLICY tenant_c1 ON big_orders FOR SELECT TO evolution_tenant USING (customer = 'c1')");
        exec("CREATE POLICY big_only ON big_orders AS RESTRICTIVE FOR SELECT TO evolution_tenant USING (amount > 10)");
        exec("COMMENT ON POLICY tenant_c1 ON big_orders IS 'one tenant'");

        swap(start(NEW));

        exec("SET ROLE evolution_tenant");
        String seen = string("SELECT count(*) FROM big_orders");
        exec("RESET ROLE");
        String expected = string("SELECT count(*) FROM (" + NEW + ") q WHERE customer = 'c1' AND amount > 10");
        assertNotEquals("0", expected);
        assertEquals(expected, seen, "the policies filter the new rows");
        assertEquals("true|true", string("SELECT relrowsecurity || '|' || relforcerowsecurity FROM pg_class WHERE oid = 'big_orders'::regclass"));
        assertEquals(List.of("big_only|RESTRICTIVE|SELECT|{evolution_tenant}", "tenant_c1|PERMISSIVE|SELECT|{evolution_tenant}"),
                strings("SELECT policyname || '|' || permissive || '|' || cmd || '|' || roles::text FROM pg_policies"
                        + " WHERE tablename = 'big_orders' ORDER BY 1"));
        assertEquals("one tenant", string("SELECT obj_description(oid, 'pg_policy') FROM pg_policy WHERE polname = 'tenant_c1'"));
    }

    @Test
    void publicationMembershipCarriesOverWithItsColumnListRowFilterAndReplicaIdentity() throws SQLException {
        // a published table's refreshes delete and update rows: they need a replica identity
        exec("ALTER TABLE big_orders REPLICA IDENTITY FULL");
        exec("CREATE PUBLICATION big_orders_all FOR TABLE big_orders");
        exec("CREATE PUBLICATION big_orders_some FOR TABLE big_orders (id, customer) WHERE (id > 10) WITH (publish = 'insert')");

        swap(start(NEW));

        assertEquals(List.of("big_orders_all|{id,customer,amount,region}|", "big_orders_some|{id,customer}|(id > 10)"),
                strings("SELECT pubname || '|' || attnames::text || '|' || coalesce(rowfilter, '') FROM pg_publication_tables"
                        + " WHERE tablename = 'big_orders' ORDER BY 1"));
        assertEquals("f", string("SELECT relreplident FROM pg_class WHERE oid = 'big_orders'::regclass"));
        exec("DELETE FROM orders WHERE id = 7");
        exec("UPDATE orders SET amount = 19 WHERE id = 8");
        exec("SELECT pgtrickle.refresh_stream_table('big_orders')");
        assertSameRows(NEW, "big_orders");
    }

    @Test
    void notNullColumnsAndAReplicaIdentityIndexCarryOver() throws SQLException {
        exec("ALTER TABLE big_orders ALTER COLUMN id SET NOT NULL");
        exec("CREATE UNIQUE INDEX big_orders_id ON big_orders (id)");
        exec("ALTER TABLE big_orders REPLICA IDENTITY USING INDEX big_orders_id");
        exec("CREATE PUBLICATION big_orders_changes FOR TABLE big_orders");

        swap(start(NEW));

        assertEquals("i|big_orders_id", string("SELECT c.relreplident::text || '|' || (SELECT i.indexrelid::regclass::text FROM pg_index i"
                + " WHERE i.indrelid = c.oid AND i.indisreplident) FROM pg_class c WHERE c.oid = 'big_orders'::regclass"));
        assertEquals("true", string("SELECT attnotnull::text FROM pg_attribute WHERE attrelid = 'big_orders'::regclass AND attname = 'id'"));
        exec("DELETE FROM orders WHERE id = 7");
        exec("SELECT pgtrickle.refresh_stream_table('big_orders')");
        assertSameRows(NEW, "big_orders");
    }

    // ... and what cannot be carried over is refused when the evolution starts, by name.

    @Test
    void aForeignKeyReferencingTheStreamTableIsRefused() throws SQLException {
        exec("ALTER TABLE big_orders ADD PRIMARY KEY (id)");
        exec("CREATE TABLE order_notes (order_id int REFERENCES big_orders (id), note text)");
        assertRefused(NEW, "constraint order_notes_order_id_fkey on order_notes");
    }

    @Test
    void aMaterializedViewIsRefused() throws SQLException {
        exec("CREATE VIEW big_view AS SELECT id, customer FROM big_orders");
        exec("CREATE MATERIALIZED VIEW big_snapshot AS SELECT * FROM big_view");
        assertRefused(NEW, "materialized view big_snapshot");
    }

    @Test
    void aViewThatReadsADroppedOrRetypedColumnIsRefused() throws SQLException {
        exec("CREATE VIEW amounts AS SELECT id, amount FROM big_orders");
        assertRefused("SELECT id, customer FROM orders", "view amounts reads column amount (numeric), which the new query drops or retypes");
        assertRefused("SELECT id, customer, amount::int AS amount FROM orders",
                "view amounts reads column amount (numeric), which the new query drops or retypes");
    }

    @Test
    void aRuleIsRefused() throws SQLException {
        exec("CREATE RULE keep_orders AS ON DELETE TO big_orders DO INSTEAD NOTHING");
        assertRefused(NEW, "rule keep_orders on big_orders");
    }

    @Test
    void triggersOfTheUserAreRefused() throws SQLException {
        exec("CREATE FUNCTION evolution_noop() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'");
        exec("CREATE TRIGGER audit AFTER UPDATE ON big_orders FOR EACH STATEMENT EXECUTE FUNCTION evolution_noop()");
        assertRefused(NEW, "trigger audit on big_orders");
        exec("DROP TRIGGER audit ON big_orders");
        exec("CREATE VIEW big_view AS SELECT id, customer FROM big_orders");
        exec("CREATE TRIGGER instead_of_insert INSTEAD OF INSERT ON big_view FOR EACH ROW EXECUTE FUNCTION evolution_noop()");
        assertRefused(NEW, "trigger instead_of_insert on big_view");
    }

    @Test
    void aPolicyOrPublicationThatReadsADroppedColumnIsRefused() throws SQLException {
        exec("CREATE POLICY small ON big_orders USING (amount < 10)");
        assertRefused("SELECT id, customer FROM orders", "policy small on big_orders reads column amount (numeric), which the new query drops or retypes");
        exec("DROP POLICY small ON big_orders");
        exec("CREATE PUBLICATION amounts_only FOR TABLE big_orders (id, amount)");
        assertRefused("SELECT id, customer FROM orders", "publication amounts_only reads column amount (numeric), which the new query drops or retypes");
        exec("DROP PUBLICATION amounts_only");
        exec("CREATE PUBLICATION big_amounts FOR TABLE big_orders WHERE (amount > 3)");
        assertRefused("SELECT id, customer FROM orders", "publication big_amounts reads column amount (numeric), which the new query drops or retypes");
    }

    @Test
    void otherDependentsAreRefusedByName() throws SQLException {
        String[][] cases = {
            {"CREATE TEMP VIEW mine AS SELECT id FROM big_orders", "temporary view mine", "DROP VIEW mine"},
            {"CREATE FUNCTION order_label(big_orders) RETURNS text LANGUAGE sql AS 'SELECT $1.customer'", "function order_label(big_orders)",
                "DROP FUNCTION order_label(big_orders)"},
            {"CREATE TABLE order_archive () INHERITS (big_orders)", "table order_archive", "DROP TABLE order_archive"},
            {"CREATE STATISTICS order_stats ON id, customer FROM big_orders", "statistics object order_stats", "DROP STATISTICS order_stats"},
            {"ALTER TABLE big_orders ADD CONSTRAINT positive CHECK (id > 0)", "constraint positive on big_orders",
                "ALTER TABLE big_orders DROP CONSTRAINT positive"},
        };
        for (String[] c : cases) {
            exec(c[0]);
            assertRefused(NEW, c[1]);
            exec(c[2]);
        }
    }

    @Test
    void theSwapKeepsTheSettingsOfTheSessionThatAskedForTheNewQuery() throws SQLException {
        exec("SET TimeZone = 'Asia/Tokyo'");
        long ev = start(NEW);
        exec("SET TimeZone = 'UTC'");
        // the container steps it in a session of its own, with settings of its own
        swap(ev);
        assertEquals("Asia/Tokyo", string("SELECT query_settings ->> 'TimeZone' FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'big_orders'"));
        assertEquals(null, string("SELECT recompute_reason FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'big_orders'"));
    }

    private long start(String query) throws SQLException {
        exec("SELECT pgtrickle.alter_query('big_orders', '" + query.replace("'", "''") + "', shadow_build => true)");
        return Long.parseLong(string("SELECT max(evolution_id) FROM pgtrickle.pgt_evolutions"));
    }

    /** Steps the evolution on (build, catch-up, swap) until it ends: it converges. */
    private void swap(long ev) throws SQLException {
        for (int steps = 0; stepOrNull(ev) != null; steps++) {
            assertTrue(steps < 5, "still " + status("phase") + " after 5 steps");
        }
        assertEquals("converged|SWAPPED", status("status || '|' || phase"), status("coalesce(error, '')"));
    }

    private void assertRefused(String query, String objects) throws SQLException {
        assertFails("SELECT pgtrickle.alter_query('big_orders', '" + query.replace("'", "''") + "', shadow_build => true)",
                "cannot replace the storage of big_orders: these depend on it and cannot be carried over to the new storage: " + objects, "2BP01");
        assertNothingOfAnEvolution();
    }

    private String sortedOptions(String table) throws SQLException {
        return string("SELECT (SELECT array_agg(o ORDER BY o) FROM unnest(c.reloptions) o)::text FROM pg_class c WHERE c.relname = '" + table + "'");
    }

    private int step(long ev) throws SQLException {
        Integer wait = stepOrNull(ev);
        assertTrue(wait != null, "evolution " + ev + " ended: " + status("status || ' ' || coalesce(error, '')"));
        return wait;
    }

    private Integer stepOrNull(long ev) throws SQLException {
        String wait = string("SELECT pgtrickle.evolution_step(" + ev + ")");
        return wait == null ? null : Integer.valueOf(wait);
    }

    private String status(String columns) throws SQLException {
        return string("SELECT " + columns + " FROM pgtrickle.view_evolution_status('big_orders')");
    }

    private void assertSameRows(String query, String table) throws SQLException {
        assertEquals("0|0", string("WITH a AS (SELECT ROW(q.*)::text AS k FROM (" + query + ") q),"
                + " b AS (SELECT ROW(t.*)::text AS k FROM " + table + " t)"
                + " SELECT (SELECT count(*) FROM (SELECT k FROM a EXCEPT ALL SELECT k FROM b) x) || '|' ||"
                + " (SELECT count(*) FROM (SELECT k FROM b EXCEPT ALL SELECT k FROM a) y)"), table + " = " + query);
    }

    private void assertNothingOfAnEvolution() throws SQLException {
        assertEquals("0", string("SELECT count(*) FROM pgtrickle.pgt_evolutions"));
        assertNothingOfAnEvolutionButItsRecord();
    }

    private void assertNothingOfAnEvolutionButItsRecord() throws SQLException {
        assertEquals("f", string("SELECT bool_or(in_shadow_build) FROM pgtrickle.pgt_stream_tables"));
        assertEquals("0", string("SELECT count(*) FROM pgtrickle.pgt_stream_tables WHERE shadow_of IS NOT NULL"));
        assertEquals(null, string("SELECT to_regclass('__pgt_shadow_big_orders')"));
        assertFalse(strings("SELECT 1 FROM pgtrickle.pgt_evolutions WHERE status = 'in_progress'").size() > 0);
    }

    private static List<JsonNode> drain(Connection listener) throws Exception {
        try (Statement s = listener.createStatement()) {
            s.execute("SELECT 1");
        }
        PGNotification[] got = listener.unwrap(PGConnection.class).getNotifications(200);
        List<JsonNode> out = new java.util.ArrayList<>();
        if (got != null) {
            for (PGNotification n : got) {
                out.add(JSON.readTree(n.getParameter()));
            }
        }
        return out;
    }
}
