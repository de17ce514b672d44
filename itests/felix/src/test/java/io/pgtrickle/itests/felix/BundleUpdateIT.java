package io.pgtrickle.itests.felix;

import static io.pgtrickle.itests.felix.InFramework.SERVICE_TIMEOUT_MILLIS;
import static io.pgtrickle.itests.felix.InFramework.assertAllBundlesActive;
import static io.pgtrickle.itests.felix.InFramework.assertNoServiceFor;
import static io.pgtrickle.itests.felix.InFramework.awaitService;
import static io.pgtrickle.itests.felix.InFramework.exec;
import static io.pgtrickle.itests.felix.InFramework.query;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;
import static org.ops4j.pax.exam.CoreOptions.options;
import static org.ops4j.pax.exam.cm.ConfigurationAdminOptions.newConfiguration;

import io.pgtrickle.api.catalog.Catalog;
import io.pgtrickle.api.refresh.RefreshService;
import io.pgtrickle.api.schema.SchemaUnit;
import io.pgtrickle.testing.TestDatabase;
import java.io.ByteArrayInputStream;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.OffsetDateTime;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.Queue;
import java.util.Random;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CopyOnWriteArrayList;
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
import org.osgi.framework.Constants;
import org.osgi.framework.ServiceEvent;
import org.osgi.framework.ServiceListener;
import org.osgi.framework.ServiceReference;

/**
 * Restarting and updating the refresh bundle at runtime, while writers change the sources, loses no
 * change: PostgreSQL holds every durable fact (change buffers, frontiers), so whatever a stopped
 * scheduler did not consume is consumed by the next one, including a writer transaction that was
 * open across the update and committed afterwards.
 */
@RunWith(PaxExam.class)
@ExamReactorStrategy(PerClass.class)
public class BundleUpdateIT {

    private static final String REFRESH_BSN = "io.pgtrickle.refresh";

    /** The filter stream table and its defining query. */
    private static final String BIG = "bu_big";
    private static final String BIG_QUERY = "SELECT id, customer, amount FROM bu_orders WHERE amount > 50";
    /** The GROUP BY stream table and its defining query. */
    private static final String PER_SKU = "bu_per_sku";
    private static final String PER_SKU_QUERY = "SELECT sku, count(*) AS n, sum(qty) AS qty FROM bu_lines GROUP BY sku";

    /** Seed rows per writer (ids writer * 1000 + 1 ..) and for the held transaction (ids 9001 ..). */
    private static final int SEED_ROWS = 100;
    private static final int HELD_BASE = 9000;

    /** The refresh unit's repeatable script the code update changes. */
    private static final String SCHEDULER_SCRIPT = "R__60_scheduler.sql";

    @Configuration
    public Option[] configuration() {
        TestDatabase.Database db = FelixOptions.database("felix_bupd");
        return options(FelixOptions.platform(), FelixOptions.refreshBundle(), FelixOptions.databaseProperties(db),
                FelixOptions.datasourceConfiguration(db)
                        // 2 writers, the held transaction, the test's own queries, the tick and up to 4 workers
                        // must not queue behind the default 8 connections (a queue would only slow the test down)
                        .put("maxPoolSize", "16").asOption(),
                newConfiguration(REFRESH_BSN).put("schedulerIntervalMs", "100").asOption());
    }

