package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pgtrickle.catalog.CatalogMigrator;
import io.pgtrickle.testing.MigratedDatabaseTest;
import io.pgtrickle.testing.TestDatabase;
import java.sql.Connection;
import java.sql.SQLException;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The guards of catalog 0.33.0: no direct writes to stream tables, and DDL on captured sources. */
class GuardsTest extends MigratedDatabaseTest {

    GuardsTest() {
        super("guards");
    }

    private static final String TOTALS = "SELECT customer, sum(amount) AS total, count(*) AS orders FROM orders GROUP BY customer";

    @BeforeEach
    void migratedDatabaseWithOrders() throws SQLException {
        exec("CREATE TABLE orders (id int PRIMARY KEY, customer text, amount numeric, note text)");
        exec("INSERT INTO orders VALUES (1, 'ann', 10, 'x'), (2, 'ann', 5.4, 'y'), (3, 'bob', 7.6, NULL)");
    }

    @AfterEach
    void resetSession() throws SQLException {
        if (!c.getAutoCommit()) {
            c.rollback();
            c.setAutoCommit(true);
        }
        exec("RESET ROLE");
    }

    @Test
    void directWritesToAStreamTableAreRefusedAndRefreshesStillWrite() throws SQLException {
        exec("SELECT pgtrickle.create_stream_table('order_totals', '" + TOTALS + "')");
        for (String dml : List.of("INSERT INTO order_totals VALUES ('zed', 1, 1)", "UPDATE order_totals SET total = 0",
                "DELETE FROM order_totals", "TRUNCATE order_totals", "DELETE FROM order_totals WHERE false")) {
            SQLException e = assertRefused(dml);
            assertTrue(e.getMessage().contains("stream table public.order_totals is not allowed: only its refreshes write it"), e.getMessage());
            assertTrue(e.getMessage().contains("use another table"), e.getMessage());
        }
        assertEquals("ann|15.4|2,bob|7.6|1", totals());

        exec("UPDATE orders SET amount = 1 WHERE id = 1");
        exec("SELECT pgtrickle.refresh_stream_table('order_totals')");
        assertEquals("ann|6.4|2,bob|7.6|1", totals());
        exec("SELECT pgtrickle.drop_stream_table('order_totals')");
        assertEquals(null, string("SELECT to_regclass('order_totals')"));
    }

    @Test
    void aRefreshInsideTheUsersTransactionDoesNotOpenTheTableToItsLaterWrites() throws SQLException {
        exec("SELECT pgtrickle.create_stream_table('order_totals', '" + TOTALS + "')");
        c.setAutoCommit(false);
        exec("INSERT INTO orders VALUES (4, 'cy', 1, NULL)");
        exec("SELECT pgtrickle.refresh_stream_table('order_totals')");
        assertEquals("ann|15.4|2,bob|7.6|1,cy|1|1", totals());
        assertEquals("off", string("SELECT current_setting('pgtrickle.refreshing')"));
        assertRefused("INSERT INTO order_totals VALUES ('zed', 1, 1)");
        c.rollback();
        exec("SELECT pgtrickle.refresh_stream_table('order_totals')");
        assertRefused("DELETE FROM order_totals");
        c.commit();
        c.setAutoCommit(true);
        assertEquals("ann|15.4|2,bob|7.6|1", totals());
    }

    @Test
    void aStreamTableReadByAnotherKeepsBothItsGuardAndItsCapture() throws SQLException {
        exec("SELECT pgtrickle.create_stream_table('order_totals', '" + TOTALS + "')");
        exec("SELECT pgtrickle.create_stream_table('big_customers', 'SELECT customer FROM order_totals WHERE total > 10')");
        assertEquals(List.of("pgt_capture_del", "pgt_capture_del_row", "pgt_capture_ins", "pgt_capture_ins_row", "pgt_capture_trunc", "pgt_capture_upd", "pgt_capture_upd_row", "pgt_guard_truncate", "pgt_guard_write"),
                strings("SELECT tgname FROM pg_trigger WHERE tgrelid = 'order_totals'::regclass ORDER BY 1"));
        assertRefused("DELETE FROM order_totals");
        assertRefused("TRUNCATE big_customers");

        exec("INSERT INTO orders VALUES (4, 'bob', 5, NULL)");
        exec("SELECT pgtrickle.refresh_stream_table('order_totals')");
        exec("SELECT pgtrickle.refresh_stream_table('big_customers')");
        assertEquals(List.of("ann", "bob"), strings("SELECT customer FROM big_customers ORDER BY 1"));
        exec("SELECT pgtrickle.drop_stream_table('big_customers')");
        exec("SELECT pgtrickle.drop_stream_table('order_totals')");
    }

