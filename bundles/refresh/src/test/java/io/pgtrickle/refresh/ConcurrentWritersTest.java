package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.PrintWriter;
import java.sql.Connection;
import java.sql.SQLException;
import java.sql.SQLFeatureNotSupportedException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.logging.Logger;
import javax.sql.DataSource;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The scheduler under concurrent writers: several threads run random DML (in transactions, some
 * rolled back) while a {@link RefreshEngine} with several workers refreshes every 100 ms, and one
 * transaction stays open across many refreshes and commits only at the end. Once everything is
 * quiet, every stream table must equal its query: a change lost or applied twice under concurrency
 * would show as a difference, because a quiet engine has nothing left to do (no stream table due).
 *
 * <p>Every wait is bounded and nothing asserts on durations: a slow machine only makes the test
 * take longer (up to the bounds), never fail.
 */
class ConcurrentWritersTest {

    private static final int WRITERS = 4;
    private static final long WRITE_MILLIS = 5_000;
    /** The late transaction must span at least this many completed scheduled refreshes. */
    private static final int REFRESHES_ACROSS_LATE_TX = 20;
    /** Upper bound on the writing phase, in case the engine refreshes far less often than expected. */
    private static final long WRITE_PHASE_CAP_MILLIS = 60_000;

    private RefreshDatabase db;
    private RefreshEngine engine;
    private final AtomicLong ticks = new AtomicLong();

    @BeforeEach
    void setUp() throws Exception {
        db = new RefreshDatabase("refresh_concurrent");
    }

    @AfterEach
    void tearDown() {
        if (engine != null) {
            engine.close();
        }
        db.close();
    }