    @Test
    public void restartAndUpdateOfTheRefreshBundleLoseNoChange() throws Exception {
        DataSource ds = awaitService(Catalog.class, null, SERVICE_TIMEOUT_MILLIS).dataSource();
        Bundle refresh = refreshBundle();
        long firstServiceId = refreshServiceId(awaitRefreshServiceAfter(-1));

        exec(ds, "CREATE TABLE bu_orders (id int PRIMARY KEY, customer int NOT NULL, amount int NOT NULL)");
        exec(ds, "CREATE TABLE bu_lines (id int PRIMARY KEY, sku text NOT NULL, qty int NOT NULL)");
        // rows owned by writer 0, writer 1 and the held transaction; each writer only touches its own
        // ids, so the writers never wait on each other's row locks (and cannot deadlock)
        for (int base : new int[] {0, 1000, HELD_BASE}) {
            exec(ds, "INSERT INTO bu_orders SELECT " + base + " + g, g % 7, g FROM generate_series(1, " + SEED_ROWS + ") g");
            exec(ds, "INSERT INTO bu_lines SELECT " + base + " + g, 'sku' || (g % 5), g % 13 FROM generate_series(1, " + SEED_ROWS + ") g");
        }
        exec(ds, "SELECT pgtrickle.create_stream_table('" + BIG + "', '" + BIG_QUERY + "', schedule => '100ms')");
        exec(ds, "SELECT pgtrickle.create_stream_table('" + PER_SKU + "', '" + PER_SKU_QUERY + "', schedule => '100ms')");

        AtomicBoolean stop = new AtomicBoolean();
        Queue<Throwable> writerErrors = new ConcurrentLinkedQueue<>();
        AtomicLong transactions = new AtomicLong();
        List<Thread> writers = new ArrayList<>();
        for (int w = 0; w < 2; w++) {
            Thread t = new Thread(new Writer(ds, w, stop, writerErrors, transactions), "bundle-update-writer-" + w);
            t.setDaemon(true);
            writers.add(t);
        }
        long writersStarted = System.nanoTime();
        writers.forEach(Thread::start);

        OffsetDateTime updateStarted;
        OffsetDateTime updateDone;
        try {
            try (Connection held = ds.getConnection()) {
                // 1. refreshes by the original bundle, under load
                awaitSchedulerRefreshesAfter(ds, now(ds));

                // 2. stop and start: the component goes away with the bundle and comes back
                refresh.stop();
                // SCR disposes a stopping bundle's components synchronously (bundle STOPPING event)
                assertNoServiceFor(RefreshService.class, null, 0);
                refresh.start();
                long restartedServiceId = refreshServiceId(awaitRefreshServiceAfter(firstServiceId));
                awaitSchedulerRefreshesAfter(ds, now(ds));

                // 3. a writer transaction that stays open across the update
                held.setAutoCommit(false);
                try (Statement s = held.createStatement()) {
                    s.executeUpdate("INSERT INTO bu_orders SELECT " + (HELD_BASE + 500) + " + g, 3, 100 + g FROM generate_series(1, 10) g");
                    s.executeUpdate("UPDATE bu_orders SET amount = amount + 60 WHERE id BETWEEN " + (HELD_BASE + 1) + " AND " + (HELD_BASE + 10));
                    s.executeUpdate("DELETE FROM bu_orders WHERE id BETWEEN " + (HELD_BASE + 91) + " AND " + (HELD_BASE + 100));
                    s.executeUpdate("INSERT INTO bu_lines SELECT " + (HELD_BASE + 500) + " + g, 'held', g FROM generate_series(1, 10) g");
                    s.executeUpdate("UPDATE bu_lines SET qty = qty + 1000 WHERE id BETWEEN " + (HELD_BASE + 1) + " AND " + (HELD_BASE + 10));
                    s.executeUpdate("DELETE FROM bu_lines WHERE id BETWEEN " + (HELD_BASE + 91) + " AND " + (HELD_BASE + 100));
                }

                // 4. update from the same location (Bundle.update() reads the bundle's location again)
                updateStarted = now(ds);
                refresh.update();
                assertEquals("the refresh bundle is ACTIVE again after update()", Bundle.ACTIVE, refresh.getState());
                awaitRefreshServiceAfter(restartedServiceId);
                updateDone = now(ds);
                // the updated bundle refreshes both stream tables while the held transaction is still
                // open: those refreshes must not move the frontier past its changes
                awaitSchedulerRefreshesAfter(ds, updateDone);
                // the scenario, not the product: nothing of the held transaction is visible yet
                assertEquals("0", query(ds, "SELECT count(*) FROM " + PER_SKU + " WHERE sku = 'held'"));
                held.commit();
            }

            // the writers run at least 4 s in all, so they also write after the held commit
            stopWriters(writers, stop, writersStarted);
        } finally {
            // a failure above must not leave the writers running until their own 60 s bound
            stop.set(true);
        }
        assertWritersWorked(writerErrors, transactions);
        awaitBothEqualTheirQueries(ds);
        // the held transaction's changes in particular (already implied by the equality above)
        assertEquals("10", query(ds, "SELECT count(*) FROM " + BIG + " WHERE id BETWEEN " + (HELD_BASE + 501) + " AND " + (HELD_BASE + 510)));
        assertEquals("10", query(ds, "SELECT n FROM " + PER_SKU + " WHERE sku = 'held'"));

        assertEquals("FAILED refreshes: " + query(ds, "SELECT string_agg(error_message, ' | ') FROM pgtrickle.pgt_refresh_history WHERE status = 'FAILED'"),
                "0", query(ds, "SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE status = 'FAILED'"));
        for (String st : new String[] {BIG, PER_SKU}) {
            assertTrue(st + " was refreshed by the scheduler before the update",
                    schedulerRefreshes(ds, st, "<", updateStarted) > 0);
            assertTrue(st + " was refreshed by the scheduler after the update",
                    schedulerRefreshes(ds, st, ">", updateDone) > 0);
            assertEquals(st + " is ACTIVE", "ACTIVE", query(ds, "SELECT status FROM pgtrickle.pgt_stream_tables WHERE pgt_name = '" + st + "'"));
        }
        assertAllBundlesActive(REFRESH_BSN);
    }

