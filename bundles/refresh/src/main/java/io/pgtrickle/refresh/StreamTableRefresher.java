package io.pgtrickle.refresh;

import io.pgtrickle.api.refresh.RefreshEvent;
import io.pgtrickle.api.refresh.RefreshEvent.Action;
import io.pgtrickle.api.refresh.RefreshEvent.Initiator;
import io.pgtrickle.refresh.plan.RefreshPlanner;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Collectors;
import javax.sql.DataSource;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One refresh of one stream table, the only way this bundle refreshes anything (scheduled and
 * manual refreshes alike): in one transaction, {@code pgtrickle.run_refresh}, the history row it
 * wrote, every {@link io.pgtrickle.api.refresh.RefreshListener}, then COMMIT. Any failure rolls all
 * of it back and is then recorded by {@code pgtrickle.record_refresh_failure} in a transaction of its
 * own, so the record survives the rollback.
 */
final class StreamTableRefresher {

    private static final Logger LOG = LoggerFactory.getLogger(StreamTableRefresher.class);

    /** Longest error text stored in the catalog; PL/pgSQL context lines can make messages long. */
    static final int MAX_ERROR_LENGTH = 4000;

    private final DataSource dataSource;
    private final Listeners listeners;
    private final int notifyCoalesceMs;
    /**
     * Refreshes in progress: their connection and the {@code run_refresh} statement while it runs, so
     * that a stop can cancel and cut off a refresh that does not finish.
     */
    private final Map<Connection, AtomicReference<Statement>> running = new ConcurrentHashMap<>();
    private volatile boolean stopping;

    StreamTableRefresher(DataSource dataSource, Listeners listeners, int notifyCoalesceMs) {
        this.dataSource = dataSource;
        this.listeners = listeners;
        this.notifyCoalesceMs = notifyCoalesceMs;
    }

    /**
     * Refreshes the stream table {@code pgtId}.
     *
     * @param label                how log lines and errors name the stream table
     * @param wait                 false: give up (return null) when another session is refreshing it
     * @param maxConsecutiveErrors the limit passed to {@code record_refresh_failure} on failure
     * @return the committed refresh, or null when {@code wait} is false and it was locked elsewhere
     */
    RefreshEvent refresh(long pgtId, String label, Initiator initiator, boolean wait, int maxConsecutiveErrors)
            throws RefreshFailedException {
        Connection c;
        try {
            c = dataSource.getConnection();
        } catch (SQLException e) {
            throw new RefreshFailedException(pgtId, "refresh of " + label + " not started: no database connection: "
                    + e.getMessage(), e.getSQLState(), e, false, null);
        }
        AtomicReference<Statement> current = new AtomicReference<>();
        running.put(c, current);
        try {
            return refresh(c, current, pgtId, label, initiator, wait, maxConsecutiveErrors);
        } finally {
            running.remove(c);
            closeQuietly(c);
        }
    }

    private RefreshEvent refresh(Connection c, AtomicReference<Statement> current, long pgtId, String label, Initiator initiator,
                                 boolean wait, int maxConsecutiveErrors) throws RefreshFailedException {
        RefreshEvent event;
        boolean consumed;
        try {
            c.setAutoCommit(false);
            if (initiator == Initiator.MANUAL) {
                // the scheduler plans new stream tables on its ticks; a manual refresh may come first
                RefreshPlanner.planIfNeeded(c, pgtId);
            }
            Ran ran = runRefresh(c, current, pgtId, initiator, wait);
            if (ran == null) {
                c.rollback();
                return null;
            }
            event = ran.event();
            consumed = ran.consumed();
            List<Listeners.Entry> called = listeners.snapshot();
            for (Listeners.Entry listener : called) {
                callListener(listener, event, c);
            }
            if (!called.isEmpty()) {
                verifyIntact(c, event.refreshId(), called);
            }
            c.commit();
        } catch (SQLException | RuntimeException e) {
            throw failed(c, pgtId, label, initiator, e, maxConsecutiveErrors);
        }
        if (consumed) {
            truncateConsumedBuffers(c, label);
        }
        return event;
    }

    /**
     * Empties the change buffers the refresh's pruning found passed in full by every consumer, in a
     * transaction of its own after the refresh's commit: the TRUNCATE's lock then stops the buffer's
     * writers for that statement only, not for the rest of a refresh (see
     * {@code pgtrickle.truncate_consumed_change_buffers}). The refresh has committed whatever happens
     * here; a buffer left as it is goes with a later pruning.
     */
    private static void truncateConsumedBuffers(Connection c, String label) {
        try (Statement s = c.createStatement()) {
            // autocommit: one round trip, where a transaction of its own and a COMMIT take two
            c.setAutoCommit(true);
            s.execute("SELECT pgtrickle.truncate_consumed_change_buffers()");
        } catch (SQLException e) {
            LOG.warn("Emptying the change buffers consumed by the refresh of {} failed (their rows go with a later pruning): {}",
                    label, e.getMessage());
        }
    }

