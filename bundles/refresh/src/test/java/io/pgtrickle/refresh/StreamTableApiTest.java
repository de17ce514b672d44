package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pgtrickle.testing.MigratedDatabaseTest;
import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The stream-table SQL API from a plain JDBC connection, as a psql user would call it. */
class StreamTableApiTest extends MigratedDatabaseTest {

    StreamTableApiTest() {
        super("api");
    }

    private static final String TOTALS = "SELECT customer, sum(amount) AS total, count(*) AS orders FROM orders GROUP BY customer";

    @BeforeEach
    void migratedDatabaseWithOrders() throws SQLException {
        exec("CREATE TABLE orders (id int PRIMARY KEY, customer text, amount numeric)");
        exec("INSERT INTO orders VALUES (1, 'ann', 10), (2, 'ann', 5), (3, 'bob', 7), (4, 'cy', NULL)");
    }


    @Test
    void createdStreamTableHoldsTheQueryResultAndIsRecorded() throws SQLException {
        exec("SELECT pgtrickle.create_stream_table('order_totals', '" + TOTALS + "')");
        assertMatchesQuery("order_totals", TOTALS);
        assertEquals(List.of("public|order_totals|ACTIVE|t|calculated|DIFFERENTIAL|AUTO"),
                strings("SELECT concat_ws('|', pgt_schema, pgt_name, status, is_populated, schedule, refresh_mode, requested_refresh_mode) FROM pgtrickle.pgt_stream_tables"));
        assertEquals(List.of("INITIAL|FULL|COMPLETED|3|0"),
                strings("SELECT concat_ws('|', initiated_by, action, status, rows_inserted, rows_deleted) FROM pgtrickle.pgt_refresh_history"));
        // differential from the next refresh on, once the engine has planned it; the first is FULL
        assertEquals(List.of("AUTO|DIFFERENTIAL"),
                strings("SELECT concat_ws('|', configured_mode, effective_mode, downgrade_reason) FROM pgtrickle.explain_refresh_mode('order_totals')"));
        assertEquals(List.of("orders|TABLE"), strings("SELECT source_relid::regclass || '|' || source_type FROM pgtrickle.pgt_dependencies"));
        assertEquals("7", string("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass"));
        // the stored query is PostgreSQL's normalised form, the user's text is kept beside it
        assertTrue(string("SELECT defining_query FROM pgtrickle.pgt_stream_tables").matches("(?s).*GROUP BY (orders\\.)?customer.*"));
        assertEquals(TOTALS, string("SELECT original_query FROM pgtrickle.pgt_stream_tables"));
    }

    @Test
    void refreshAppliesOnlyTheDifferenceWithExactCounts() throws SQLException {
        exec("SELECT pgtrickle.create_stream_table('order_totals', '" + TOTALS + "')");
        String untouched = string("SELECT xmin::text FROM order_totals WHERE customer = 'cy'");

        exec("UPDATE orders SET amount = 6 WHERE id = 2");            // ann's row changes
        exec("INSERT INTO orders VALUES (5, 'dee', 1)");                // a new row
        exec("DELETE FROM orders WHERE id = 3");                        // bob's row goes
        exec("SELECT pgtrickle.refresh_stream_table('order_totals')");

        assertMatchesQuery("order_totals", TOTALS);
        assertEquals(List.of("MANUAL|FULL|2|2"), strings("SELECT concat_ws('|', initiated_by, action, rows_inserted, rows_deleted)"
                + " FROM pgtrickle.pgt_refresh_history ORDER BY refresh_id DESC LIMIT 1"));
        assertEquals(untouched, string("SELECT xmin::text FROM order_totals WHERE customer = 'cy'"), "unchanged rows are not rewritten");
    }

    @Test
    void aUniqueIndexOnTheStreamTableDoesNotBreakRefresh() throws SQLException {
        exec("SELECT pgtrickle.create_stream_table('order_totals', '" + TOTALS + "')");
        exec("CREATE UNIQUE INDEX ON order_totals (customer)");
        exec("UPDATE orders SET amount = 99 WHERE id = 3");   // bob keeps his key, his total changes
        exec("SELECT pgtrickle.refresh_stream_table('order_totals')");
        assertMatchesQuery("order_totals", TOTALS);
        assertEquals("FULL|1|1", lastRefresh());
    }