    /**
     * Issue 12: an update of the refresh bundle whose repeatable code changed applies the new code in
     * the running framework, while writers change the sources, and loses no change. The new jar is the
     * bundle's own with one function body changed (history_retention_days' default, 90 to 91 days),
     * at the same bundle version: a repeatable script whose checksum changed is applied again by the
     * same version (only an older version would keep a newer one's code). At the end the bundle is
     * updated back from its location, which restores the shipped code.
     */
    @Test
    public void anUpdateWithChangedCodeAppliesItWithoutARestartAndLosesNoChange() throws Exception {
        DataSource ds = awaitService(Catalog.class, null, SERVICE_TIMEOUT_MILLIS).dataSource();
        long catalogServiceId = (Long) InFramework.context().getServiceReference(Catalog.class).getProperty(Constants.SERVICE_ID);
        long frameworkStarted = InFramework.context().getBundle(0).getLastModified();
        Bundle refresh = refreshBundle();
        long refreshBundleId = refresh.getBundleId();
        long refreshServiceId = refreshServiceId(awaitRefreshServiceAfter(-1));
        long unitServiceId = UnitBundles.serviceId(UnitBundles.awaitUnit(REFRESH_BSN));

        byte[] shipped = UnitBundles.ourJar("pgtrickle-refresh");
        String shippedScript = UnitBundles.entry(shipped, "db/code/" + SCHEDULER_SCRIPT);
        String shippedBody = "pgtrickle.setting_number('pg_trickle.history_retention_days', 90, 'days')";
        assertTrue(SCHEDULER_SCRIPT + " still has the body this test changes: " + shippedBody, shippedScript.contains(shippedBody));
        byte[] changed = UnitBundles.rewrite(shipped, "db/code/" + SCHEDULER_SCRIPT, t -> t.replace(shippedBody, shippedBody.replace("90", "91")));
        assertEquals("the shipped code is in place", "90", query(ds, "SELECT pgtrickle.history_retention_days()"));
        assertEquals("the recorded checksum is the shipped script's", checksum(shippedScript), scriptChecksum(ds, SCHEDULER_SCRIPT));
        String otherScripts = otherScriptRecords(ds);

        // the other test method's scenario may still be there: start from none (the two methods share the database)
        dropScenario(ds);
        boolean restored = false;
        try {
            exec(ds, "CREATE TABLE bu_orders (id int PRIMARY KEY, customer int NOT NULL, amount int NOT NULL)");
            exec(ds, "CREATE TABLE bu_lines (id int PRIMARY KEY, sku text NOT NULL, qty int NOT NULL)");
            for (int base : new int[] {0, 1000}) {
                exec(ds, "INSERT INTO bu_orders SELECT " + base + " + g, g % 7, g FROM generate_series(1, " + SEED_ROWS + ") g");
                exec(ds, "INSERT INTO bu_lines SELECT " + base + " + g, 'sku' || (g % 5), g % 13 FROM generate_series(1, " + SEED_ROWS + ") g");
            }
            exec(ds, "SELECT pgtrickle.create_stream_table('" + BIG + "', '" + BIG_QUERY + "', schedule => '100ms')");
            exec(ds, "SELECT pgtrickle.create_stream_table('" + PER_SKU + "', '" + PER_SKU_QUERY + "', schedule => '100ms')");

            AtomicBoolean stop = new AtomicBoolean();
            Queue<Throwable> writerErrors = new ConcurrentLinkedQueue<>();
            AtomicLong transactions = new AtomicLong();
            List<Thread> writers = new ArrayList<>();
            for (int w = 0; w < 2; w++) {
                Thread t = new Thread(new Writer(ds, w, stop, writerErrors, transactions), "code-update-writer-" + w);
                t.setDaemon(true);
                writers.add(t);
            }
            long writersStarted = System.nanoTime();
            writers.forEach(Thread::start);

            OffsetDateTime updateStarted;
            OffsetDateTime updateDone;
            try {
                awaitSchedulerRefreshesAfter(ds, now(ds));

                updateStarted = now(ds);
                // which refresh unit registration is in place whenever a RefreshService comes (SCR registers it
                // from within the SchemaUnit's REGISTERED event, so event order alone would not tell)
                List<String> events = new CopyOnWriteArrayList<>();
                ServiceListener recorder = e -> {
                    if (e.getType() == ServiceEvent.REGISTERED) {
                        ServiceReference<SchemaUnit> unit = UnitBundles.unitReference(REFRESH_BSN);
                        events.add("RefreshService with " + (unit == null ? "no refresh unit"
                                : UnitBundles.serviceId(unit) > unitServiceId ? "the new refresh unit" : "the old refresh unit"));
                    }
                };
                InFramework.context().addServiceListener(recorder, "(" + Constants.OBJECTCLASS + "=" + RefreshService.class.getName() + ")");
                try {
                    refresh.update(new ByteArrayInputStream(changed));
                    assertEquals("the refresh bundle is ACTIVE again after update(InputStream)", Bundle.ACTIVE, refresh.getState());
                    // its unit applied again (a new SchemaUnit), then its components back (they reference the unit)
                    InFramework.awaitService(SchemaUnit.class, "(&" + UnitBundles.unitFilter(REFRESH_BSN) + "(" + Constants.SERVICE_ID + ">="
                            + (unitServiceId + 1) + "))", SERVICE_TIMEOUT_MILLIS);
                    awaitRefreshServiceAfter(refreshServiceId);
                } finally {
                    InFramework.context().removeServiceListener(recorder);
                }
                updateDone = now(ds);
                // the updated bundle's components wait for its code: no RefreshService on the old unit's registration
                assertEquals("RefreshService registrations during the update", List.of("RefreshService with the new refresh unit"), events);

                assertEquals("the changed body is in place", "91", query(ds, "SELECT pgtrickle.history_retention_days()"));
                assertTrue("pg_get_functiondef shows the changed body", query(ds, "SELECT pg_get_functiondef('pgtrickle.history_retention_days()'::regprocedure)")
                        .contains("'pg_trickle.history_retention_days', 91, 'days'"));
                assertEquals("the recorded checksum is the changed script's",
                        checksum(UnitBundles.entry(changed, "db/code/" + SCHEDULER_SCRIPT)), scriptChecksum(ds, SCHEDULER_SCRIPT));
                assertEquals("applied by the running version", refresh.getVersion().toString(), query(ds, "SELECT applied_by FROM "
                        + UnitBundles.SCRIPT_TABLE + " WHERE unit = '" + REFRESH_BSN + "' AND script = '" + SCHEDULER_SCRIPT + "'"));
                assertTrue("recorded as applied during the update", "true".equals(query(ds, "SELECT (applied_at > '" + updateStarted + "')::text FROM "
                        + UnitBundles.SCRIPT_TABLE + " WHERE unit = '" + REFRESH_BSN + "' AND script = '" + SCHEDULER_SCRIPT + "'")));
                assertEquals("the unchanged scripts were left alone", otherScripts, otherScriptRecords(ds));
                assertEquals("READY", query(ds, "SELECT state FROM " + UnitBundles.UNIT_TABLE + " WHERE unit = '" + REFRESH_BSN + "'"));
                // the updated bundle's scheduler is at work, with the writers still running
                awaitSchedulerRefreshesAfter(ds, updateDone);

                stopWriters(writers, stop, writersStarted);
            } finally {
                stop.set(true);
            }
            assertWritersWorked(writerErrors, transactions);
            awaitBothEqualTheirQueries(ds);
            assertEquals("FAILED refreshes: " + query(ds, "SELECT string_agg(error_message, ' | ') FROM pgtrickle.pgt_refresh_history WHERE status = 'FAILED'"),
                    "0", query(ds, "SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE status = 'FAILED'"));
            for (String st : new String[] {BIG, PER_SKU}) {
                assertTrue(st + " was refreshed by the scheduler before the update", schedulerRefreshes(ds, st, "<", updateStarted) > 0);
                assertTrue(st + " was refreshed by the scheduler after the update", schedulerRefreshes(ds, st, ">", updateDone) > 0);
            }

            // no restart: the same framework, the same catalog registration, the same refresh bundle
            assertEquals("the framework was not restarted", frameworkStarted, InFramework.context().getBundle(0).getLastModified());
            assertEquals("the framework is running", Bundle.ACTIVE, InFramework.context().getBundle(0).getState());
            assertEquals("the Catalog service was not re-registered", catalogServiceId,
                    (long) (Long) InFramework.context().getServiceReference(Catalog.class).getProperty(Constants.SERVICE_ID));
            assertEquals("the refresh bundle was updated in place", refreshBundleId, refreshBundle().getBundleId());
            assertAllBundlesActive(REFRESH_BSN);

            // back to the shipped jar (its location): the shipped code comes back the same way
            long changedUnitId = UnitBundles.serviceId(UnitBundles.awaitUnit(REFRESH_BSN));
            long changedServiceId = refreshServiceId(awaitRefreshServiceAfter(-1));
            refresh.update();
            InFramework.awaitService(SchemaUnit.class, "(&" + UnitBundles.unitFilter(REFRESH_BSN) + "(" + Constants.SERVICE_ID + ">="
                    + (changedUnitId + 1) + "))", SERVICE_TIMEOUT_MILLIS);
            awaitRefreshServiceAfter(changedServiceId);
            assertEquals("the shipped body is back", "90", query(ds, "SELECT pgtrickle.history_retention_days()"));
            assertEquals(checksum(shippedScript), scriptChecksum(ds, SCHEDULER_SCRIPT));
            restored = true;
        } finally {
            // a failure above must neither leave the writers running nor the changed code and this
            // method's tables to the other test method
            if (!restored) {
                restoreAndDropScenario(ds, refresh);
            } else {
                dropScenario(ds);
            }
        }
    }

