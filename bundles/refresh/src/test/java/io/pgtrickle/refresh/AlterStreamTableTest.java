package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pgtrickle.testing.MigratedDatabaseTest;
import java.sql.SQLException;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** {@code pgtrickle.alter_stream_table} from a plain JDBC connection: each argument's effect, and bad input. */
class AlterStreamTableTest extends MigratedDatabaseTest {

    AlterStreamTableTest() {
        super("alter");
    }

    private static final String TOTALS = "SELECT customer, sum(amount) AS total FROM orders GROUP BY customer";

    @BeforeEach
    void streamTableOnOrders() throws SQLException {
        exec("CREATE TABLE orders (id int PRIMARY KEY, customer text, amount numeric)");
        exec("CREATE TABLE refunds (order_id int, amount numeric)");
        exec("INSERT INTO orders VALUES (1, 'ann', 10), (2, 'ann', 5), (3, 'bob', 7)");
        exec("INSERT INTO refunds VALUES (1, 2)");
        exec("SELECT pgtrickle.create_stream_table('totals', '" + TOTALS + "', schedule => '1s')");
    }


    @Test
    void scheduleStatusAndModeChangeAndSayWhy() throws SQLException {
        exec("SELECT pgtrickle.alter_stream_table('totals', schedule => '5m')");
        assertEquals("5m|ACTIVE|DIFFERENTIAL|AUTO", row());

        exec("SELECT pgtrickle.alter_stream_table('totals', status => 'SUSPENDED')");
        assertEquals("5m|SUSPENDED|DIFFERENTIAL|AUTO", row());
        SQLException refused = assertThrows(SQLException.class, () -> exec("SELECT pgtrickle.refresh_stream_table('totals')"));
        assertEquals("55000", refused.getSQLState());
        exec("SELECT pgtrickle.alter_stream_table('totals', status => 'active')");
        assertEquals("5m|ACTIVE|DIFFERENTIAL|AUTO", row());

        exec("SELECT pgtrickle.alter_stream_table('totals', refresh_mode => 'FULL')");
        assertEquals("5m|ACTIVE|FULL|FULL", row());
        exec("SELECT pgtrickle.alter_stream_table('totals', refresh_mode => 'DIFFERENTIAL')");
        assertEquals("5m|ACTIVE|DIFFERENTIAL|DIFFERENTIAL", row());
        // the schedule is the only thing that changed in the first call: NULL arguments leave the rest
        exec("SELECT pgtrickle.alter_stream_table('totals')");
        assertEquals("5m|ACTIVE|DIFFERENTIAL|DIFFERENTIAL", row());
    }

    @Test
    void aNewQueryWithTheSameColumnsRewritesOnlyWhatDiffersAndKeepsTheTable() throws SQLException {
        exec("CREATE INDEX totals_customer ON totals (customer)");
        String relid = string("SELECT 'totals'::regclass::oid::text");
        String query = "SELECT o.customer, sum(o.amount - coalesce(r.amount, 0)) AS total FROM orders o"
                + " JOIN refunds r ON r.order_id = o.id GROUP BY o.customer";
        exec("SELECT pgtrickle.alter_stream_table('totals', query => '" + query + "')");

        assertEquals(List.of("ann|8"), strings("SELECT customer || '|' || total FROM totals ORDER BY 1"));
        assertEquals(relid, string("SELECT 'totals'::regclass::oid::text"), "same columns: the table is kept");
        assertEquals("1", string("SELECT count(*) FROM pg_indexes WHERE indexname = 'totals_customer'"));
        assertEquals("MANUAL|FULL|1|2", string("SELECT concat_ws('|', initiated_by, action, rows_inserted, rows_deleted)"
                + " FROM pgtrickle.pgt_refresh_history ORDER BY refresh_id DESC LIMIT 1"));
        // the new source is captured, the old one still (the new query reads both)
        assertEquals(List.of("orders", "refunds"), strings("SELECT source_relid::regclass::text FROM pgtrickle.pgt_dependencies ORDER BY 1"));
        assertEquals("7", string("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'refunds'::regclass"));
        assertTrue(string("SELECT original_query FROM pgtrickle.pgt_stream_tables").contains("refunds r"));

        exec("INSERT INTO refunds VALUES (3, 1)");
        exec("SELECT pgtrickle.refresh_stream_table('totals')");
        assertEquals(List.of("ann|8", "bob|6"), strings("SELECT customer || '|' || total FROM totals ORDER BY 1"));
    }