    @Test
    void duplicateRowsAreCountedAsAMultiset() throws SQLException {
        exec("INSERT INTO orders VALUES (10, 'ann', 10)");
        exec("SELECT pgtrickle.create_stream_table('order_rows', 'SELECT customer, amount FROM orders')");
        assertEquals("2", string("SELECT count(*) FROM order_rows WHERE customer = 'ann' AND amount = 10"));
        exec("DELETE FROM orders WHERE id = 10");
        exec("SELECT pgtrickle.refresh_stream_table('order_rows')");
        assertMatchesQuery("order_rows", "SELECT customer, amount FROM orders");
        assertEquals("0|1", string("SELECT rows_inserted || '|' || rows_deleted FROM pgtrickle.pgt_refresh_history ORDER BY refresh_id DESC LIMIT 1"));

        // three copies from one, then one from three: the surplus copies go, the missing ones come, exactly
        exec("INSERT INTO orders VALUES (11, 'ann', 10), (12, 'ann', 10)");
        exec("SELECT pgtrickle.refresh_stream_table('order_rows')");
        assertEquals("3", string("SELECT count(*) FROM order_rows WHERE customer = 'ann' AND amount = 10"));
        assertEquals("2|0", string("SELECT rows_inserted || '|' || rows_deleted FROM pgtrickle.pgt_refresh_history ORDER BY refresh_id DESC LIMIT 1"));
        exec("DELETE FROM orders WHERE id IN (11, 12)");
        exec("UPDATE orders SET amount = 11 WHERE id = 2");
        exec("SELECT pgtrickle.refresh_stream_table('order_rows')");
        assertMatchesQuery("order_rows", "SELECT customer, amount FROM orders");
        assertEquals("1|3", string("SELECT rows_inserted || '|' || rows_deleted FROM pgtrickle.pgt_refresh_history ORDER BY refresh_id DESC LIMIT 1"));
    }

    @Test
    void aRefreshWithNothingNewIsNoDataAndALateCommitIsPickedUp() throws SQLException {
        exec("SELECT pgtrickle.create_stream_table('order_totals', '" + TOTALS + "')");
        exec("SELECT pgtrickle.refresh_stream_table('order_totals')");
        assertEquals("NO_DATA|0|0", lastRefresh());

        try (Connection late = db.connect()) {
            late.setAutoCommit(false);
            try (Statement s = late.createStatement()) {
                s.execute("INSERT INTO orders VALUES (20, 'late', 100)");
            }
            exec("SELECT pgtrickle.refresh_stream_table('order_totals')");
            assertEquals("NO_DATA|0|0", lastRefresh());
            late.commit();
        }
        exec("SELECT pgtrickle.refresh_stream_table('order_totals')");
        assertEquals("FULL|1|0", lastRefresh());
        assertMatchesQuery("order_totals", TOTALS);
        // the buffer was pruned up to the new frontier
        assertEquals("0", string("SELECT count(*) FROM " + string("SELECT pgtrickle.change_buffer('orders')::text")));
    }

    @Test
    void writesAfterARefreshInTheSameTransactionAreNotLost() throws SQLException {
        exec("CREATE TABLE other (v int)");
        exec("SELECT pgtrickle.create_stream_table('order_ids', 'SELECT id FROM orders', schedule => 'calculated')");
        try (Connection younger = db.connect()) {
            c.setAutoCommit(false);
            exec("INSERT INTO orders VALUES (40, 'tx', 1)");
            // a younger transaction commits while ours is open, so our xid is below the snapshot's xmax
            try (Statement s = younger.createStatement()) {
                s.execute("INSERT INTO other VALUES (1)");
            }
            exec("SELECT pgtrickle.refresh_stream_table('order_ids')");
            exec("INSERT INTO orders VALUES (41, 'tx', 1)");
            c.commit();
        } finally {
            c.setAutoCommit(true);
        }
        assertEquals(List.of("public.order_ids"), strings("SELECT name FROM pgtrickle.due_stream_tables()"));
        exec("SELECT pgtrickle.refresh_stream_table('order_ids')");
        assertMatchesQuery("order_ids", "SELECT id FROM orders");
    }