    @Test
    void addingAColumnToASourceCapturesItAndRecomputesItsReaders() throws SQLException {
        exec("SELECT pgtrickle.create_stream_table('order_totals', '" + TOTALS + "')");
        String buffer = buffer();
        exec("INSERT INTO orders VALUES (4, 'cy', 1, 'n')");       // pending in the buffer across the DDL
        String writer = string("SELECT xid::text FROM " + buffer);
        exec("ALTER TABLE orders ADD COLUMN region text DEFAULT 'eu'");

        assertEquals("xid xid8,action \"char\",id integer,customer text,amount numeric,note text,region text", bufferColumns());
        assertEquals(List.of("I|4|cy|1|n||" + writer), bufferRows());
        assertEquals("true|true", string("SELECT needs_reinit || '|' || (delta_sql IS NULL) FROM pgtrickle.pgt_stream_tables"));

        exec("INSERT INTO orders VALUES (5, 'cy', 2, NULL, 'us')");
        assertTrue(bufferRows().contains("I|5|cy|2||us|" + string("SELECT max(xid::text) FROM " + buffer)));
        exec("SELECT pgtrickle.refresh_stream_table('order_totals')");
        assertEquals("FULL|false", string("SELECT h.action || '|' || s.needs_reinit FROM pgtrickle.pgt_refresh_history h"
                + " JOIN pgtrickle.pgt_stream_tables s USING (pgt_id) ORDER BY refresh_id DESC LIMIT 1"));
        assertEquals("ann|15.4|2,bob|7.6|1,cy|3|2", totals());
        // four capture triggers, as before, on the same buffer name
        assertEquals("7", string("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass"));
        assertEquals(buffer, buffer());
    }

    @Test
    void renamingAColumnKeepsTheBufferedValuesUnderTheNewName() throws SQLException {
        exec("SELECT pgtrickle.create_stream_table('notes', 'SELECT id, note FROM orders')");
        exec("UPDATE orders SET note = 'z' WHERE id = 1");
        exec("ALTER TABLE orders RENAME COLUMN note TO remark");
        assertEquals("xid xid8,action \"char\",id integer,customer text,amount numeric,remark text", bufferColumns());
        assertEquals(List.of("D|1|ann|10|x", "I|1|ann|10|z"), bufferRows().stream().map(r -> r.substring(0, r.lastIndexOf('|'))).toList());
        exec("UPDATE orders SET remark = 'w' WHERE id = 2");
        assertEquals(4, bufferRows().size());

        // the stored query names the old column: PostgreSQL's error, on the refresh only
        SQLException e = assertThrows(SQLException.class, () -> exec("SELECT pgtrickle.refresh_stream_table('notes')"));
        assertEquals("42703", e.getSQLState(), e.getMessage());
    }

    @Test
    void droppingAColumnAStreamTableReadsLeavesTheSourceWritableAndTheErrorVisible() throws SQLException {
        exec("SELECT pgtrickle.create_stream_table('order_totals', '" + TOTALS + "')");
        exec("SELECT pgtrickle.create_stream_table('notes', 'SELECT id, note FROM orders')");
        exec("ALTER TABLE orders DROP COLUMN note");
        assertEquals("xid xid8,action \"char\",id integer,customer text,amount numeric", bufferColumns());
        exec("INSERT INTO orders VALUES (4, 'cy', 1)");
        exec("UPDATE orders SET amount = amount + 1");
        exec("DELETE FROM orders WHERE id = 2");
        exec("TRUNCATE orders");
        exec("INSERT INTO orders VALUES (5, 'dee', 1)");

        exec("SELECT pgtrickle.refresh_stream_table('order_totals')");
        assertEquals("dee|1|1", totals());
        // what the scheduler does with a refresh that keeps failing
        String id = string("SELECT pgt_id FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'notes'");
        for (int i = 0; i < 3; i++) {
            SQLException e = assertThrows(SQLException.class, () -> exec("SELECT pgtrickle.run_refresh(" + id + ", 'SCHEDULER')"));
            assertEquals("42703", e.getSQLState(), e.getMessage());
            exec("SELECT pgtrickle.record_refresh_failure(" + id + ", " + quote(e.getMessage()) + ", 3)");
        }
        assertEquals("SUSPENDED|true", string("SELECT status || '|' || (last_error_message LIKE '%column%note%does not exist%')"
                + " FROM pgtrickle.pgt_status() WHERE name = 'public.notes'"));
        exec("SELECT pgtrickle.drop_stream_table('notes')");
        exec("SELECT pgtrickle.drop_stream_table('order_totals')");
        assertEquals("0", string("SELECT count(*) FROM pg_class WHERE relnamespace = 'pgtrickle_changes'::regnamespace"));
    }