    private static void restoreAndDropScenario(DataSource ds, Bundle refresh) {
        try {
            if (!"90".equals(query(ds, "SELECT pgtrickle.history_retention_days()"))) {
                refresh.update();
                awaitService(SchemaUnit.class, UnitBundles.unitFilter(REFRESH_BSN), SERVICE_TIMEOUT_MILLIS);
                awaitService(RefreshService.class, null, SERVICE_TIMEOUT_MILLIS);
            }
            dropScenario(ds);
        } catch (Exception | AssertionError e) {
            System.err.println("BundleUpdateIT: could not clean up after a failure: " + e);
        }
    }

    /** Drops this class's stream tables and sources if they exist. */
    private static void dropScenario(DataSource ds) throws SQLException {
        for (String st : new String[] {BIG, PER_SKU}) {
            if (query(ds, "SELECT pgt_id FROM pgtrickle.pgt_stream_tables WHERE pgt_name = '" + st + "'") != null) {
                exec(ds, "SELECT pgtrickle.drop_stream_table('" + st + "')");
            }
        }
        exec(ds, "DROP TABLE IF EXISTS bu_orders, bu_lines");
    }

    private static String scriptChecksum(DataSource ds, String script) throws SQLException {
        return query(ds, "SELECT checksum FROM " + UnitBundles.SCRIPT_TABLE + " WHERE unit = '" + REFRESH_BSN + "' AND script = '" + script + "'");
    }