    /** A refresh run and not yet committed: its event, and whether its pruning noted buffers to empty. */
    private record Ran(RefreshEvent event, boolean consumed) {
    }

    /**
     * Runs {@code pgtrickle.run_refresh} and reads back the history row it wrote, in one round trip:
     * two statements sent together (the second sees what the first wrote; run_refresh names its row
     * in the local setting pgtrickle.refresh_id). Null when {@code wait} is false and another session
     * is refreshing the stream table.
     */
    private Ran runRefresh(Connection c, AtomicReference<Statement> current, long pgtId, Initiator initiator, boolean wait)
            throws SQLException {
        // pgtrickle.truncate_after_commit: the pruning may leave buffers consumed in full to
        // truncateConsumedBuffers (noted in pgtrickle.consumed_buffers); set first, by the subquery
        // the call's row comes from
        try (PreparedStatement ps = c.prepareStatement("SELECT pgtrickle.run_refresh(?, ?, ?, ?)"
                + " FROM (SELECT set_config('pgtrickle.truncate_after_commit', 'on', true)) AS engine;"
                + " SELECT h.refresh_id, h.pgt_id, st.pgt_schema, st.pgt_name, h.action, h.rows_inserted, h.rows_deleted, h.initiated_by,"
                + " coalesce(current_setting('pgtrickle.consumed_buffers', true), '') <> ''"
                + " FROM pgtrickle.pgt_refresh_history h JOIN pgtrickle.pgt_stream_tables st ON st.pgt_id = h.pgt_id"
                + " WHERE h.refresh_id = nullif(current_setting('pgtrickle.refresh_id', true), '')::bigint")) {
            ps.setLong(1, pgtId);
            ps.setString(2, initiator.name());
            ps.setBoolean(3, wait);
            ps.setInt(4, notifyCoalesceMs);
            current.set(ps);
            try {
                ps.execute();
                long refreshId;
                try (ResultSet rs = ps.getResultSet()) {
                    rs.next();
                    refreshId = rs.getLong(1);
                    if (rs.wasNull()) {
                        return null;
                    }
                }
                if (!ps.getMoreResults()) {
                    throw new IllegalStateException("pgtrickle.run_refresh returned refresh_id " + refreshId + " but no history row was read");
                }
                try (ResultSet rs = ps.getResultSet()) {
                    if (!rs.next() || rs.getLong(1) != refreshId) {
                        throw new IllegalStateException("pgtrickle.run_refresh returned refresh_id " + refreshId
                                + " but wrote no history row with that id");
                    }
                    RefreshEvent event = RefreshEvent.builder()
                            .refreshId(refreshId)
                            .pgtId(rs.getLong(2))
                            .streamTable(rs.getString(3), rs.getString(4))
                            .action(Action.valueOf(rs.getString(5)))
                            .rowsInserted(rs.getLong(6))
                            .rowsDeleted(rs.getLong(7))
                            .initiatedBy(Initiator.valueOf(rs.getString(8)))
                            .build();
                    return new Ran(event, rs.getBoolean(9));
                }
            } finally {
                current.set(null);
            }
        }
    }

    private static void callListener(Listeners.Entry listener, RefreshEvent event, Connection c) throws SQLException {
        try {
            listener.listener().refreshed(event, c);
        } catch (SQLException e) {
            throw new SQLException("refresh listener " + listener.label() + " failed: " + e.getMessage(), e.getSQLState(), e);
        } catch (RuntimeException e) {
            throw new SQLException("refresh listener " + listener.label() + " failed: " + e, e);
        } catch (VirtualMachineError e) {
            throw e;
        } catch (Error e) {
            // e.g. NoClassDefFoundError from a listener whose bundle is being updated: its refresh
            // fails and is retried like any other, instead of escaping the transaction handling
            throw new SQLException("refresh listener " + listener.label() + " failed: " + e, e);
        }
        if (c.getAutoCommit()) {
            // the refresh may already be half committed; say who broke the contract
            throw new SQLException("refresh listener " + listener.label() + " switched auto-commit on; "
                    + "listeners must leave the refresh transaction to the refresh");
        }
    }