    @Test
    void changingAColumnTypeConvertsTheBufferAndTheNextRefreshIsFull() throws SQLException {
        exec("SELECT pgtrickle.create_stream_table('order_totals', '" + TOTALS + "')");
        exec("INSERT INTO orders VALUES (4, 'cy', 1.5, NULL)");
        exec("ALTER TABLE orders ALTER COLUMN amount TYPE integer");
        assertEquals("xid xid8,action \"char\",id integer,customer text,amount integer,note text", bufferColumns());
        assertEquals(List.of("I|4|cy|2|"), bufferRows().stream().map(r -> r.substring(0, r.lastIndexOf('|'))).toList());
        exec("SELECT pgtrickle.refresh_stream_table('order_totals')");
        assertEquals("ann|15|2,bob|8|1,cy|2|1", totals());

        // a type the buffered values do not convert to: they are kept without that column
        exec("INSERT INTO orders VALUES (5, 'dee', 3, NULL)");
        exec("ALTER TABLE orders ALTER COLUMN customer TYPE integer USING length(customer)");
        assertEquals(List.of("I|5||3|"), bufferRows().stream().map(r -> r.substring(0, r.lastIndexOf('|'))).toList());
        exec("INSERT INTO orders VALUES (6, 7, 1, NULL)");
        // the stream table keeps its text column; PostgreSQL assigns the integers to it
        exec("SELECT pgtrickle.refresh_stream_table('order_totals')");
        assertEquals("2|2|1,3|26|4,7|1|1", totals());
    }

    @Test
    void otherDdlIsUntouched() throws SQLException {
        exec("SELECT pgtrickle.create_stream_table('order_totals', '" + TOTALS + "')");
        String buffer = string("SELECT '" + buffer() + "'::regclass::oid");
        exec("ALTER TABLE orders ADD CONSTRAINT positive CHECK (amount > 0)");
        exec("ALTER TABLE orders ALTER COLUMN note SET DEFAULT 'n', SET (fillfactor = 90)");
        exec("CREATE INDEX ON orders (customer)");
        exec("CREATE TABLE other (a int)");
        exec("ALTER TABLE other ADD COLUMN b int, DROP COLUMN a");
        exec("ALTER TABLE other RENAME TO other2");
        exec("ALTER TABLE other2 RENAME COLUMN b TO c");
        exec("ALTER TABLE order_totals SET (fillfactor = 80)");
        exec("CREATE INDEX ON order_totals (customer)");
        assertEquals(buffer, string("SELECT '" + buffer() + "'::regclass::oid"), "the capture was not rebuilt");
        assertEquals("f", string("SELECT needs_reinit FROM pgtrickle.pgt_stream_tables"));
        exec("INSERT INTO orders VALUES (4, 'cy', 1)");
        exec("SELECT pgtrickle.refresh_stream_table('order_totals')");
        assertEquals("ann|15.4|2,bob|7.6|1,cy|1|1", totals());
    }

    @Test
    void aPartitionedSourceIsRebuiltWithItsParent() throws SQLException {
        exec("CREATE TABLE events (id int, kind text) PARTITION BY LIST (kind)");
        exec("CREATE TABLE events_a PARTITION OF events FOR VALUES IN ('a')");
        exec("INSERT INTO events VALUES (1, 'a')");
        exec("SELECT pgtrickle.create_stream_table('kinds', 'SELECT kind, count(*) AS n FROM events GROUP BY kind')");
        exec("ALTER TABLE events ADD COLUMN extra int");
        exec("INSERT INTO events VALUES (2, 'a', 5)");
        exec("SELECT pgtrickle.refresh_stream_table('kinds')");
        assertEquals(List.of("a|2"), strings("SELECT kind || '|' || n FROM kinds"));
        assertEquals("t", string("SELECT bool_and(EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = pgtrickle.change_buffer(t.source_relid::regclass)"
                + " AND a.attname = 'extra')) FROM pgtrickle.pgt_change_tracking t"));
    }

    @Test
    void aSourceRenamedOrMovedKeepsItsCaptureUnderItsNewName() throws SQLException {
        exec("SELECT pgtrickle.create_stream_table('order_totals', '" + TOTALS + "')");
        String before = buffer();
        exec("ALTER TABLE orders RENAME TO purchases");
        assertNotEquals(before, string("SELECT pgtrickle.change_buffer('purchases')::text"));
        exec("INSERT INTO purchases VALUES (4, 'cy', 1, NULL)");
        assertEquals("1", string("SELECT pgtrickle.pending_change_count('purchases', NULL)"));
        assertEquals("0", string("SELECT count(*) FROM pgtrickle.pgt_dependencies d WHERE d.source_stable_name <> pgtrickle.source_stable_name(d.source_relid::regclass)"));
        exec("SELECT pgtrickle.drop_stream_table('order_totals')");
        assertEquals("0", string("SELECT count(*) FROM pg_class WHERE relnamespace = 'pgtrickle_changes'::regnamespace"));
        assertEquals("0", string("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'purchases'::regclass"));
    }