    @Test
    void streamTablesEqualTheirQueriesOnceWritersAndTheLateTransactionAreDone() throws Exception {
        long seed = RandomizedRefreshTest.seed("ConcurrentWritersTest");
        long started = System.nanoTime();
        Random setup = new Random(seed);
        try (Connection c = db.connect(); Statement s = c.createStatement()) {
            for (String ddl : RandomizedRefreshTest.SCHEMA) {
                s.execute(ddl);
            }
            for (String sql : RandomizedRefreshTest.initialData(setup)) {
                s.execute(sql);
            }
            for (RandomizedRefreshTest.Spec st : RandomizedRefreshTest.STREAM_TABLES) {
                // 'calculated': due exactly when a source has unconsumed changes, so "nothing due"
                // means the engine believes every change has been applied
                s.execute("SELECT pgtrickle.create_stream_table('" + st.name() + "', $q$" + st.query() + "$q$, 'calculated')");
            }
        }

        // The late transaction: it writes first, so its xid is the oldest in play, and commits last.
        // Its rows carry the marker 'late' (a value no writer uses), so its arrival is visible.
        Connection late = db.connect();
        try {
            late.setAutoCommit(false);
            try (Statement s = late.createStatement()) {
                s.execute("INSERT INTO t1 VALUES (1001, 1, 'late', 7), (1002, 2, 'late', NULL), (1002, 2, 'late', NULL)");
                s.execute("INSERT INTO t2 VALUES (1, 'late', 1)");
                s.execute("INSERT INTO t3 VALUES (1, 'late', 5)");
            }
            long lateWroteAt = maxRefreshId();

            engine = new RefreshEngine(countingTicks(db.dataSource()), new EngineSettings(100, 3, 3), new Listeners());
            engine.start();

            // Writers: each its own connection and RNG (seed + i); transactions of 1-4 statements,
            // 15 % rolled back, with pauses inside so that refresh snapshots fall in the middle.
            List<String> unexpected = new CopyOnWriteArrayList<>();
            Map<String, AtomicLong> retried = new ConcurrentHashMap<>();
            AtomicLong committed = new AtomicLong();
            AtomicLong rolledBack = new AtomicLong();
            long stopAt = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(WRITE_MILLIS);
            long capAt = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(WRITE_PHASE_CAP_MILLIS);
            List<Thread> writers = new ArrayList<>();
            for (int i = 0; i < WRITERS; i++) {
                Random rnd = new Random(seed + 1 + i);
                Thread w = new Thread(() -> write(rnd, stopAt, capAt, lateWroteAt, committed, rolledBack, retried, unexpected),
                        "writer-" + i);
                w.start();
                writers.add(w);
            }
            for (Thread w : writers) {
                w.join(WRITE_PHASE_CAP_MILLIS + 30_000);
                assertTrue(!w.isAlive(), "seed=" + seed + ": " + w.getName() + " did not stop");
            }
            assertEquals(List.of(), unexpected, "seed=" + seed + ": writers hit unexpected errors");
            long refreshesAcross = completedSince(lateWroteAt);
            assertTrue(refreshesAcross >= REFRESHES_ACROSS_LATE_TX, "seed=" + seed + ": the late transaction stayed open across only "
                    + refreshesAcross + " refreshes within " + WRITE_PHASE_CAP_MILLIS + " ms");

            // Quiet with the late transaction still open: everything committed is applied, nothing of it.
            awaitQuiet(seed, "writers stopped, late transaction open");
            for (RandomizedRefreshTest.Spec st : RandomizedRefreshTest.STREAM_TABLES) {
                assertNoDifference(seed, st.name(), "before the late commit");
                assertEquals(0, db.queryLong("SELECT count(*) FROM " + st.name() + " x WHERE x::text LIKE '%late%'"),
                        "seed=" + seed + ": " + st.name() + " shows rows of a transaction that has not committed");
            }

            // The late commit: older than every frontier's snapshot, invisible to all of them. Writers
            // are stopped, so no other change can cause a recomputation that would hide a skipped commit.
            long beforeLateCommit = maxRefreshId();
            late.commit();
            awaitQuiet(seed, "after the late commit");
            engine.close(); // lets running refreshes finish; none start afterwards

            String ctx = "seed=" + seed + " (after the late commit, engine stopped)";
            assertEquals(0, db.queryLong("SELECT count(*) FROM pgtrickle.due_stream_tables()"), ctx + ": nothing is due");
            for (RandomizedRefreshTest.Spec st : RandomizedRefreshTest.STREAM_TABLES) {
                assertNoDifference(seed, st.name(), "after the late commit");
            }
            // the late rows arrived (equality alone would also hold if the queries did not see them)
            for (String st : List.of("st_proj", "st_join2", "st_agg", "st_distinct", "st_union", "st_by_name")) {
                assertTrue(db.queryLong("SELECT count(*) FROM " + st + " x WHERE x::text LIKE '%late%'") > 0,
                        ctx + ": the late transaction's rows are missing from " + st);
            }
            assertTrue(db.queryLong("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE refresh_id > ? AND action IN ('FULL', 'DIFFERENTIAL')"
                    + " AND rows_inserted > 0 AND initiated_by = 'SCHEDULER'", beforeLateCommit) > 0, ctx + ": the scheduler applied the late commit");

            assertEquals("", db.queryString("SELECT coalesce(string_agg(h.pgt_id || ': ' || h.error_message, ' | '), '')"
                    + " FROM pgtrickle.pgt_refresh_history h WHERE h.status <> 'COMPLETED'"), ctx + ": failed refreshes");
            assertEquals("ACTIVE", db.queryString("SELECT string_agg(DISTINCT status, ',') FROM pgtrickle.pgt_stream_tables"), ctx);
            RefreshEngine.Stats stats = engine.stats();
            assertEquals(0, stats.failed(), ctx + ": " + stats);
            assertEquals(0, stats.abandoned(), ctx + ": " + stats);

            System.out.printf("[ConcurrentWritersTest] seed=%d: %d writer transactions committed, %d rolled back, retried %s;"
                    + " %d refreshes across the late transaction; engine %s; %d history rows (%d DIFFERENTIAL, %d FULL with changes); %d ms%n",
                    seed, committed.get(), rolledBack.get(), retried, refreshesAcross, stats,
                    db.queryLong("SELECT count(*) FROM pgtrickle.pgt_refresh_history"),
                    db.queryLong("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE action = 'DIFFERENTIAL' AND rows_inserted + rows_deleted > 0"),
                    db.queryLong("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE action = 'FULL' AND rows_inserted + rows_deleted > 0"),
                    (System.nanoTime() - started) / 1_000_000);
        } finally {
            late.close();
        }
    }

