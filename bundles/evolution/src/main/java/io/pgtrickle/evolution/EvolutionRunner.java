package io.pgtrickle.evolution;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import javax.sql.DataSource;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Drives every evolution in progress in the database, one step at a time
 * ({@code pgtrickle.evolution_step}, each step one transaction, the next one due after the wait the
 * step returns). The steps themselves are SQL (0.33.0-evolution.sql): psql can drive an evolution
 * too, and several containers can run runners side by side (a step skips an evolution another
 * session is stepping).
 *
 * <p>One thread, evolutions in turn: a build runs as long as its statement, and evolutions are rare
 * operator actions, so concurrency would buy little and cost a connection per evolution.
 *
 * <p>A step that fails for a reason that can pass (connection lost, deadlock, serialization failure,
 * server shutting down) is retried; any other failure ends the evolution with
 * {@code pgtrickle.fail_evolution}, which drops the shadow and leaves the live stream table as it was.
 */
final class EvolutionRunner implements AutoCloseable {

    private static final Logger LOG = LoggerFactory.getLogger(EvolutionRunner.class);

    private final DataSource dataSource;
    private final long pollIntervalMs;
    private final Thread thread;
    private final Map<Long, Long> dueAt = new HashMap<>(); // evolution id -> System.nanoTime(); runner thread only
    private final Map<Long, String> phases = new HashMap<>(); // runner thread only
    private volatile boolean closed;
    private volatile Statement running;
    private boolean databaseDown;

    EvolutionRunner(DataSource dataSource, long pollIntervalMs) {
        this.dataSource = dataSource;
        this.pollIntervalMs = pollIntervalMs;
        this.thread = new Thread(this::run, "pgtrickle-evolution");
        thread.setDaemon(true);
    }

    void start() {
        thread.start();
    }

    private void run() {
        while (!closed) {
            long sleepMs = pollIntervalMs;
            try (Connection c = dataSource.getConnection()) {
                c.setAutoCommit(true);
                if (databaseDown) {
                    LOG.info("Shadow evolution: the database is reachable again");
                    databaseDown = false;
                }
                List<Long> ids = inProgress(c);
                dueAt.keySet().retainAll(Set.copyOf(ids));
                phases.keySet().retainAll(Set.copyOf(ids));
                for (long id : ids) {
                    if (closed) {
                        break;
                    }
                    Long due = dueAt.get(id);
                    long now = System.nanoTime();
                    if (due != null && due - now > 0) {
                        sleepMs = Math.min(sleepMs, TimeUnit.NANOSECONDS.toMillis(due - now) + 1);
                        continue;
                    }
                    Integer waitMs = step(c, id);
                    report(c, id);
                    if (waitMs != null) {
                        dueAt.put(id, System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(waitMs));
                        sleepMs = Math.min(sleepMs, waitMs);
                    }
                }
            } catch (SQLException e) {
                if (!closed && !databaseDown) {
                    LOG.warn("Shadow evolution cannot reach the database, retrying: {}", e.getMessage());
                    databaseDown = true;
                }
            }
            if (sleepMs > 0 && !closed) {
                try {
                    Thread.sleep(sleepMs);
                } catch (InterruptedException e) {
                    return;
                }
            }
        }
    }

    private static List<Long> inProgress(Connection c) throws SQLException {
        List<Long> ids = new ArrayList<>();
        try (Statement s = c.createStatement();
             ResultSet rs = s.executeQuery("SELECT evolution_id FROM pgtrickle.pgt_evolutions WHERE status = 'in_progress' ORDER BY evolution_id")) {
            while (rs.next()) {
                ids.add(rs.getLong(1));
            }
        }
        return ids;
    }

    /** One step in its own transaction: the wait until the next one, or null when the evolution ended. */
    private Integer step(Connection c, long id) throws SQLException {
        c.setAutoCommit(false);
        try (PreparedStatement ps = c.prepareStatement("SELECT pgtrickle.evolution_step(?)")) {
            ps.setLong(1, id);
            running = ps;
            Integer waitMs;
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                int v = rs.getInt(1);
                waitMs = rs.wasNull() ? null : v;
            }
            c.commit();
            return waitMs;
        } catch (SQLException e) {
            c.rollback();
            if (closed) {
                return null; // cancelled by close(): the next runner does the step again
            }
            if (transientFailure(e)) {
                LOG.info("Shadow evolution {}: step failed ({}: {}), retrying", id, e.getSQLState(), e.getMessage());
                return (int) pollIntervalMs;
            }
            c.setAutoCommit(true);
            try (PreparedStatement fail = c.prepareStatement("SELECT pgtrickle.fail_evolution(?, ?)")) {
                fail.setLong(1, id);
                fail.setString(2, e.getMessage());
                fail.execute();
            }
            return null;
        } finally {
            running = null;
            c.setAutoCommit(true);
        }
    }

    /** Failures that say nothing about the evolution: the same step may well work later. */
    static boolean transientFailure(SQLException e) {
        String state = e.getSQLState();
        return state == null
                || state.startsWith("08")      // connection exception
                || state.startsWith("53")      // insufficient resources
                || state.equals("40001")       // serialization failure
                || state.equals("40P01")       // deadlock
                || state.equals("55P03")       // lock not available (a lock_timeout of the role)
                || state.equals("57014")       // query canceled (statement_timeout, pg_cancel_backend)
                || state.startsWith("57P");    // server shutting down, cannot connect now
    }

    /** Logs what changed: the phase an evolution went on to, and how it ended. */
    private void report(Connection c, long id) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement("SELECT format('%I.%I', s.pgt_schema, s.pgt_name), e.status, e.phase, e.build_rows,"
                + " e.swap_attempts, e.inserted_count, e.deleted_count, e.error"
                + " FROM pgtrickle.pgt_evolutions e JOIN pgtrickle.pgt_stream_tables s ON s.pgt_id = e.pgt_id WHERE e.evolution_id = ?")) {
            ps.setLong(1, id);
            try (ResultSet rs = ps.executeQuery()) {
                if (!rs.next()) {
                    phases.remove(id); // dropped with its stream table
                    return;
                }
                String name = rs.getString(1);
                String status = rs.getString(2);
                String phase = rs.getString(3);
                if (phase.equals(phases.put(id, phase))) {
                    return;
                }
                switch (phase) {
                    case "BUILDING" -> LOG.info("Shadow evolution {} of {}: building", id, name);
                    case "CATCHING_UP" -> LOG.info("Shadow evolution {} of {}: built ({} rows), catching up", id, name, rs.getLong(4));
                    case "SWAPPING" -> LOG.info("Shadow evolution {} of {}: converged, swapping", id, name);
                    case "SWAPPED" -> LOG.info("Shadow evolution {} of {}: swapped in after {} lock timeouts; the new query is live "
                            + "(+{} -{} rows)", id, name, rs.getInt(5), rs.getLong(6), rs.getLong(7));
                    default -> LOG.warn("Shadow evolution {} of {}: {}: {}", id, name, status, rs.getString(8));
                }
            }
        }
    }

    @Override
    public void close() {
        closed = true;
        Statement s = running;
        if (s != null) {
            try {
                s.cancel();
            } catch (SQLException e) {
                LOG.debug("Shadow evolution: could not cancel the step in progress: {}", e.getMessage());
            }
        }
        thread.interrupt();
        try {
            thread.join(TimeUnit.SECONDS.toMillis(10));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