    @Test
    void changeBuffersOfStreamTablesArePrunedToo() throws SQLException {
        exec("SELECT pgtrickle.create_stream_table('order_totals', '" + TOTALS + "')");
        exec("SELECT pgtrickle.create_stream_table('big_customers', 'SELECT customer FROM order_totals WHERE total > 6')");
        exec("INSERT INTO orders VALUES (50, 'fay', 9)");
        exec("SELECT pgtrickle.refresh_stream_table('order_totals')");
        String buffer = string("SELECT pgtrickle.change_buffer('order_totals')::text");
        assertNotEquals("0", string("SELECT count(*) FROM " + buffer));
        exec("SELECT pgtrickle.refresh_stream_table('big_customers')");
        assertEquals("0", string("SELECT count(*) FROM " + buffer));
    }

    @Test
    void queriesWithoutCapturedSourcesAreAlwaysRecomputed() throws SQLException {
        exec("SELECT pgtrickle.create_stream_table('tables_seen', 'SELECT count(*) AS n FROM pg_class WHERE relname = ''late_table''')");
        assertEquals("0", string("SELECT n FROM tables_seen"));
        exec("CREATE TABLE late_table (x int)");
        exec("SELECT pgtrickle.refresh_stream_table('tables_seen')");
        assertEquals("1", string("SELECT n FROM tables_seen"));
    }

    @Test
    void badCreateCallsFailClearlyAndLeaveNothingBehind() throws SQLException {
        exec("CREATE TEMPORARY TABLE scratch (x int)");
        exec("CREATE TABLE taken (x int)");
        List<String> before = objects();
        assertCreateFails("'bad', 'SELEC nonsense'", "invalid query for stream table bad", "42601");
        assertCreateFails("'bad', 'SELECT * FROM no_such_table'", "no_such_table", "42P01");
        assertCreateFails("'taken', 'SELECT 1 AS x'", "already exists", "42P07");
        assertCreateFails("'bad', 'SELECT * FROM orders LIMIT 2'", "LIMIT or OFFSET without ORDER BY", "0A000");
        assertCreateFails("'bad', 'SELECT * FROM orders OFFSET 1'", "LIMIT or OFFSET without ORDER BY", "0A000");
        assertCreateFails("'bad', 'SELECT id, random() AS r FROM orders', refresh_mode => 'DIFFERENTIAL'", "volatile functions (random())", "0A000");
        assertCreateFails("'bad', 'SELECT count(p.id) AS n FROM orders o LEFT JOIN orders p ON p.id = o.id', refresh_mode => 'DIFFERENTIAL'",
                "DIFFERENTIAL refresh cannot maintain this query: the query aggregates over an outer join without GROUP BY", "0A000");
        assertCreateFails("'bad', 'SELECT id FROM orders', refresh_mode => 'SOMETIMES'", "invalid refresh_mode 'SOMETIMES'", "22023");
        assertCreateFails("'bad', 'SELECT id FROM orders', schedule => 'often'", "invalid schedule 'often'", "22023");
        assertCreateFails("'bad', 'SELECT id FROM orders', schedule => '50ms'", "shorter than the minimum of 100ms", "22023");
        assertCreateFails("'bad', 'SELECT id AS __pgt_id FROM orders'", "reserved", "42939");
        assertCreateFails("'bad', 'SELECT x FROM scratch'", "temporary tables", "0A000");
        assertCreateFails("'no_schema.bad', 'SELECT 1 AS x'", "schema \"no_schema\" does not exist", "3F000");
        assertCreateFails("'a.b.c', 'SELECT 1 AS x'", "invalid stream table name", "42602");
        assertEquals(before, objects());
    }

    @Test
    void orderByWithLimitIsAccepted() throws SQLException {
        exec("SELECT pgtrickle.create_stream_table('top_orders', 'SELECT id, amount FROM orders ORDER BY amount DESC NULLS LAST, id LIMIT 2')");
        assertEquals(List.of("1", "3"), strings("SELECT id::text FROM top_orders ORDER BY id"));
    }

    @Test
    void autoSaysWhyAVolatileQueryRunsFull() throws SQLException {
        exec("SELECT pgtrickle.create_stream_table('sampled', 'SELECT id, random() < 2 AS kept FROM orders')");
        assertEquals("the query calls volatile functions (random())", string("SELECT downgrade_reason FROM pgtrickle.explain_refresh_mode('sampled')"));
    }