    /**
     * One writer: random DML until {@code stopAt}, and beyond it until the late transaction has
     * spanned enough refreshes (bounded by {@code capAt}). Deadlocks between writers (they update
     * overlapping rows in different orders) are expected; the victim rolls back and goes on.
     */
    private void write(Random rnd, long stopAt, long capAt, long lateWroteAt, AtomicLong committed, AtomicLong rolledBack,
                       Map<String, AtomicLong> retried, List<String> unexpected) {
        try (Connection c = db.connect(); Statement s = c.createStatement()) {
            while (System.nanoTime() - capAt < 0
                    && (System.nanoTime() - stopAt < 0 || completedSince(lateWroteAt) < REFRESHES_ACROSS_LATE_TX)) {
                boolean tx = rnd.nextInt(100) < 70;
                c.setAutoCommit(!tx);
                try {
                    for (int n = 1 + rnd.nextInt(4); n > 0; n--) {
                        RandomizedRefreshTest.Dml dml = RandomizedRefreshTest.randomDml(rnd, RefreshDatabase.row(s, "SELECT count(*) FROM t1")[0]);
                        if (dml.sql().startsWith("TRUNCATE")) {
                            continue; // an ACCESS EXCLUSIVE lock would only serialise everything
                        }
                        s.executeUpdate(dml.sql());
                        if (tx && rnd.nextInt(4) == 0) {
                            Thread.sleep(rnd.nextInt(30));
                        }
                    }
                    if (tx && rnd.nextInt(100) < 15) {
                        c.rollback();
                        rolledBack.incrementAndGet();
                    } else {
                        if (tx) {
                            c.commit();
                        }
                        committed.incrementAndGet();
                    }
                } catch (SQLException e) {
                    if (tx) {
                        c.rollback();
                    }
                    if ("40P01".equals(e.getSQLState()) || "40001".equals(e.getSQLState())) {
                        retried.computeIfAbsent(e.getSQLState(), k -> new AtomicLong()).incrementAndGet();
                    } else {
                        unexpected.add(Thread.currentThread().getName() + ": " + e.getSQLState() + " " + e.getMessage());
                        return;
                    }
                }
                Thread.sleep(rnd.nextInt(5));
            }
        } catch (SQLException | InterruptedException | RuntimeException e) {
            unexpected.add(Thread.currentThread().getName() + ": " + e);
        }
    }

    /**
     * Quiet: nothing due, no refresh running (no session inside run_refresh), the engine's counters
     * unchanged, and all of that still so after at least two further ticks of the scheduler have
     * begun, i.e. the engine itself has looked and found nothing to do. Bounded by the fixture's
     * patience.
     */
    private void awaitQuiet(long seed, String phase) throws Exception {
        long[] since = {-1, -1};
        RefreshDatabase.await("seed=" + seed + ": quiescence (" + phase + ")", () -> {
            long count = outcomes();
            boolean quiet = db.queryLong("SELECT count(*) FROM pgtrickle.due_stream_tables()") == 0
                    && db.queryLong("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                            + " AND pid <> pg_backend_pid() AND state <> 'idle' AND query LIKE '%run_refresh%'") == 0;
            if (!quiet || count != since[1]) {
                since[0] = quiet ? ticks.get() : -1;
                since[1] = count;
                return false;
            }
            if (since[0] < 0) {
                since[0] = ticks.get();
                return false;
            }
            return ticks.get() >= since[0] + 2;
        });
    }

    private long outcomes() {
        RefreshEngine.Stats s = engine.stats();
        return s.refreshed() + s.lockedElsewhere() + s.failed() + s.abandoned();
    }

    private void assertNoDifference(long seed, String table, String phase) throws SQLException {
        try (Connection c = db.connect()) {
            List<String> diff = RandomizedRefreshTest.difference(c, table);
            if (!diff.isEmpty()) {
                fail("seed=" + seed + " (" + phase + "): " + table + " differs from its query (as multisets): " + diff);
            }
        }
    }

    private long maxRefreshId() throws SQLException {
        return db.queryLong("SELECT coalesce(max(refresh_id), 0) FROM pgtrickle.pgt_refresh_history");
    }

    private long completedSince(long refreshId) {
        try {
            return db.queryLong("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE refresh_id > ? AND status = 'COMPLETED'"
                    + " AND initiated_by = 'SCHEDULER'", refreshId);
        } catch (SQLException e) {
            throw new IllegalStateException(e);
        }
    }

    /** The engine's data source, counting the connections its scheduler thread takes: one per tick. */
    private DataSource countingTicks(DataSource delegate) {
        return new DataSource() {
            @Override
            public Connection getConnection() throws SQLException {
                count();
                return delegate.getConnection();
            }

            @Override
            public Connection getConnection(String user, String password) throws SQLException {
                count();
                return delegate.getConnection(user, password);
            }

            private void count() {
                if (Thread.currentThread().getName().contains("-scheduler-")) {
                    ticks.incrementAndGet();
                }
            }

            @Override
            public PrintWriter getLogWriter() throws SQLException {
                return delegate.getLogWriter();
            }

            @Override
            public void setLogWriter(PrintWriter out) throws SQLException {
                delegate.setLogWriter(out);
            }

            @Override
            public void setLoginTimeout(int seconds) throws SQLException {
                delegate.setLoginTimeout(seconds);
            }

            @Override
            public int getLoginTimeout() throws SQLException {
                return delegate.getLoginTimeout();
            }

            @Override
            public Logger getParentLogger() throws SQLFeatureNotSupportedException {
                return delegate.getParentLogger();
            }

            @Override
            public <T> T unwrap(Class<T> iface) throws SQLException {
                return delegate.unwrap(iface);
            }

            @Override
            public boolean isWrapperFor(Class<?> iface) throws SQLException {
                return delegate.isWrapperFor(iface);
            }
        };
    }
}
