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
import io.pgtrickle.testing.TestDatabase;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Queue;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import javax.sql.DataSource;
import org.junit.Test;
import org.junit.runner.RunWith;
import org.ops4j.pax.exam.Configuration;
import org.ops4j.pax.exam.Option;
import org.ops4j.pax.exam.junit.PaxExam;
import org.ops4j.pax.exam.spi.reactors.ExamReactorStrategy;
import org.ops4j.pax.exam.spi.reactors.PerClass;
import org.osgi.framework.Bundle;
import org.postgresql.PGConnection;
import org.postgresql.PGNotification;

/**
 * The evolution bundle in a framework with the scheduler: a shadow evolution started from SQL is
 * built, caught up and swapped in while the scheduler keeps the live stream table refreshing; with
 * the bundle stopped an evolution waits, and it is finished once the bundle is back. And TEST-3: a
 * million rows replaced under readers, a writer, a downstream stream table and a subscription.
 */
@RunWith(PaxExam.class)
@ExamReactorStrategy(PerClass.class)
public class EvolutionIT {

    private static final String BSN = "io.pgtrickle.evolution";
    private static final String NEW = "SELECT o.id, o.amount, c.region FROM evo_orders o JOIN evo_customers c ON c.name = o.customer";

    @Configuration
    public Option[] configuration() {
        TestDatabase.Database db = FelixOptions.database("felix_evolution");
        FelixOptions.databaseSetting(db, "pg_trickle.shadow_build_enabled", "on");
        FelixOptions.databaseSetting(db, "pg_trickle.shadow_refresh_throttle_ms", "100");
        // the notify bundle's database part announces the swap to the subscription
        return options(FelixOptions.platform(), FelixOptions.refreshBundle(), FelixOptions.evolutionBundle(), FelixOptions.notifyBundles(),
                FelixOptions.databaseProperties(db), FelixOptions.datasourceConfiguration(db).put("maxPoolSize", "16").asOption(),
                newConfiguration("io.pgtrickle.refresh").put("schedulerIntervalMs", "100").asOption(),
                newConfiguration("io.pgtrickle.evolution").put("pollIntervalMs", "100").asOption());
    }

    @Test
    public void anEvolutionIsSwappedInWhileTheSchedulerRefreshesAndWaitsWhileTheBundleIsStopped() throws Exception {
        assertAllBundlesActive(BSN);
        DataSource ds = awaitService(Catalog.class, null, SERVICE_TIMEOUT_MILLIS).dataSource();
        // shadow builds are the evolution bundle's: its database part must be in place, and notify's to announce the swap
        UnitBundles.awaitUnit("io.pgtrickle.evolution");
        UnitBundles.awaitUnit("io.pgtrickle.notify");
        exec(ds, "CREATE TABLE evo_orders (id int PRIMARY KEY, customer text, amount numeric)");
        exec(ds, "CREATE TABLE evo_customers (name text PRIMARY KEY, region text)");
        exec(ds, "INSERT INTO evo_orders SELECT g, 'c' || (g % 5), g FROM generate_series(1, 5000) g");
        exec(ds, "INSERT INTO evo_customers SELECT 'c' || g, 'r' || g FROM generate_series(0, 4) g");
        exec(ds, "SELECT pgtrickle.create_stream_table('evo_orders_big', 'SELECT id, amount FROM evo_orders WHERE amount > 100',"
                + " schedule => '100ms')");

        exec(ds, "SELECT pgtrickle.alter_query('evo_orders_big', '" + NEW + "', shadow_build => true)");
        awaitStatus(ds, "converged");
        exec(ds, "INSERT INTO evo_orders VALUES (6001, 'c1', 1)");
        awaitEqual(ds, NEW, "evo_orders_big"); // the scheduler refreshes it with the new query

        Bundle evolution = InFramework.bundle(BSN);
        evolution.stop();
        try {
            exec(ds, "SELECT pgtrickle.alter_query('evo_orders_big', 'SELECT id, region FROM (" + NEW.replace("'", "''")
                    + ") q', shadow_build => true)");
            Thread.sleep(1_000);
            assertEquals("in_progress|BUILDING", query(ds, "SELECT status || '|' || phase FROM pgtrickle.view_evolution_status('evo_orders_big')"));
        } finally {
            evolution.start();
        }
        awaitStatus(ds, "converged");
        awaitEqual(ds, "SELECT id, region FROM (" + NEW + ") q", "evo_orders_big");
    }

