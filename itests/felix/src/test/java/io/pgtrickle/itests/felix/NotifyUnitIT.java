package io.pgtrickle.itests.felix;

import static io.pgtrickle.itests.felix.InFramework.SERVICE_TIMEOUT_MILLIS;
import static io.pgtrickle.itests.felix.InFramework.awaitService;
import static io.pgtrickle.itests.felix.InFramework.exec;
import static io.pgtrickle.itests.felix.InFramework.query;
import static io.pgtrickle.itests.felix.UnitBundles.await;
import static io.pgtrickle.itests.felix.UnitBundles.awaitUnit;
import static io.pgtrickle.itests.felix.UnitBundles.unitReference;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;
import static org.ops4j.pax.exam.CoreOptions.options;
import static org.ops4j.pax.exam.cm.ConfigurationAdminOptions.newConfiguration;

import io.pgtrickle.api.catalog.Catalog;
import io.pgtrickle.api.notify.Notification;
import io.pgtrickle.api.notify.NotificationSink;
import io.pgtrickle.api.notify.NotificationSinkType;
import io.pgtrickle.api.refresh.RefreshService;
import io.pgtrickle.testing.TestDatabase;
import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.sql.DataSource;
import org.junit.Test;
import org.junit.runner.RunWith;
import org.ops4j.pax.exam.Configuration;
import org.ops4j.pax.exam.Option;
import org.ops4j.pax.exam.junit.PaxExam;
import org.ops4j.pax.exam.spi.reactors.ExamReactorStrategy;
import org.ops4j.pax.exam.spi.reactors.PerClass;
import org.osgi.framework.Bundle;
import org.osgi.framework.ServiceRegistration;
import org.postgresql.PGConnection;
import org.postgresql.PGNotification;

/**
 * The notify unit hangs off the refresh history in the database: the platform runs without the notify
 * bundle, with a stream table and a subscription already made, and refreshes announce nothing;
 * installing the notify bundle applies its part (the trigger on the history) and refreshes announce
 * from then on, whoever runs them; stopping the bundle withdraws its SchemaUnit and pauses only
 * deliveries to sinks (the outbox rows stay queued), while a refresh from SQL still notifies; started
 * again, it delivers what was queued.
 */
@RunWith(PaxExam.class)
@ExamReactorStrategy(PerClass.class)
public class NotifyUnitIT {

    private static final String NOTIFY_BSN = "io.pgtrickle.notify";
    private static final String REFRESH_BSN = "io.pgtrickle.refresh";
    private static final String STREAM_TABLE = "nu_totals";
    private static final String CHANNEL = "nu_changed";
    private static final String SINK_ID = "it:notify-unit";
    /** How long "nothing arrives" is watched for: bounded, and long against a NOTIFY sent at commit. */
    private static final int QUIET_MILLIS = 2000;

    private static final Pattern REFRESH_ID = Pattern.compile("\"refresh_id\"\\s*:\\s*(\\d+)");

    @Configuration
    public Option[] configuration() {
        TestDatabase.Database db = FelixOptions.database("felix_nunit");
        // every refresh notifies at once (no coalescing window to wait out, nothing folded for the
        // stopped notify bundle's timer to send)
        FelixOptions.databaseSetting(db, "pg_trickle.notify_coalesce_ms", "0");
        return options(FelixOptions.platform(), FelixOptions.refreshBundle(), FelixOptions.databaseProperties(db),
                FelixOptions.datasourceConfiguration(db).asOption(),
                newConfiguration(REFRESH_BSN).put("schedulerIntervalMs", "100").asOption(),
                // used once the test installs the notify bundle
                newConfiguration(NOTIFY_BSN).put("pollIntervalMs", "100").put("retryBaseMs", "100").put("retryMaxMs", "500").asOption());
    }