    @Test
    void aNewQueryWithOtherColumnsReplacesTheTableAndReleasesUnusedCapture() throws SQLException {
        String relid = string("SELECT 'totals'::regclass::oid::text");
        exec("SELECT pgtrickle.alter_stream_table('totals', query => 'SELECT order_id, amount AS refunded FROM refunds')");
        assertEquals(List.of("1|2"), strings("SELECT order_id || '|' || refunded FROM totals"));
        assertTrue(!relid.equals(string("SELECT 'totals'::regclass::oid::text")));
        assertEquals(string("SELECT 'totals'::regclass::oid::text"), string("SELECT pgt_relid::text FROM pgtrickle.pgt_stream_tables"));
        assertEquals(List.of("refunds"), strings("SELECT source_relid::regclass::text FROM pgtrickle.pgt_dependencies"));
        assertEquals("0", string("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass AND NOT tgisinternal"),
                "orders is no longer read: its capture is gone");
    }

    @Test
    void badArgumentsFailClearlyAndChangeNothing() throws SQLException {
        String before = state();
        assertAlterFails("'nope', schedule => '5m'", "nope", "42P01");
        assertAlterFails("'totals', schedule => 'often'", "invalid schedule 'often'", "22023");
        assertAlterFails("'totals', refresh_mode => 'SOMETIMES'", "invalid refresh_mode 'SOMETIMES'", "22023");
        assertAlterFails("'totals', status => 'PAUSED'", "invalid status 'PAUSED'", "22023");
        assertAlterFails("'totals', query => 'SELEC 1'", "invalid query for stream table totals", "42601");
        assertAlterFails("'totals', query => 'SELECT * FROM no_such_table'", "no_such_table", "42P01");
        assertAlterFails("'totals', query => '  '", "non-empty query", "22023");
        assertAlterFails("'totals', query => 'SELECT sum(r.amount) AS total FROM orders o LEFT JOIN refunds r ON r.order_id = o.id',"
                + " refresh_mode => 'DIFFERENTIAL'", "cannot maintain this query: the query aggregates over an outer join without GROUP BY", "0A000");
        assertAlterFails("'totals', refresh_mode => 'DIFFERENTIAL', schedule => 'often'", "invalid schedule", "22023");
        assertEquals(before, state());

        exec("SELECT pgtrickle.create_stream_table('downstream', 'SELECT customer FROM totals')");
        assertAlterFails("'totals', query => 'SELECT id FROM orders'", "other stream tables read it (public.downstream)", "2BP01");
    }

    private void assertAlterFails(String arguments, String message, String sqlState) {
        assertFails("SELECT pgtrickle.alter_stream_table(" + arguments + ")", message, sqlState);
    }

    private String row() throws SQLException {
        return string("SELECT concat_ws('|', schedule, status, refresh_mode, requested_refresh_mode) FROM pgtrickle.pgt_stream_tables");
    }

    private String state() throws SQLException {
        return string("SELECT concat_ws('|', s.schedule, s.status, s.refresh_mode, s.defining_query, s.pgt_relid,"
                + " (SELECT string_agg(source_relid::text, ',') FROM pgtrickle.pgt_dependencies),"
                + " (SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal), (SELECT string_agg(customer || total, ',' ORDER BY customer) FROM totals))"
                + " FROM pgtrickle.pgt_stream_tables s");
    }
}