    @Test
    void createIsTransactional() throws SQLException {
        List<String> before = objects();
        c.setAutoCommit(false);
        exec("SELECT pgtrickle.create_stream_table('order_totals', '" + TOTALS + "')");
        assertEquals("3", string("SELECT count(*) FROM order_totals"));
        c.rollback();
        c.setAutoCommit(true);
        assertEquals(before, objects());
    }

    @Test
    void dropRemovesTheTableItsCatalogRowsAndUnsharedCapture() throws SQLException {
        List<String> before = objects();
        exec("SELECT pgtrickle.create_stream_table('order_totals', '" + TOTALS + "')");
        exec("SELECT pgtrickle.create_stream_table('order_ids', 'SELECT id FROM orders')");
        exec("SELECT pgtrickle.drop_stream_table('order_totals')");
        // the other stream table still reads orders: capture stays
        assertEquals("7", string("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass"));
        assertEquals(List.of("order_ids"), strings("SELECT pgt_name FROM pgtrickle.pgt_stream_tables"));
        exec("SELECT pgtrickle.drop_stream_table('public.order_ids')");
        assertEquals(before, objects());
        assertEquals("0", string("SELECT count(*) FROM pgtrickle.pgt_refresh_history"));
        SQLException e = assertThrows(SQLException.class, () -> exec("SELECT pgtrickle.drop_stream_table('order_ids')"));
        assertTrue(e.getMessage().contains("stream table 'order_ids' does not exist"), e.getMessage());
    }

    @Test
    void streamTablesReadingStreamTables() throws SQLException {
        exec("SELECT pgtrickle.create_stream_table('order_totals', '" + TOTALS + "')");
        exec("SELECT pgtrickle.create_stream_table('big_customers', 'SELECT customer FROM order_totals WHERE total > 6')");
        assertEquals(List.of("order_totals|STREAM_TABLE"), strings("SELECT source_relid::regclass || '|' || source_type FROM pgtrickle.pgt_dependencies d"
                + " JOIN pgtrickle.pgt_stream_tables s USING (pgt_id) WHERE s.pgt_name = 'big_customers'"));
        assertEquals(List.of("ann", "bob"), strings("SELECT customer FROM big_customers ORDER BY 1"));
        SQLException e = assertThrows(SQLException.class, () -> exec("SELECT pgtrickle.drop_stream_table('order_totals')"));
        assertTrue(e.getMessage().contains("read by other stream tables (public.big_customers)"), e.getMessage());

        exec("DELETE FROM orders WHERE customer = 'bob'");
        exec("SELECT pgtrickle.refresh_stream_table('order_totals')");
        exec("SELECT pgtrickle.refresh_stream_table('big_customers')");
        assertEquals("FULL|0|1", lastRefresh());
        assertEquals(List.of("ann"), strings("SELECT customer FROM big_customers"));
    }

    @Test
    void stalenessCountsOnlyWhileAChangeIsPending() throws SQLException {
        exec("SELECT pgtrickle.create_stream_table('order_totals', '" + TOTALS + "')");
        exec("CREATE MATERIALIZED VIEW order_snapshot AS SELECT * FROM orders");
        exec("SELECT pgtrickle.create_stream_table('from_matview', 'SELECT customer, amount FROM order_snapshot')");
        String staleness = "SELECT name || '|' || round(extract(epoch FROM staleness) / 60) FROM pgtrickle.pgt_status() ORDER BY name";
        // both last refreshed an hour ago
        exec("UPDATE pgtrickle.pgt_stream_tables SET data_timestamp = now() - interval '1 hour'");
        // nothing written since: the data is current, however old the refresh (the default,
        // 'calculated', refreshes only when something changed). What a materialized view shows can
        // change without capture: as old as its refresh.
        assertEquals(List.of("public.from_matview|60", "public.order_totals|0"), strings(staleness));

        exec("INSERT INTO orders VALUES (5, 'dee', 1)");
        assertEquals(List.of("public.from_matview|60", "public.order_totals|60"), strings(staleness));

        exec("SELECT pgtrickle.refresh_stream_table('order_totals')");
        exec("UPDATE pgtrickle.pgt_stream_tables SET data_timestamp = now() - interval '1 hour'");
        assertEquals(List.of("public.from_matview|60", "public.order_totals|0"), strings(staleness));
    }