    @Test
    public void installingTheNotifyBundleStartsAnnouncingAndStoppingItPausesOnlyDeliveries() throws Exception {
        DataSource ds = awaitService(Catalog.class, null, SERVICE_TIMEOUT_MILLIS).dataSource();
        awaitService(RefreshService.class, null, SERVICE_TIMEOUT_MILLIS);
        awaitUnit(REFRESH_BSN);
        assertTrue("the notify bundle is not installed", Arrays.stream(InFramework.context().getBundles())
                .noneMatch(b -> NOTIFY_BSN.equals(b.getSymbolicName())));
        assertNull("no notify unit", unitReference(NOTIFY_BSN));
        assertNull("no row for the notify unit", query(ds, "SELECT state FROM pgtrickle.pgt_schema_unit WHERE unit = '" + NOTIFY_BSN + "'"));
        assertEquals("no announcing trigger on the history", "0", announcingTriggers(ds));

        // a stream table only refreshed by hand here ('1d'), and a subscription: both made with SQL the core and refresh units have
        exec(ds, "CREATE TABLE nu_orders (id int PRIMARY KEY, customer text NOT NULL, amount int NOT NULL)");
        exec(ds, "INSERT INTO nu_orders VALUES (1, 'ann', 10)");
        exec(ds, "SELECT pgtrickle.create_stream_table('" + STREAM_TABLE + "',"
                + " 'SELECT customer, sum(amount) AS total FROM nu_orders GROUP BY customer', schedule => '1d')");
        exec(ds, "SELECT pgtrickle.subscribe('" + STREAM_TABLE + "', '" + CHANNEL + "')");

        List<Notification> delivered = new CopyOnWriteArrayList<>();
        NotificationSink sink = delivered::add;
        ServiceRegistration<NotificationSink> sinkRegistration = InFramework.context().registerService(NotificationSink.class, sink,
                InFramework.properties(NotificationSinkType.TYPE, "it", NotificationSinkType.NAME, "notify-unit",
                        NotificationSinkType.CHANNELS, new String[] {CHANNEL}));
        Bundle notify = null;
        try (Connection listener = ds.getConnection()) {
            try (Statement s = listener.createStatement()) {
                s.execute("LISTEN " + CHANNEL);
            }
            PGConnection pg = listener.unwrap(PGConnection.class);

            // 1. without the notify unit a refresh that changes rows announces nothing
            exec(ds, "INSERT INTO nu_orders VALUES (2, 'bob', 20)");
            long silent = refreshByHand(ds);
            assertNoNotification(pg, "a refresh before the notify unit is applied (refresh " + silent + ")");
            assertEquals("no outbox rows", "0", query(ds, "SELECT count(*) FROM pgtrickle.pgt_outbox"));

            // 2. the notify bundle installed at runtime: its unit is applied, and refreshes announce
            notify = InFramework.context().installBundle(UnitBundles.ourJarFile("pgtrickle-notify").toURI().toString());
            notify.start();
            awaitUnit(NOTIFY_BSN);
            assertEquals("READY", query(ds, "SELECT state FROM pgtrickle.pgt_schema_unit WHERE unit = '" + NOTIFY_BSN + "'"));
            assertEquals("the announcing trigger on the history", "1", announcingTriggers(ds));
            await("the test's sink registered by the notify bundle",
                    () -> "1".equals(q(ds, "SELECT count(*) FROM pgtrickle.list_sinks() WHERE sink_id = '" + SINK_ID + "' AND enabled")));

            exec(ds, "INSERT INTO nu_orders VALUES (3, 'cy', 30)");
            long announced = refreshByHand(ds);
            assertNotificationOf(pg, announced);
            await("the sink got refresh " + announced, () -> deliveredRefreshes(delivered).contains(announced));
            // completed in the outbox too, before the stop (a delivery cut short would come back only after its lease)
            await("the outbox drained", () -> "0".equals(q(ds, "SELECT queued FROM pgtrickle.list_sinks() WHERE sink_id = '" + SINK_ID + "'")));

            // 3. the notify bundle stopped: its database part stays (and its SchemaUnit, while it is
            // resolved), so a refresh from SQL still notifies; its sink delivery waits in the outbox
            notify.stop();
            assertNotNull("the part stays in place", unitReference(NOTIFY_BSN));
            assertEquals("the trigger stays", "1", announcingTriggers(ds));
            int deliveredBefore = delivered.size();
            exec(ds, "UPDATE nu_orders SET amount = amount + 1 WHERE id = 1");
            long whileStopped = refreshByHand(ds);
            assertNotificationOf(pg, whileStopped);
            Thread.sleep(QUIET_MILLIS);
            assertEquals("no delivery to a sink while the notify bundle is stopped: " + delivered.subList(deliveredBefore, delivered.size()),
                    deliveredBefore, delivered.size());
            assertEquals("the notification waits in the outbox", "1",
                    query(ds, "SELECT queued FROM pgtrickle.list_sinks() WHERE sink_id = '" + SINK_ID + "'"));

            // 4. started again: the queued notification is delivered
            notify.start();
            awaitUnit(NOTIFY_BSN);
            await("the sink got refresh " + whileStopped + " after the restart", () -> deliveredRefreshes(delivered).contains(whileStopped));
            await("the outbox drained", () -> "0".equals(q(ds, "SELECT queued FROM pgtrickle.list_sinks() WHERE sink_id = '" + SINK_ID + "'")));
            assertEquals("each announced refresh delivered once, in order", List.of(announced, whileStopped), deliveredRefreshes(delivered));
            try (Statement s = listener.createStatement()) {
                s.execute("UNLISTEN *");
            }
        } finally {
            sinkRegistration.unregister();
            if (notify != null) {
                notify.uninstall();
            }
        }
    }