    private static final int ROWS = 1_000_000;
    private static final String LOAD_OLD = "SELECT id, customer, amount FROM load_orders";
    private static final String LOAD_NEW = "SELECT o.id, o.customer, o.amount, c.region FROM load_orders o"
            + " JOIN load_customers c ON c.name = o.customer";
    private static final String DOWNSTREAM = "SELECT customer, count(*) AS n, sum(amount) AS total FROM load_big GROUP BY customer";

    /**
     * TEST-3. Two readers query the stream table by key without pause, a writer inserts and updates
     * its source, the scheduler refreshes it and a stream table reading it, and a client listens to
     * its subscription, while its million rows are replaced by the new query's. No reader or writer
     * may fail; in the end the table holds exactly the new query's rows over the sources as they
     * then are (every write included), the downstream stream table is right, and the subscription
     * heard the swap. The longest single read is printed; docs/benchmarks/evolution.md has the target.
     */
    @Test
    public void aMillionRowsAreReplacedUnderReadersWritersRefreshesAndASubscription() throws Exception {
        DataSource ds = awaitService(Catalog.class, null, SERVICE_TIMEOUT_MILLIS).dataSource();
        // shadow builds are the evolution bundle's: its database part must be in place, and notify's to announce the swap
        UnitBundles.awaitUnit("io.pgtrickle.evolution");
        UnitBundles.awaitUnit("io.pgtrickle.notify");
        exec(ds, "CREATE TABLE load_orders (id int PRIMARY KEY, customer text, amount numeric)");
        exec(ds, "CREATE TABLE load_customers (name text PRIMARY KEY, region text)");
        exec(ds, "INSERT INTO load_orders SELECT g, 'c' || (g % 50), g % 1000 FROM generate_series(1, " + ROWS + ") g");
        exec(ds, "INSERT INTO load_customers SELECT 'c' || g, 'r' || (g % 7) FROM generate_series(0, 49) g");
        exec(ds, "ANALYZE load_orders, load_customers");
        exec(ds, "SELECT pgtrickle.create_stream_table('load_big', '" + LOAD_OLD + "', schedule => '200ms')");
        exec(ds, "CREATE UNIQUE INDEX load_big_id ON load_big (id)");
        exec(ds, "SELECT pgtrickle.create_stream_table('load_per_customer', '" + DOWNSTREAM + "', schedule => '200ms')");
        exec(ds, "SELECT pgtrickle.alter_stream_table('load_big', notify_coalesce_ms => 0)");
        exec(ds, "SELECT pgtrickle.subscribe('load_big', 'load_big_events')");
        assertEquals(Integer.toString(ROWS), query(ds, "SELECT count(*) FROM load_big"));

        AtomicBoolean stop = new AtomicBoolean();
        Queue<Throwable> errors = new ConcurrentLinkedQueue<>();
        List<Thread> threads = new ArrayList<>();
        List<Double> reads = Collections.synchronizedList(new ArrayList<>());
        AtomicLong orders = new AtomicLong(ROWS);
        try (Connection listener = ds.getConnection()) {
            try (Statement s = listener.createStatement()) {
                s.execute("LISTEN load_big_events");
            }
            for (int i = 0; i < 2; i++) {
                threads.add(background("reader " + i, errors, () -> {
                    try (Connection c = ds.getConnection(); PreparedStatement ps = c.prepareStatement("SELECT amount FROM load_big WHERE id = ?")) {
                        while (!stop.get()) {
                            ps.setInt(1, 1 + ThreadLocalRandom.current().nextInt(ROWS));
                            long t = System.nanoTime();
                            try (ResultSet rs = ps.executeQuery()) {
                                assertTrue("every original order is in the stream table", rs.next());
                            }
                            reads.add((System.nanoTime() - t) / 1e6);
                        }
                    }
                }));
            }
            threads.add(background("writer", errors, () -> {
                try (Connection c = ds.getConnection(); Statement s = c.createStatement()) {
                    while (!stop.get()) {
                        long id = orders.incrementAndGet();
                        s.execute("INSERT INTO load_orders VALUES (" + id + ", 'c" + (id % 50) + "', " + (id % 1000) + ")");
                        s.execute("UPDATE load_orders SET amount = amount + 1 WHERE id = " + (1 + ThreadLocalRandom.current().nextInt(ROWS)));
                        Thread.sleep(5);
                    }
                }
            }));

            exec(ds, "SELECT pgtrickle.alter_query('load_big', '" + LOAD_NEW + "', shadow_build => true)");
            awaitStatus(ds, "load_big", "converged", 300);
            Thread.sleep(1_000); // readers and the writer go on against the new storage for a while
            stop.set(true);
            for (Thread t : threads) {
                t.join(TimeUnit.SECONDS.toMillis(30));
            }
            assertEquals("no reader or writer failed", List.of(), List.copyOf(errors));
            assertTrue("the writer wrote throughout", orders.get() > ROWS + 10);

            awaitEqual(ds, LOAD_NEW, "load_big", 120);
            awaitEqual(ds, DOWNSTREAM, "load_per_customer", 120);
            // the user's unique index kept under its name; it finds the stored rows (RowKeyTest), so an
            // engine row index is there only if the shadow was planned with one before it had the
            // user's index: then it is the one handed over at the swap (none left behind)
            String indexes = query(ds, "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE tablename = 'load_big'");
            String own = "pgt_" + query(ds, "SELECT pgt_id FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'load_big'") + "_row_hash";
            assertTrue("the user's index, and no engine row index but the stream table's own: " + indexes,
                    indexes.equals("load_big_id") || indexes.equals("load_big_id," + own));
            assertEquals("0", query(ds, "SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'pgt\\_%\\_row\\_hash'"
                    + " AND indexname NOT IN (SELECT format('pgt_%s_row_hash', pgt_id) FROM pgtrickle.pgt_stream_tables)"));

            try (Statement s = listener.createStatement()) {
                s.execute("SELECT 1");
            }
            PGNotification[] heard = listener.unwrap(PGConnection.class).getNotifications(1_000);
            assertTrue("the subscription heard the swap", heard != null
                    && Arrays.stream(heard).anyMatch(n -> n.getParameter().matches(".*\"evolution\"\\s*:\\s*true.*")));
        } finally {
            stop.set(true);
        }
        List<Double> sorted = new ArrayList<>(reads);
        Collections.sort(sorted);
        System.out.printf("TEST-3: %,d reads during the evolution of %,d rows: longest %.1f ms, p99 %.2f ms, median %.2f ms;"
                        + " %,d orders written; %s swap lock tries%n", sorted.size(), ROWS, sorted.get(sorted.size() - 1),
                sorted.get((int) (sorted.size() * 0.99)), sorted.get(sorted.size() / 2), orders.get() - ROWS,
                query(ds, "SELECT swap_attempts FROM pgtrickle.view_evolution_status('load_big')"));
    }