    @Test
    void failuresSuspendAfterTheLimitAndResumeBringsItBack() throws SQLException {
        exec("SELECT pgtrickle.create_stream_table('order_totals', '" + TOTALS + "')");
        String id = string("SELECT pgt_id FROM pgtrickle.pgt_stream_tables");
        assertEquals("ACTIVE", string("SELECT pgtrickle.record_refresh_failure(" + id + ", 'boom 1', 2)"));
        assertEquals("SUSPENDED", string("SELECT pgtrickle.record_refresh_failure(" + id + ", 'boom 2', 2)"));
        assertEquals("public.order_totals|SUSPENDED|2|boom 2", string("SELECT concat_ws('|', name, status, consecutive_errors, last_error_message) FROM pgtrickle.pgt_status()"));
        assertEquals(List.of("FAILED|boom 2", "FAILED|boom 1"), strings("SELECT status || '|' || error_message FROM pgtrickle.get_refresh_history('order_totals', 2)"));
        assertEquals(List.of("SCHEDULER", "SCHEDULER", "INITIAL"), strings("SELECT initiated_by FROM pgtrickle.pgt_refresh_history ORDER BY refresh_id DESC"));
        assertEquals(List.of(), strings("SELECT * FROM pgtrickle.due_stream_tables()"));

        SQLException e = assertThrows(SQLException.class, () -> exec("SELECT pgtrickle.refresh_stream_table('order_totals')"));
        assertTrue(e.getMessage().contains("public.order_totals is SUSPENDED after 2 consecutive errors (last: boom 2)"), e.getMessage());
        assertEquals("55000", e.getSQLState());
        // the refresh itself refuses, whoever calls it
        SQLException direct = assertThrows(SQLException.class, () -> exec("SELECT pgtrickle.run_refresh(" + id + ", 'SCHEDULER', false)"));
        assertEquals("55000", direct.getSQLState());
        exec("SELECT pgtrickle.resume_stream_table('order_totals')");
        exec("SELECT pgtrickle.refresh_stream_table('order_totals')");
        assertEquals("ACTIVE|0", string("SELECT status || '|' || consecutive_errors FROM pgtrickle.pgt_stream_tables"));
    }

    @Test
    void aManualFailureIsRecordedAsManual() throws SQLException {
        exec("SELECT pgtrickle.create_stream_table('order_totals', '" + TOTALS + "')");
        exec("SELECT pgtrickle.record_refresh_failure(pgt_id, 'typo', 3, 'MANUAL') FROM pgtrickle.pgt_stream_tables");
        assertEquals("MANUAL|FAILED|typo", string("SELECT concat_ws('|', initiated_by, status, error_message) FROM pgtrickle.pgt_refresh_history ORDER BY refresh_id DESC LIMIT 1"));
    }

    @Test
    void aDroppedSourceIsNamedAsTheReason() throws SQLException {
        List<String> before = objects();
        exec("CREATE TABLE refunds (id int)");
        exec("SELECT pgtrickle.create_stream_table('refund_ids', 'SELECT id FROM refunds')");
        exec("DROP TABLE refunds");
        SQLException e = assertThrows(SQLException.class, () -> exec("SELECT pgtrickle.refresh_stream_table('refund_ids')"));
        assertTrue(e.getMessage().contains("a source of stream table public.refund_ids has been dropped"), e.getMessage());
        exec("SELECT pgtrickle.drop_stream_table('refund_ids')");
        // the dropped source's buffer and capture function go with its last stream table
        assertEquals(before, objects());
    }

    @Test
    void dueStreamTablesFollowTheirSchedules() throws SQLException {
        exec("SELECT pgtrickle.create_stream_table('every_hour', 'SELECT id FROM orders', schedule => '1h')");
        exec("SELECT pgtrickle.create_stream_table('on_change', 'SELECT id FROM orders', schedule => 'calculated')");
        exec("SELECT pgtrickle.create_stream_table('not_yet', 'SELECT id FROM orders', schedule => '1h', initialize => false)");
        assertEquals(List.of("public.not_yet"), strings("SELECT name FROM pgtrickle.due_stream_tables()"));
        assertEquals("0", string("SELECT count(*) FROM not_yet"));

        exec("INSERT INTO orders VALUES (30, 'eve', 3)");
        assertEquals(List.of("public.not_yet", "public.on_change"), strings("SELECT name FROM pgtrickle.due_stream_tables()"));
        exec("UPDATE pgtrickle.pgt_stream_tables SET last_refresh_at = now() - interval '61 minutes' WHERE pgt_name = 'every_hour'");
        assertEquals(List.of("public.not_yet", "public.every_hour", "public.on_change"), strings("SELECT name FROM pgtrickle.due_stream_tables()"),
                "unpopulated first, then every_hour (a minute past its schedule), then on_change (changed since it was created, moments ago)");
    }