    /** script, checksum and applied_at of the refresh unit's other repeatable scripts. */
    private static String otherScriptRecords(DataSource ds) throws SQLException {
        return query(ds, "SELECT string_agg(script || ' ' || checksum || ' ' || applied_at, ', ' ORDER BY script) FROM "
                + UnitBundles.SCRIPT_TABLE + " WHERE unit = '" + REFRESH_BSN + "' AND kind = 'R' AND script <> '" + SCHEDULER_SCRIPT + "'");
    }

    /** The extender's checksum of a script: SHA-256 (hex) of its text with Unix line ends and a final newline. */
    private static String checksum(String script) throws Exception {
        String t = script.replace("\r\n", "\n");
        if (!t.isEmpty() && !t.endsWith("\n")) {
            t += "\n";
        }
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(t.getBytes(StandardCharsets.UTF_8)));
    }

    /**
     * One writer: short transactions of 1 to 3 random INSERT/UPDATE/DELETE statements on its own ids
     * of both sources, until {@code stop} (or its own 60 s bound, should the test thread die).
     */
    private static final class Writer implements Runnable {
        private final DataSource ds;
        private final int writer;
        private final AtomicBoolean stop;
        private final Queue<Throwable> errors;
        private final AtomicLong transactions;
        private final Random random;
        private final List<Integer> orderIds = new ArrayList<>();
        private final List<Integer> lineIds = new ArrayList<>();
        private int nextId;

        Writer(DataSource ds, int writer, AtomicBoolean stop, Queue<Throwable> errors, AtomicLong transactions) {
            this.ds = ds;
            this.writer = writer;
            this.stop = stop;
            this.errors = errors;
            this.transactions = transactions;
            // a fixed seed per writer: the same mix of statements on every run
            this.random = new Random(42 + writer);
            for (int g = 1; g <= SEED_ROWS; g++) {
                orderIds.add(writer * 1000 + g);
                lineIds.add(writer * 1000 + g);
            }
            // new rows: 100000.. for writer 0, 200000.. for writer 1, clear of every other range
            this.nextId = (writer + 1) * 100_000;
        }

        @Override
        public void run() {
            long bound = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            try (Connection c = ds.getConnection()) {
                c.setAutoCommit(false);
                while (!stop.get() && System.nanoTime() < bound) {
                    int statements = 1 + random.nextInt(3);
                    for (int i = 0; i < statements; i++) {
                        if (random.nextBoolean()) {
                            step(c, "bu_orders", orderIds, "customer", random.nextInt(7), "amount", random.nextInt(101));
                        } else {
                            step(c, "bu_lines", lineIds, "sku", "sku" + random.nextInt(5), "qty", random.nextInt(13));
                        }
                    }
                    c.commit();
                    transactions.incrementAndGet();
                    // keeps the load moderate on a database server other test JVMs may share
                    Thread.sleep(2);
                }
            } catch (Throwable e) {
                errors.add(e);
            }
        }

        private void step(Connection c, String table, List<Integer> ids, String keyColumn, Object key, String valueColumn, int value)
                throws SQLException {
            int op = ids.isEmpty() ? 0 : random.nextInt(3);
            if (op == 0) {
                int id = nextId++;
                try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + table + " (id, " + keyColumn + ", " + valueColumn + ") VALUES (?, ?, ?)")) {
                    ps.setInt(1, id);
                    ps.setObject(2, key);
                    ps.setInt(3, value);
                    ps.executeUpdate();
                }
                ids.add(id);
            } else if (op == 1) {
                int id = ids.get(random.nextInt(ids.size()));
                try (PreparedStatement ps = c.prepareStatement("UPDATE " + table + " SET " + keyColumn + " = ?, " + valueColumn + " = ? WHERE id = ?")) {
                    ps.setObject(1, key);
                    ps.setInt(2, value);
                    ps.setInt(3, id);
                    ps.executeUpdate();
                }
            } else if (!ids.isEmpty()) {
                int id = ids.remove(random.nextInt(ids.size()));
                try (PreparedStatement ps = c.prepareStatement("DELETE FROM " + table + " WHERE id = ?")) {
                    ps.setInt(1, id);
                    ps.executeUpdate();
                }
            }
        }
    }

    private static Bundle refreshBundle() {
        return Arrays.stream(InFramework.context().getBundles())
                .filter(b -> REFRESH_BSN.equals(b.getSymbolicName()))
                .findFirst()
                .orElseThrow(() -> new AssertionError(REFRESH_BSN + " is not installed"));
    }

    /** Waits (bounded) for a RefreshService registered after the one with {@code previousId}. */
    private static ServiceReference<RefreshService> awaitRefreshServiceAfter(long previousId) {
        awaitService(RefreshService.class, "(" + Constants.SERVICE_ID + ">=" + (previousId + 1) + ")", SERVICE_TIMEOUT_MILLIS);
        ServiceReference<RefreshService> ref = InFramework.context().getServiceReference(RefreshService.class);
        assertNotNull("the RefreshService went away again", ref);
        assertEquals("the RefreshService comes from the refresh bundle", REFRESH_BSN, ref.getBundle().getSymbolicName());
        return ref;
    }

    private static long refreshServiceId(ServiceReference<RefreshService> ref) {
        return (Long) ref.getProperty(Constants.SERVICE_ID);
    }

    /**
     * Waits (bounded) until the scheduler has started a refresh of each stream table after
     * {@code after}, proving the scheduler of the bundle as it is now is at work.
     */
    private static void awaitSchedulerRefreshesAfter(DataSource ds, OffsetDateTime after) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (System.nanoTime() < deadline) {
            if (schedulerRefreshes(ds, BIG, ">", after) > 0 && schedulerRefreshes(ds, PER_SKU, ">", after) > 0) {
                return;
            }
            Thread.sleep(50);
        }
        fail("the scheduler did not refresh both stream tables within 30 s after " + after + "\n" + InFramework.componentReport());
    }

    /** Completed or failed scheduler refreshes of {@code streamTable} that started before/after {@code instant}. */
    private static long schedulerRefreshes(DataSource ds, String streamTable, String comparison, OffsetDateTime instant) throws SQLException {
        try (Connection c = ds.getConnection();
             PreparedStatement ps = c.prepareStatement("SELECT count(*) FROM pgtrickle.pgt_refresh_history h"
                     + " JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)"
                     + " WHERE s.pgt_name = ? AND h.initiated_by = 'SCHEDULER' AND h.start_time " + comparison + " ?")) {
            ps.setString(1, streamTable);
            ps.setObject(2, instant);
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                return rs.getLong(1);
            }
        }
    }

    /** The database's clock, the one refresh history start times are taken from. */
    private static OffsetDateTime now(DataSource ds) throws SQLException {
        try (Connection c = ds.getConnection(); Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT clock_timestamp()")) {
            rs.next();
            return rs.getObject(1, OffsetDateTime.class);
        }
    }

    /** Rows of the stream table missing from its query plus rows of the query missing from it (multisets). */
    /**
     * Lets the writers run 4 s in all (the bound is theirs, never an assertion on how long the test's
     * steps took), then stops them; each finishes its current short transaction and returns.
     */
    private static void stopWriters(List<Thread> writers, AtomicBoolean stop, long writersStarted) throws InterruptedException {
        long remaining = TimeUnit.SECONDS.toMillis(4) - TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - writersStarted);
        if (remaining > 0) {
            Thread.sleep(remaining);
        }
        stop.set(true);
        for (Thread t : writers) {
            t.join(TimeUnit.SECONDS.toMillis(30));
            assertTrue(t.getName() + " did not stop within 30 s", !t.isAlive());
        }
    }

    private static void assertWritersWorked(Queue<Throwable> writerErrors, AtomicLong transactions) {
        if (!writerErrors.isEmpty()) {
            AssertionError e = new AssertionError("writers failed: " + writerErrors);
            writerErrors.forEach(e::addSuppressed);
            throw e;
        }
        assertTrue("the writers committed transactions", transactions.get() > 0);
    }

    /** No timing assertion: the scheduler only has to catch up eventually; 60 s is a generous bound. */
    private static void awaitBothEqualTheirQueries(DataSource ds) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while ((difference(ds, BIG, BIG_QUERY) != 0 || difference(ds, PER_SKU, PER_SKU_QUERY) != 0) && System.nanoTime() < deadline) {
            Thread.sleep(100);
        }
        assertEquals(BIG + " differs from its query (rows in one and not the other) 60 s after the writers stopped",
                0, difference(ds, BIG, BIG_QUERY));
        assertEquals(PER_SKU + " differs from its query (rows in one and not the other) 60 s after the writers stopped",
                0, difference(ds, PER_SKU, PER_SKU_QUERY));
    }

    private static long difference(DataSource ds, String streamTable, String definingQuery) throws SQLException {
        return Long.parseLong(query(ds, "SELECT (SELECT count(*) FROM (TABLE " + streamTable + " EXCEPT ALL " + definingQuery + ") a)"
                + " + (SELECT count(*) FROM (" + definingQuery + " EXCEPT ALL TABLE " + streamTable + ") b)"));
    }
}