    @Test
    void theOwnerOfASourceMayAlterItAndTheCaptureStaysTheirs() throws SQLException {
        exec("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgt_app') THEN CREATE ROLE pgt_app; END IF; END $$");
        exec("GRANT ALL ON SCHEMA public, pgtrickle, pgtrickle_changes TO pgt_app");
        exec("GRANT ALL ON ALL TABLES IN SCHEMA pgtrickle TO pgt_app");
        exec("GRANT ALL ON ALL SEQUENCES IN SCHEMA pgtrickle TO pgt_app");
        exec("ALTER TABLE orders OWNER TO pgt_app");
        exec("SET ROLE pgt_app");
        exec("SELECT pgtrickle.create_stream_table('order_totals', '" + TOTALS + "')");
        exec("ALTER TABLE orders ADD COLUMN region text");
        exec("INSERT INTO orders VALUES (4, 'cy', 1, NULL, 'eu')");
        assertEquals("pgt_app", string("SELECT relowner::regrole::text FROM pg_class WHERE oid = pgtrickle.change_buffer('orders')"));
        assertEquals(List.of("pgt_app"), strings("SELECT DISTINCT p.proowner::regrole::text FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
                + " WHERE t.tgrelid = 'orders'::regclass"));
        exec("SELECT pgtrickle.refresh_stream_table('order_totals')");
        assertEquals("ann|15.4|2,bob|7.6|1,cy|1|1", totals());
        exec("SELECT pgtrickle.drop_stream_table('order_totals')");
        exec("RESET ROLE");
        exec("DROP OWNED BY pgt_app");
    }

    @Test
    void theEventTriggerIsInstalledOnlyByASuperuser() throws SQLException {
        assertEquals(List.of("pgtrickle_source_ddl|ddl_command_end|{\"ALTER TABLE\",\"CREATE TABLE\",\"ALTER FOREIGN TABLE\",\"CREATE FOREIGN TABLE\"}",
                        "pgtrickle_source_drop|sql_drop|{\"DROP TABLE\"}"),
                strings("SELECT concat_ws('|', evtname, evtevent, evttags) FROM pg_event_trigger ORDER BY evtname"));
        TestDatabase.Database other = TestDatabase.get().createDatabase("guards_owner");
        try (Connection o = other.connect(); var s = o.createStatement()) {
            s.execute("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgt_catalog_owner') THEN CREATE ROLE pgt_catalog_owner; END IF; END $$");
            s.execute("GRANT CREATE ON DATABASE " + string("SELECT quote_ident('" + other.name() + "')") + " TO pgt_catalog_owner");
            s.execute("SET ROLE pgt_catalog_owner");
            new CatalogMigrator().migrate(o);
            s.execute("RESET ROLE");
            try (var rs = s.executeQuery("SELECT count(*) FROM pg_event_trigger")) {
                rs.next();
                assertEquals(0, rs.getInt(1));
            }
            // the guard on direct writes needs no superuser
            try (var rs = s.executeQuery("SELECT count(*) FROM pg_proc WHERE proname = 'guard_stream_table'")) {
                rs.next();
                assertEquals(1, rs.getInt(1));
            }
        } finally {
            other.drop();
        }
    }

    private SQLException assertRefused(String dml) {
        SQLException e = assertThrows(SQLException.class, () -> exec(dml), dml);
        assertEquals("0A000", e.getSQLState(), dml + " -> " + e.getMessage());
        return e;
    }

    private String totals() throws SQLException {
        return string("SELECT string_agg(concat_ws('|', customer, total, orders), ',' ORDER BY customer) FROM order_totals");
    }

    private String buffer() throws SQLException {
        return string("SELECT pgtrickle.change_buffer('orders')::text");
    }

    private String bufferColumns() throws SQLException {
        return string("SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ',' ORDER BY attnum) FROM pg_attribute"
                + " WHERE attrelid = pgtrickle.change_buffer('orders') AND attnum > 0 AND NOT attisdropped");
    }

    /** action|source columns...|xid, in insertion order. */
    private List<String> bufferRows() throws SQLException {
        return strings("SELECT concat_ws('|', action, " + string("SELECT string_agg(format('coalesce(%I::text, '''')', attname), ', ' ORDER BY attnum)"
                + " FROM pg_attribute WHERE attrelid = pgtrickle.change_buffer('orders') AND attnum > 2 AND NOT attisdropped") + ", xid)"
                + " FROM " + buffer() + " ORDER BY ctid");
    }

    private static String quote(String s) {
        return "'" + s.replace("'", "''") + "'";
    }
}