    @Test
    void dueStreamTablesComeMostOverdueFirstNotInCreationOrder() throws SQLException {
        for (String name : List.of("a_minute_late", "an_hour_late", "a_second_late", "on_change", "rebuild")) {
            exec("SELECT pgtrickle.create_stream_table('" + name + "', 'SELECT id FROM orders', schedule => '"
                    + (name.equals("on_change") ? "calculated" : "10m") + "')");
        }
        exec("UPDATE pgtrickle.pgt_stream_tables SET last_refresh_at = now() - CASE pgt_name"
                + " WHEN 'a_minute_late' THEN interval '11 minutes' WHEN 'an_hour_late' THEN interval '70 minutes'"
                + " WHEN 'a_second_late' THEN interval '601 seconds' WHEN 'on_change' THEN interval '30 minutes'"
                + " ELSE interval '0' END");
        exec("UPDATE pgtrickle.pgt_stream_tables SET needs_reinit = true WHERE pgt_name = 'rebuild'");
        exec("INSERT INTO orders VALUES (30, 'eve', 3)");
        assertEquals(List.of("public.rebuild", "public.an_hour_late", "public.on_change", "public.a_minute_late", "public.a_second_late"),
                strings("SELECT name FROM pgtrickle.due_stream_tables()"),
                "to be rebuilt first; then by how long each has been due: 60 min past its schedule, 30 min since its last refresh"
                        + " with changes waiting ('calculated'), 1 min, 1 s past");
        assertEquals(List.of("true", "true", "true", "true"), strings("SELECT (overdue BETWEEN lo AND lo + interval '1 minute')::text"
                + " FROM pgtrickle.due_stream_tables() JOIN (VALUES ('public.an_hour_late', interval '60 minutes'),"
                + " ('public.on_change', interval '30 minutes'), ('public.a_minute_late', interval '1 minute'),"
                + " ('public.a_second_late', interval '1 second')) v (n, lo) ON n = name"));
    }

    @Test
    void calculatedStreamTablesAreDueForTheChangesTheirFrontierHasNotSeen() throws SQLException {
        exec("CREATE TABLE refunds (id int PRIMARY KEY)");
        exec("SELECT pgtrickle.create_stream_table('all_orders', 'SELECT id FROM orders', schedule => 'calculated')");
        exec("SELECT pgtrickle.create_stream_table('big_orders', 'SELECT id FROM orders WHERE amount > 1', schedule => 'calculated')");
        exec("SELECT pgtrickle.create_stream_table('refund_ids', 'SELECT id FROM refunds', schedule => 'calculated')");
        String due = "SELECT name FROM pgtrickle.due_stream_tables()";
        assertEquals(List.of(), strings(due), "nothing changed since they were populated");

        exec("INSERT INTO orders VALUES (40, 'zoe', 5)");
        assertEquals(List.of("public.all_orders", "public.big_orders"), strings(due));
        exec("SELECT pgtrickle.refresh_stream_table('all_orders')");
        assertEquals(List.of("public.big_orders"), strings(due), "the buffer still holds the row for big_orders, not for all_orders");
        exec("SELECT pgtrickle.refresh_stream_table('big_orders')");
        assertEquals(List.of(), strings(due));
        assertEquals("0", string("SELECT pgtrickle.pending_change_count('orders', NULL)"),
                "once every consumer passed them the rows are pruned: an idle source's buffer is empty, one probe says so");

        exec("INSERT INTO refunds VALUES (1)");
        assertEquals(List.of("public.refund_ids"), strings(due));
    }

