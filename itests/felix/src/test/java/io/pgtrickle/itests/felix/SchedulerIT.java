package io.pgtrickle.itests.felix;

import static io.pgtrickle.itests.felix.InFramework.SERVICE_TIMEOUT_MILLIS;
import static io.pgtrickle.itests.felix.InFramework.assertAllBundlesActive;
import static io.pgtrickle.itests.felix.InFramework.awaitService;
import static io.pgtrickle.itests.felix.InFramework.exec;
import static io.pgtrickle.itests.felix.InFramework.query;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.ops4j.pax.exam.CoreOptions.options;
import static org.ops4j.pax.exam.cm.ConfigurationAdminOptions.newConfiguration;

import io.pgtrickle.api.catalog.Catalog;
import io.pgtrickle.api.refresh.RefreshEvent;
import io.pgtrickle.api.refresh.RefreshListener;
import io.pgtrickle.api.refresh.RefreshService;
import io.pgtrickle.testing.TestDatabase;
import java.sql.Connection;
import java.sql.Statement;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import javax.sql.DataSource;
import org.junit.Test;
import org.junit.runner.RunWith;
import org.ops4j.pax.exam.Configuration;
import org.ops4j.pax.exam.Option;
import org.ops4j.pax.exam.junit.PaxExam;
import org.ops4j.pax.exam.spi.reactors.ExamReactorStrategy;
import org.ops4j.pax.exam.spi.reactors.PerClass;
import org.osgi.framework.ServiceRegistration;

/**
 * The refresh bundle wired by the registry: the scheduler keeps a stream table current, and a
 * {@link RefreshListener} registered by another bundle is called with each refresh's exact counts.
 */
@RunWith(PaxExam.class)
@ExamReactorStrategy(PerClass.class)
public class SchedulerIT {

    @Configuration
    public Option[] configuration() {
        TestDatabase.Database db = FelixOptions.database("felix_sched");
        return options(FelixOptions.platform(), FelixOptions.refreshBundle(), FelixOptions.databaseProperties(db),
                FelixOptions.datasourceConfiguration(db).asOption(),
                newConfiguration("io.pgtrickle.refresh").put("schedulerIntervalMs", "100").asOption());
    }

    @Test
    public void refreshBundleIsActive() {
        assertAllBundlesActive("io.pgtrickle.refresh");
    }

    @Test
    public void theSchedulerKeepsAStreamTableCurrent() throws Exception {
        DataSource ds = awaitService(Catalog.class, null, SERVICE_TIMEOUT_MILLIS).dataSource();
        exec(ds, "CREATE TABLE sched_orders (id int PRIMARY KEY, customer text, amount numeric)");
        exec(ds, "SELECT pgtrickle.create_stream_table('sched_totals',"
                + " 'SELECT customer, sum(amount) AS total FROM sched_orders GROUP BY customer', schedule => '100ms')");
        for (int i = 1; i <= 50; i++) {
            exec(ds, "INSERT INTO sched_orders VALUES (" + i + ", 'c" + (i % 7) + "', " + i + ")");
        }
        exec(ds, "UPDATE sched_orders SET amount = amount + 1 WHERE id % 3 = 0");
        exec(ds, "DELETE FROM sched_orders WHERE id % 5 = 0");

        String difference = "SELECT (SELECT count(*) FROM (TABLE sched_totals EXCEPT ALL SELECT customer, sum(amount) FROM sched_orders GROUP BY customer) a)"
                + " + (SELECT count(*) FROM (SELECT customer, sum(amount) FROM sched_orders GROUP BY customer EXCEPT ALL TABLE sched_totals) b)";
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!"0".equals(query(ds, difference)) && System.nanoTime() < deadline) {
            Thread.sleep(100);
        }
        assertEquals("the stream table did not catch up with its query within 30 s", "0", query(ds, difference));
        // The engine plans it inside the framework (JSqlParser resolved as a bundle). Its running totals are
        // filled by the first refresh after planning when changes were already pending, which is FULL;
        // the refreshes of later changes are differential.
        String differential = "SELECT count(*) FROM pgtrickle.pgt_refresh_history h JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)"
                + " WHERE s.pgt_name = 'sched_totals' AND h.initiated_by = 'SCHEDULER' AND h.action = 'DIFFERENTIAL'";
        deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        for (int i = 100; "0".equals(query(ds, differential)) && System.nanoTime() < deadline; i++) {
            exec(ds, "INSERT INTO sched_orders VALUES (" + i + ", 'c" + (i % 7) + "', " + i + ")");
            Thread.sleep(300);
        }
        assertEquals("DIFFERENTIAL", query(ds, "SELECT effective_mode FROM pgtrickle.explain_refresh_mode('sched_totals')"));
        assertTrue("no differential refresh within 30 s", Long.parseLong(query(ds, differential)) >= 1);
        while (!"0".equals(query(ds, difference)) && System.nanoTime() < deadline) {
            Thread.sleep(100);
        }
        assertEquals("0", query(ds, difference));
    }

    @Test
    public void listenersRegisteredByOtherBundlesSeeEachRefresh() throws Exception {
        DataSource ds = awaitService(Catalog.class, null, SERVICE_TIMEOUT_MILLIS).dataSource();
        RefreshService refreshService = awaitService(RefreshService.class, null, SERVICE_TIMEOUT_MILLIS);
        exec(ds, "CREATE TABLE heard_orders (id int PRIMARY KEY, amount numeric)");
        exec(ds, "INSERT INTO heard_orders VALUES (1, 10), (2, 20)");
        // calculated: the scheduler refreshes only when the source changed, so the manual refresh below is ours
        exec(ds, "SELECT pgtrickle.create_stream_table('heard', 'SELECT id, amount FROM heard_orders', schedule => 'calculated')");

        BlockingQueue<RefreshEvent> heard = new LinkedBlockingQueue<>();
        ServiceRegistration<RefreshListener> registration = InFramework.context().registerService(RefreshListener.class,
                (event, connection) -> {
                    if (event.name().equals("heard")) {
                        heard.add(event);
                    }
                }, null);
        try {
            // one writer transaction, so that the scheduler sees both changes or neither
            try (Connection c = ds.getConnection(); Statement s = c.createStatement()) {
                c.setAutoCommit(false);
                s.execute("UPDATE heard_orders SET amount = 11 WHERE id = 1");
                s.execute("INSERT INTO heard_orders VALUES (3, 30)");
                c.commit();
            }
            RefreshEvent scheduled = heard.poll(30, TimeUnit.SECONDS);
            assertTrue("the scheduler's refresh reached the listener", scheduled != null);
            assertEquals(RefreshEvent.Initiator.SCHEDULER, scheduled.initiatedBy());
            assertEquals(2, scheduled.rowsInserted());
            assertEquals(1, scheduled.rowsDeleted());
            // the listener runs inside the refresh transaction; the history row it names commits with it
            String history = "SELECT rows_inserted || '|' || rows_deleted FROM pgtrickle.pgt_refresh_history WHERE refresh_id = " + scheduled.refreshId();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (query(ds, history) == null && System.nanoTime() < deadline) {
                Thread.sleep(20);
            }
            assertEquals("2|1", query(ds, history));

            long manual = refreshService.refresh("heard");
            RefreshEvent event = heard.poll(10, TimeUnit.SECONDS);
            assertEquals(manual, event.refreshId());
            assertEquals(RefreshEvent.Initiator.MANUAL, event.initiatedBy());
            assertEquals(RefreshEvent.Action.NO_DATA, event.action());
        } finally {
            registration.unregister();
        }
    }
}