    /**
     * Fails the refresh if a listener left its transaction unable to commit. pgjdbc's commit() of a
     * transaction in which a statement failed returns normally although PostgreSQL rolled it back, so
     * a listener that swallowed an SQL error would otherwise make a rolled-back refresh look
     * committed. A listener that issued ROLLBACK itself is caught too: the history row is gone.
     */
    private static void verifyIntact(Connection c, long refreshId, List<Listeners.Entry> called) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement("SELECT 1 FROM pgtrickle.pgt_refresh_history WHERE refresh_id = ?")) {
            ps.setLong(1, refreshId);
            try (ResultSet rs = ps.executeQuery()) {
                if (!rs.next()) {
                    throw new SQLException("a refresh listener ended the refresh transaction (" + labels(called) + ")");
                }
            }
        } catch (SQLException e) {
            if ("25P02".equals(e.getSQLState())) {
                // in_failed_sql_transaction
                throw new SQLException("a refresh listener left the refresh transaction aborted by a failed statement ("
                        + labels(called) + "): " + e.getMessage(), e.getSQLState(), e);
            }
            throw e;
        }
    }

    private static String labels(List<Listeners.Entry> called) {
        return called.stream().map(Listeners.Entry::label).collect(Collectors.joining(", "));
    }

    private RefreshFailedException failed(Connection c, long pgtId, String label, Initiator initiator, Exception cause,
            int maxConsecutiveErrors) {
        String sqlState = cause instanceof SQLException ? ((SQLException) cause).getSQLState() : null;
        String message = concise(String.valueOf(cause.getMessage() != null ? cause.getMessage() : cause));
        LOG.debug("refresh of {} failed", label, cause);
        rollbackQuietly(c);
        if (stopping || isConnectionFailure(cause)) {
            // not the stream table's fault: counting it would suspend healthy stream tables when the
            // database restarts or the container stops
            return new RefreshFailedException(pgtId, "refresh of " + label + " abandoned: " + message, sqlState, cause, false, null);
        }
        if (REFUSED.equals(sqlState)) {
            // run_refresh refused (a SUSPENDED stream table): nothing failed, nothing to count
            return new RefreshFailedException(pgtId, message, sqlState, cause, false, null);
        }
        String status = null;
        try {
            c.setAutoCommit(true);
            try (PreparedStatement ps = c.prepareStatement("SELECT pgtrickle.record_refresh_failure(?, ?, ?, ?)")) {
                ps.setLong(1, pgtId);
                ps.setString(2, truncate(message));
                ps.setInt(3, maxConsecutiveErrors);
                ps.setString(4, initiator.name());
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    status = rs.getString(1);
                }
            }
        } catch (SQLException | RuntimeException e) {
            LOG.warn("could not record the failed refresh of {}: {}", label, e.getMessage());
            return new RefreshFailedException(pgtId, "refresh of " + label + " failed: " + message, sqlState, cause, false, null);
        }
        return new RefreshFailedException(pgtId, "refresh of " + label + " failed: " + message, sqlState, cause, true, status);
    }

    /** SQLSTATE class 08 (connection exception) or 57P01-57P03 (server shutting down or starting). */
    /** SQLSTATE object_not_in_prerequisite_state: run_refresh's refusal of a SUSPENDED stream table. */
    static final String REFUSED = "55000";

    static boolean isConnectionFailure(Throwable t) {
        for (Throwable x = t; x != null; x = x.getCause()) {
            if (x instanceof SQLException) {
                String state = ((SQLException) x).getSQLState();
                if (state != null && (state.startsWith("08") || state.equals("57P01") || state.equals("57P02") || state.equals("57P03"))) {
                    return true;
                }
            }
            if (x.getCause() == x) {
                break;
            }
        }
        return false;
    }

    /**
     * The error without pgjdbc's "Where:" part and what follows it: for a refresh that is the PL/pgSQL
     * context, i.e. the whole generated refresh statement, too long for a log line or for
     * {@code last_error_message}. Message, detail and hint stay; the full text is logged at DEBUG.
     */
    static String concise(String message) {
        int where = message.indexOf("\n  Where: ");
        return where < 0 ? message : message.substring(0, where);
    }

    private static String truncate(String message) {
        return message.length() <= MAX_ERROR_LENGTH ? message : message.substring(0, MAX_ERROR_LENGTH - 3) + "...";
    }

    /**
     * From now on failures are not recorded: they are the stop's doing, e.g. a connection cut off by
     * {@link #abortRunning()}.
     */
    void stopping() {
        stopping = true;
    }

    /**
     * Cuts off refreshes still running, so that their threads return: cancels a running
     * {@code run_refresh} (the server then rolls back at once and releases the stream table's lock
     * for other containers) and aborts the connection (which also ends a listener's wait on it).
     * A listener statement still running on the server ends when it completes, or at the latest when
     * the server notices the client is gone; its transaction can no longer commit.
     */
    int abortRunning() {
        int n = 0;
        for (Map.Entry<Connection, AtomicReference<Statement>> r : running.entrySet()) {
            Statement statement = r.getValue().get();
            try {
                if (statement != null) {
                    // pgjdbc cancels only while this very statement executes, never a later one
                    statement.cancel();
                }
            } catch (SQLException | RuntimeException e) {
                LOG.debug("could not cancel a running refresh: {}", e.getMessage());
            }
            try {
                r.getKey().abort(Runnable::run);
                n++;
            } catch (SQLException | RuntimeException e) {
                LOG.debug("could not abort a refresh connection: {}", e.getMessage());
            }
        }
        return n;
    }

    private static void rollbackQuietly(Connection c) {
        try {
            if (!c.isClosed() && !c.getAutoCommit()) {
                c.rollback();
            }
        } catch (SQLException | RuntimeException e) {
            LOG.debug("rollback failed: {}", e.getMessage());
        }
    }

    private static void closeQuietly(Connection c) {
        try {
            c.close();
        } catch (SQLException | RuntimeException e) {
            LOG.debug("closing a connection failed: {}", e.getMessage());
        }
    }
}
