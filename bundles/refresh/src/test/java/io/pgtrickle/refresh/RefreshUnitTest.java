package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.pgtrickle.testing.MigratedDatabaseTest;
import java.sql.Connection;
import java.sql.Statement;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.postgresql.PGConnection;
import org.postgresql.PGNotification;

/**
 * The refresh bundle's database part on its own (this module's class path has no notify or
 * evolution unit): it is applied and recorded, and a refresh works and announces nothing, since
 * announcing hangs off its history row and is the notify unit's.
 */
class RefreshUnitTest extends MigratedDatabaseTest {

    RefreshUnitTest() {
        super("refresh_unit");
    }

    @Test
    void theCoreAndTheRefreshUnitAreInPlaceWithEveryScriptRecorded() throws Exception {
        assertEquals(List.of("io.pgtrickle.catalog|READY", "io.pgtrickle.refresh|READY"),
                strings("SELECT unit || '|' || state FROM pgtrickle.pgt_schema_unit ORDER BY unit"));
        assertEquals(List.of("R__10_capture.sql", "R__20_stream_tables.sql", "R__30_alter.sql", "R__40_guards.sql",
                        "R__50_refresh.sql", "R__52_derived_tables.sql", "R__55_change_statistics.sql", "R__60_scheduler.sql", "R__90_privileges.sql"),
                strings("SELECT script FROM pgtrickle.pgt_schema_script WHERE unit = 'io.pgtrickle.refresh' AND kind = 'R' ORDER BY script"));
        // no function of this unit names another unit's SQL
        assertEquals(List.of(), strings("SELECT p.proname FROM pgtrickle.pgt_schema_script s, pg_proc p"
                + " WHERE p.pronamespace = 'pgtrickle'::regnamespace AND p.proname IN ('run_refresh', 'drop_stream_table', 'forget_stream_table')"
                + " AND s.script = 'R__50_refresh.sql'"
                + " AND p.prosrc ~ '(announce_|send_notification|enqueue_notification|end_evolution|pgt_subscriptions)'"));
    }

    @Test
    void withoutTheNotifyUnitARefreshAnnouncesNothing() throws Exception {
        exec("CREATE TABLE orders (id int PRIMARY KEY, amount int)");
        exec("SELECT pgtrickle.create_stream_table('big_orders', 'SELECT id, amount FROM orders WHERE amount > 5', schedule => 'calculated')");
        // the subscription function is the released catalog's, from before the units: it records, nobody announces
        exec("SELECT pgtrickle.subscribe('big_orders', 'orders_changed')");
        exec("SET pg_trickle.notify_coalesce_ms = 0");
        try (Connection listener = db.connect(); Statement s = listener.createStatement()) {
            s.execute("LISTEN orders_changed");
            exec("INSERT INTO orders VALUES (1, 10), (2, 20)");
            exec("SELECT pgtrickle.refresh_stream_table('big_orders')");
            assertEquals("2", string("SELECT count(*) FROM big_orders"));
            assertEquals("2", string("SELECT rows_inserted FROM pgtrickle.pgt_refresh_history ORDER BY refresh_id DESC LIMIT 1"));
            s.execute("SELECT 1"); // a round trip delivers any notification queued for this session
            PGNotification[] heard = listener.unwrap(PGConnection.class).getNotifications(500);
            assertEquals(0, heard == null ? 0 : heard.length, "nothing announced");
            assertEquals("0", string("SELECT count(*) FROM pgtrickle.pgt_subscriptions WHERE last_notified_refresh_id IS NOT NULL OR pending_refreshes > 0"));
        }
    }
}