    @Test
    void theProbeIsPreparedOncePerSessionAndSetOfBuffers() throws SQLException {
        exec("CREATE TABLE refunds (id int PRIMARY KEY)");
        exec("SELECT pgtrickle.create_stream_table('all_orders', 'SELECT id FROM orders', schedule => 'calculated')");
        String due = "SELECT name FROM pgtrickle.due_stream_tables()";
        String prepared = "SELECT name || ':' || generic_plans FROM pg_prepared_statements WHERE name LIKE 'pgtrickle\\_probe\\_%'";
        assertEquals(List.of(), strings(due));
        exec("INSERT INTO orders VALUES (40, 'zoe', 5)");
        assertEquals(List.of("public.all_orders"), strings(due));
        List<String> probes = strings(prepared);
        assertEquals(1, probes.size(), "one probe, prepared by the first call: " + probes);
        String name = probes.get(0).split(":")[0];
        assertEquals(name + ":2", probes.get(0), "and run twice on its generic plan, not planned again");

        // another source: a probe of both buffers replaces it
        exec("SELECT pgtrickle.create_stream_table('refund_ids', 'SELECT id FROM refunds', schedule => 'calculated')");
        exec("INSERT INTO refunds VALUES (1)");
        assertEquals(List.of("public.all_orders", "public.refund_ids"), strings(due));
        probes = strings(prepared);
        assertEquals(1, probes.size(), probes.toString());
        assertTrue(!probes.get(0).startsWith(name + ":"), "a new probe for the new set of buffers: " + probes);
        exec("SELECT pgtrickle.refresh_stream_table('all_orders')");
        exec("SELECT pgtrickle.refresh_stream_table('refund_ids')");
        assertEquals(List.of(), strings(due));
    }

    @Test
    void schedulesParse() throws SQLException {
        assertEquals("00:00:00.1", string("SELECT pgtrickle.parse_schedule('100ms')"));
        assertEquals("01:30:00", string("SELECT pgtrickle.parse_schedule('1h30m')"));
        assertEquals("2 days", string("SELECT pgtrickle.parse_schedule('2d')"));
        assertEquals(null, string("SELECT pgtrickle.parse_schedule('CALCULATED')"));
    }

    @Test
    void namesResolveThroughTheSearchPathAndQuoting() throws SQLException {
        exec("CREATE SCHEMA \"Sales Data\"");
        exec("SELECT pgtrickle.create_stream_table('\"Sales Data\".\"Order Totals\"', '" + TOTALS + "')");
        assertEquals("3", string("SELECT count(*) FROM \"Sales Data\".\"Order Totals\""));
        exec("SET search_path = \"Sales Data\", public");
        exec("SELECT pgtrickle.refresh_stream_table('\"Order Totals\"')");
        assertEquals("\"Sales Data\".\"Order Totals\"", string("SELECT name FROM pgtrickle.pgt_status()"));
    }

    private void assertCreateFails(String arguments, String message, String sqlState) {
        assertFails("SELECT pgtrickle.create_stream_table(" + arguments + ")", message, sqlState);
    }

    /** Every table, trigger, function and catalog row a failed or rolled-back create could leave. */
    private List<String> objects() throws SQLException {
        return strings("SELECT 'rel ' || oid::regclass FROM pg_class WHERE relnamespace IN ('public'::regnamespace, 'pgtrickle_changes'::regnamespace)"
                + " UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger WHERE NOT tgisinternal"
                + " UNION ALL SELECT 'function ' || oid::regprocedure FROM pg_proc WHERE pronamespace = 'pgtrickle_changes'::regnamespace"
                + " UNION ALL SELECT 'st ' || pgt_name FROM pgtrickle.pgt_stream_tables"
                + " UNION ALL SELECT 'tracking ' || source_relid FROM pgtrickle.pgt_change_tracking ORDER BY 1");
    }

    private void assertMatchesQuery(String table, String query) throws SQLException {
        assertEquals("0|0", string("SELECT (SELECT count(*) FROM (TABLE " + table + " EXCEPT ALL (" + query + ")) a) || '|' ||"
                + " (SELECT count(*) FROM ((" + query + ") EXCEPT ALL TABLE " + table + ") b)"));
        assertNotEquals("0", string("SELECT count(*) FROM " + table));
    }

    private String lastRefresh() throws SQLException {
        return string("SELECT concat_ws('|', action, rows_inserted, rows_deleted) FROM pgtrickle.pgt_refresh_history ORDER BY refresh_id DESC LIMIT 1");
    }
}