    @FunctionalInterface
    private interface Work {
        void run() throws Exception;
    }

    private static Thread background(String name, Queue<Throwable> errors, Work work) {
        Thread t = new Thread(() -> {
            try {
                work.run();
            } catch (Throwable e) {
                errors.add(new AssertionError(name + ": " + e, e));
            }
        }, name);
        t.start();
        return t;
    }

    private static void awaitStatus(DataSource ds, String status) throws Exception {
        awaitStatus(ds, "evo_orders_big", status, 60);
    }

    private static void awaitStatus(DataSource ds, String streamTable, String status, int seconds) throws Exception {
        String sql = "SELECT status FROM pgtrickle.view_evolution_status('" + streamTable + "')";
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
        while (!status.equals(query(ds, sql)) && System.nanoTime() < deadline) {
            Thread.sleep(100);
        }
        assertEquals(query(ds, "SELECT concat_ws(' ', phase, 'catch-ups', catch_up_refreshes, 'swap tries', swap_attempts, error,"
                + " 'shadow refreshes', (SELECT string_agg(h.action, ',' ORDER BY h.refresh_id) FROM pgtrickle.pgt_refresh_history h"
                + " JOIN pgtrickle.pgt_stream_tables s ON s.pgt_id = h.pgt_id WHERE s.shadow_of IS NOT NULL))"
                + " FROM pgtrickle.view_evolution_status('" + streamTable + "')"),
                status, query(ds, sql));
    }

    private static void awaitEqual(DataSource ds, String expected, String table) throws Exception {
        awaitEqual(ds, expected, table, 30);
    }

    private static void awaitEqual(DataSource ds, String expected, String table, int seconds) throws Exception {
        String difference = "SELECT (SELECT count(*) FROM (TABLE " + table + " EXCEPT ALL " + expected + ") a)"
                + " + (SELECT count(*) FROM (" + expected + " EXCEPT ALL TABLE " + table + ") b)";
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
        while (!"0".equals(query(ds, difference)) && System.nanoTime() < deadline) {
            Thread.sleep(100);
        }
        assertEquals(table + " = " + expected, "0", query(ds, difference));
    }
}