    /** Runs refresh_stream_table as psql would and returns its refresh, which must have changed rows. */
    private static long refreshByHand(DataSource ds) throws SQLException {
        exec(ds, "SELECT pgtrickle.refresh_stream_table('" + STREAM_TABLE + "')");
        String row = query(ds, "SELECT h.refresh_id || '|' || h.initiated_by || '|' || h.status || '|' || (h.rows_inserted + h.rows_deleted)"
                + " FROM pgtrickle.pgt_refresh_history h JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)"
                + " WHERE s.pgt_name = '" + STREAM_TABLE + "' ORDER BY h.refresh_id DESC LIMIT 1");
        String[] p = row.split("\\|");
        assertEquals("the newest refresh is the manual one: " + row, "MANUAL", p[1]);
        assertEquals("the manual refresh completed: " + row, "COMPLETED", p[2]);
        assertTrue("the manual refresh changed rows: " + row, Long.parseLong(p[3]) > 0);
        return Long.parseLong(p[0]);
    }

    private static void assertNoNotification(PGConnection pg, String after) throws SQLException {
        PGNotification[] got = pg.getNotifications(QUIET_MILLIS);
        if (got != null && got.length > 0) {
            fail("a notification after " + after + ": " + describe(got));
        }
    }

    /** Waits (bounded) for the NOTIFY of {@code refreshId} on the channel, naming the stream table. */
    private static void assertNotificationOf(PGConnection pg, long refreshId) throws SQLException {
        List<String> seen = new ArrayList<>();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (System.nanoTime() < deadline) {
            PGNotification[] got = pg.getNotifications(500);
            for (PGNotification n : got == null ? new PGNotification[0] : got) {
                seen.add(n.getName() + " " + n.getParameter());
                Matcher m = REFRESH_ID.matcher(n.getParameter());
                if (CHANNEL.equals(n.getName()) && m.find() && Long.parseLong(m.group(1)) == refreshId) {
                    assertTrue("the payload names the stream table: " + n.getParameter(),
                            n.getParameter().contains("\"public." + STREAM_TABLE + "\""));
                    return;
                }
            }
        }
        fail("no notification of refresh " + refreshId + " on " + CHANNEL + " within 30 s; got " + seen);
    }

    private static String describe(PGNotification[] got) {
        StringBuilder sb = new StringBuilder();
        for (PGNotification n : got) {
            sb.append(n.getName()).append(' ').append(n.getParameter()).append("; ");
        }
        return sb.toString();
    }

    private static List<Long> deliveredRefreshes(List<Notification> delivered) {
        return delivered.stream().map(Notification::refreshId).toList();
    }

    private static String announcingTriggers(DataSource ds) throws SQLException {
        return query(ds, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'pgtrickle.pgt_refresh_history'::regclass"
                + " AND tgname = 'pgt_announce_refresh'");
    }

    /** For conditions: a query, its exceptions unchecked. */
    private static String q(DataSource ds, String sql) {
        try {
            return query(ds, sql);
        } catch (SQLException e) {
            throw new IllegalStateException(e);
        }
    }
}
