package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pgtrickle.api.refresh.RefreshEvent;
import io.pgtrickle.api.refresh.RefreshEvent.Action;
import io.pgtrickle.api.refresh.RefreshEvent.Initiator;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Listeners run inside the refresh transaction, see its exact counts, and can veto it. Refreshes are
 * started through {@link RefreshEngine#refresh(String)} (the RefreshService path) and
 * {@link RefreshEngine#tick()} (the scheduler path, without its thread), which share one transaction
 * code path.
 */
class RefreshListenerTest {

    private RefreshDatabase db;
    private Listeners listeners;
    private RefreshEngine engine;
    private long pgtId;

    @BeforeEach
    void setUp() throws Exception {
        db = new RefreshDatabase("refresh_listeners");
        db.exec("CREATE TABLE src (id int PRIMARY KEY, v int NOT NULL)",
                "INSERT INTO src VALUES (1, 10), (2, 20), (3, 30)",
                "SELECT pgtrickle.create_stream_table('public.st', 'SELECT id, v FROM src', '100ms')",
                "CREATE TABLE listener_log (refresh_id bigint, rows_seen bigint)");
        pgtId = db.pgtId("st");
        listeners = new Listeners();
        engine = new RefreshEngine(db.dataSource(), new EngineSettings(1000, 2, 3), listeners);
    }

    @AfterEach
    void tearDown() {
        engine.close();
        db.close();
    }

    /** Three inserts, one delete and one update in one transaction: 4 rows in, 2 rows out. */
    private void changeSource() throws SQLException {
        try (Connection c = db.connect()) {
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                s.execute("INSERT INTO src VALUES (4, 40), (5, 50), (6, 60)");
                s.execute("DELETE FROM src WHERE id = 1");
                s.execute("UPDATE src SET v = 21 WHERE id = 2");
            }
            c.commit();
        }
    }

    /**
     * A buffer the refresh consumed in full is emptied by TRUNCATE once the refresh has committed
     * (pgtrickle.truncate_consumed_change_buffers), not left full of deleted rows for every later
     * probe to read past until a vacuum; but only once it holds pg_trickle.change_buffer_prune_kb
     * (default 1 MB): a smaller one keeps its passed rows, which no later refresh reads.
     */
    @Test
    void aBufferTheRefreshConsumedInFullIsLeftEmptyNotFullOfDeletedRows() throws Exception {
        String buffer = db.queryString("SELECT pgtrickle.change_buffer('src')::text");
        changeSource();
        assertEquals(Action.DIFFERENTIAL, engine.refresh("st").action());
        long small = db.queryLong("SELECT pg_relation_size(?::regclass)", buffer);
        assertTrue(small > 0 && small < 1024 * 1024, "a small buffer is kept: " + small);
        assertEquals(0, db.difference("st"));

        db.exec("INSERT INTO src SELECT g, g FROM generate_series(100, 30099) g");
        assertTrue(db.queryLong("SELECT pg_relation_size(?::regclass)", buffer) >= 1024 * 1024);
        RefreshEvent large = engine.refresh("st");
        assertEquals(30000, large.rowsInserted(), "the kept rows were not read again");
        assertEquals(0, db.queryLong("SELECT pg_relation_size(?::regclass)", buffer), "truncated: a DELETE leaves the heap's pages");
        assertEquals(0, db.difference("st"));
        // what is written after is captured and consumed as ever
        db.exec("INSERT INTO src VALUES (7, 70)");
        RefreshEvent next = engine.refresh("st");
        assertEquals(Action.DIFFERENTIAL, next.action());
        assertEquals(1, next.rowsInserted());
        assertEquals(0, db.difference("st"));
    }

    @Test
    void listenersSeeExactCountsInsideTheRefreshTransactionBeforeItCommits() throws Exception {
        List<String> seen = new CopyOnWriteArrayList<>();
        AtomicReference<RefreshEvent> event = new AtomicReference<>();
        listeners.put((e, c) -> seen.add("low"), -5, 1);
        listeners.put((e, c) -> {
            event.set(e);
            seen.add("high");
            try (Statement s = c.createStatement()) {
                // the refresh's own writes are visible on this connection ...
                try (ResultSet rs = s.executeQuery("SELECT count(*) FROM st")) {
                    rs.next();
                    assertEquals(5, rs.getLong(1), "the listener sees the refreshed stream table");
                }
                try (ResultSet rs = s.executeQuery("SELECT status, rows_inserted, rows_deleted FROM pgtrickle.pgt_refresh_history "
                        + "WHERE refresh_id = " + e.refreshId())) {
                    assertTrue(rs.next(), "the listener sees the history row");
                    assertEquals("COMPLETED", rs.getString(1));
                    assertEquals(e.rowsInserted(), rs.getLong(2));
                    assertEquals(e.rowsDeleted(), rs.getLong(3));
                }
                s.execute("INSERT INTO listener_log VALUES (" + e.refreshId() + ", " + e.rowsInserted() + ")");
            }
            // ... and not yet to anybody else: the transaction has not committed
            assertEquals(0, db.queryLong("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE refresh_id = ?", e.refreshId()));
            assertEquals(0, db.queryLong("SELECT count(*) FROM listener_log WHERE refresh_id = ?", e.refreshId()));
        }, 10, 2);

        changeSource();
        RefreshEvent result = engine.refresh("st");

        RefreshEvent e = event.get();
        assertEquals(result, e);
        assertEquals(List.of("high", "low"), seen, "service.ranking order, highest first");
        assertEquals(pgtId, e.pgtId());
        assertEquals("public.st", e.qualifiedName());
        // a manual refresh through the engine plans a new stream table first
        assertEquals(Action.DIFFERENTIAL, e.action());
        assertEquals(Initiator.MANUAL, e.initiatedBy());
        assertEquals(4, e.rowsInserted(), "3 inserted rows + the new version of the updated row");
        assertEquals(2, e.rowsDeleted(), "1 deleted row + the old version of the updated row");
        // committed together: the history row and what the listener wrote
        assertEquals("COMPLETED", db.queryString("SELECT status FROM pgtrickle.pgt_refresh_history WHERE refresh_id = ?", e.refreshId()));
        assertEquals(1, db.queryLong("SELECT count(*) FROM listener_log WHERE refresh_id = ?", e.refreshId()));
        assertEquals(0, db.difference("st"));

        // nothing changed since: an empty NO_DATA refresh, and listeners still hear about it
        RefreshEvent empty = engine.refresh("public.st");
        assertEquals(Action.NO_DATA, empty.action());
        assertTrue(empty.isEmpty());
        assertEquals(empty, event.get());
    }

    @Test
    void theSchedulerPathCallsListenersWithTheSameEvent() throws Exception {
        AtomicReference<RefreshEvent> event = new AtomicReference<>();
        listeners.put((e, c) -> event.set(e), 0, 1);
        changeSource();
        // the stream table is due 100 ms after its initial refresh; tick until the refresh happens
        RefreshDatabase.await("a scheduled refresh", () -> {
            List<CompletableFuture<RefreshEngine.Outcome>> outcomes = engine.tick();
            return outcomes.stream().map(CompletableFuture::join).anyMatch(o -> o == RefreshEngine.Outcome.REFRESHED);
        });
        RefreshEvent e = event.get();
        assertNotNull(e);
        assertEquals(Initiator.SCHEDULER, e.initiatedBy());
        assertEquals(4, e.rowsInserted());
        assertEquals(2, e.rowsDeleted());
        assertEquals("SCHEDULER", db.queryString("SELECT initiated_by FROM pgtrickle.pgt_refresh_history WHERE refresh_id = ?", e.refreshId()));
    }

    @Test
    void aThrowingListenerRollsTheRefreshBack() throws Exception {
        AtomicLong vetoed = new AtomicLong();
        AtomicReference<RefreshEvent> later = new AtomicReference<>();
        listeners.put((e, c) -> {
            try (Statement s = c.createStatement()) {
                s.execute("INSERT INTO listener_log VALUES (" + e.refreshId() + ", 0)");
            }
            vetoed.set(e.refreshId());
            throw new SQLException("outbox full");
        }, 0, 1);
        listeners.put((e, c) -> later.set(e), -1, 2);
        String frontier = db.queryString("SELECT frontier::text FROM pgtrickle.pgt_stream_tables WHERE pgt_id = ?", pgtId);
        changeSource();

        RefreshFailedException failure = assertThrows(RefreshFailedException.class, () -> engine.refresh("st"));
        assertTrue(failure.getMessage().contains("outbox full"), failure.getMessage());
        assertTrue(failure.recorded());
        assertTrue(vetoed.get() > 0);
        assertEquals(null, later.get(), "listeners after the failing one are not called");

        assertEquals(0, db.queryLong("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE refresh_id = ?", vetoed.get()),
                "the refresh's history row was rolled back");
        assertEquals(0, db.queryLong("SELECT count(*) FROM listener_log"), "and so was what the listener wrote");
        assertEquals(3, db.queryLong("SELECT count(*) FROM st"));
        assertEquals(10, db.queryLong("SELECT v FROM st WHERE id = 1"), "the stream table is unchanged");
        assertEquals(20, db.queryLong("SELECT v FROM st WHERE id = 2"));
        assertEquals(frontier, db.queryString("SELECT frontier::text FROM pgtrickle.pgt_stream_tables WHERE pgt_id = ?", pgtId),
                "the frontier did not move: the changes are still pending");
        assertTrue(db.queryString("SELECT error_message FROM pgtrickle.pgt_refresh_history WHERE pgt_id = ? AND status = 'FAILED'", pgtId)
                .contains("outbox full"), "the failure is recorded in its own transaction");
        assertEquals(1, db.queryLong("SELECT consecutive_errors FROM pgtrickle.pgt_stream_tables WHERE pgt_id = ?", pgtId));

        // a runtime exception vetoes just the same
        listeners.put((e, c) -> {
            throw new IllegalStateException("listener bug");
        }, 0, 1);
        assertTrue(assertThrows(RefreshFailedException.class, () -> engine.refresh("st")).getMessage().contains("listener bug"));
        assertEquals(3, db.queryLong("SELECT count(*) FROM st"));

        // without the veto the pending changes are applied, none lost
        listeners.remove(1);
        RefreshEvent e = engine.refresh("st");
        assertEquals(4, e.rowsInserted());
        assertEquals(2, e.rowsDeleted());
        assertEquals(e, later.get());
        assertEquals(0, db.difference("st"));
        assertEquals(0, db.queryLong("SELECT consecutive_errors FROM pgtrickle.pgt_stream_tables WHERE pgt_id = ?", pgtId));
    }

    @Test
    void aListenerThatSwallowsAFailedStatementCannotMakeARolledBackRefreshLookCommitted() throws Exception {
        AtomicLong refreshId = new AtomicLong();
        listeners.put((e, c) -> {
            refreshId.set(e.refreshId());
            try (Statement s = c.createStatement()) {
                s.execute("SELECT 1 / 0");
            } catch (SQLException swallowed) {
                // the contract forbids this without a savepoint; the refresh must notice
            }
        }, 0, 1);
        changeSource();
        RefreshFailedException failure = assertThrows(RefreshFailedException.class, () -> engine.refresh("st"));
        assertTrue(failure.getMessage().contains("aborted"), failure.getMessage());
        assertEquals(0, db.queryLong("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE refresh_id = ?", refreshId.get()));
        assertEquals(3, db.queryLong("SELECT count(*) FROM st"));
    }

    @Test
    void aListenerUsingASavepointMayFailQuietly() throws Exception {
        listeners.put((e, c) -> {
            java.sql.Savepoint sp = c.setSavepoint();
            try (Statement s = c.createStatement()) {
                s.execute("SELECT 1 / 0");
            } catch (SQLException expected) {
                c.rollback(sp);
            }
        }, 0, 1);
        changeSource();
        RefreshEvent e = engine.refresh("st");
        assertEquals("COMPLETED", db.queryString("SELECT status FROM pgtrickle.pgt_refresh_history WHERE refresh_id = ?", e.refreshId()));
        assertEquals(0, db.difference("st"));
    }

    @Test
    void manualRefreshNamesAndStatesAreTheCatalogs() throws Exception {
        SQLException unknown = assertThrows(SQLException.class, () -> engine.refresh("no_such_table"));
        assertEquals("42P01", unknown.getSQLState());
        SQLException invalid = assertThrows(SQLException.class, () -> engine.refresh("a.b.c"));
        assertFalse(invalid instanceof RefreshFailedException, "nothing was refreshed, nothing recorded");

        db.exec("UPDATE pgtrickle.pgt_stream_tables SET status = 'SUSPENDED' WHERE pgt_id = " + pgtId);
        SQLException suspended = assertThrows(SQLException.class, () -> engine.refresh("st"));
        assertEquals("55000", suspended.getSQLState());
        assertTrue(suspended.getMessage().contains("is SUSPENDED"), suspended.getMessage());
        // a refusal is not a failure: nothing recorded, nothing counted
        assertEquals("0", db.queryString("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE status = 'FAILED'"));
        db.exec("SELECT pgtrickle.resume_stream_table('st')");
        assertEquals(Action.NO_DATA, engine.refresh("st").action());
    }
}
