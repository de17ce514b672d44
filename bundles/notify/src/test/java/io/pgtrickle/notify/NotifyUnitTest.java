package io.pgtrickle.notify;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pgtrickle.catalog.CatalogMigrator;
import io.pgtrickle.testing.SqlStatements;
import io.pgtrickle.testing.TestDatabase;
import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.postgresql.PGConnection;
import org.postgresql.PGNotification;

/**
 * The notify unit applied after stream tables and subscriptions exist, as installing the notify
 * bundle into a running container does: refreshes start announcing, with nothing else to do.
 */
class NotifyUnitTest implements SqlStatements {

    private TestDatabase.Database db;
    private Connection c;
    private Connection listener;

    @Override
    public Connection connection() {
        return c;
    }

    @BeforeEach
    void refreshUnitOnly() throws SQLException {
        db = TestDatabase.get().createDatabase("notify_unit");
        c = db.connect();
        CatalogMigrator.withUnits("io.pgtrickle.refresh").migrate(c);
        exec("CREATE TABLE orders (id int PRIMARY KEY, amount int)");
        exec("SELECT pgtrickle.create_stream_table('big_orders', 'SELECT id, amount FROM orders WHERE amount > 5', schedule => 'calculated')");
        exec("SELECT pgtrickle.subscribe('big_orders', 'orders_changed')");
        listener = db.connect();
        try (Statement s = listener.createStatement()) {
            s.execute("LISTEN orders_changed");
        }
    }

    @AfterEach
    void drop() throws SQLException {
        listener.close();
        c.close();
        db.drop();
    }

    /** The notifications that arrive within {@code waitMillis}; empty when none. */
    private PGNotification[] heard(int waitMillis) throws SQLException {
        try (Statement s = listener.createStatement()) {
            s.execute("SELECT 1");
        }
        PGNotification[] got = listener.unwrap(PGConnection.class).getNotifications(waitMillis);
        return got == null ? new PGNotification[0] : got;
    }

    @Test
    void installingTheNotifyUnitStartsAnnouncingExistingSubscriptions() throws Exception {
        exec("INSERT INTO orders VALUES (1, 10)");
        exec("SELECT pgtrickle.refresh_stream_table('big_orders')");
        assertEquals(0, heard(300).length, "no notify unit, no announcement");
        assertEquals("", string("SELECT coalesce(string_agg(unit, ','), '') FROM pgtrickle.pgt_schema_unit WHERE unit = 'io.pgtrickle.notify'"));

        new CatalogMigrator().migrate(c);
        assertEquals("READY|0.33.0.2", string("SELECT state || '|' || schema_version FROM pgtrickle.pgt_schema_unit WHERE unit = 'io.pgtrickle.notify'"));

        exec("SET pg_trickle.notify_coalesce_ms = 0");
        exec("INSERT INTO orders VALUES (2, 20)");
        exec("SELECT pgtrickle.refresh_stream_table('big_orders')");
        PGNotification[] got = heard(5_000);
        assertEquals(1, got.length, "the refresh after the notify unit was applied is announced");
        assertTrue(got[0].getParameter().contains("\"inserted_count\" : 1") || got[0].getParameter().contains("\"inserted_count\":1"),
                got[0].getParameter());
    }

    @Test
    void aFoldedRefreshKeepsTheWindowItsRefreshingContainerPassed() throws Exception {
        new CatalogMigrator().migrate(c);
        long id = Long.parseLong(string("SELECT pgt_id FROM pgtrickle.pgt_stream_tables"));
        exec("INSERT INTO orders VALUES (1, 10)");
        exec("SELECT pgtrickle.run_refresh(" + id + ", 'SCHEDULER', true, 600000)");
        exec("INSERT INTO orders VALUES (2, 20)");
        exec("SELECT pgtrickle.run_refresh(" + id + ", 'SCHEDULER', true, 600000)");
        assertEquals("1|600000", string("SELECT pending_refreshes || '|' || pending_window_ms FROM pgtrickle.pgt_subscriptions"));
        // the notify bundle's timer passes no window: the folded one waits for its own ten minutes
        assertEquals("0", string("SELECT pgtrickle.flush_notifications()"));
        exec("UPDATE pgtrickle.pgt_subscriptions SET last_notified_at = last_notified_at - interval '11 minutes'");
        assertEquals("1", string("SELECT pgtrickle.flush_notifications()"));
        assertEquals("0|", string("SELECT pending_refreshes || '|' || coalesce(pending_window_ms::text, '') FROM pgtrickle.pgt_subscriptions"));
    }
}
