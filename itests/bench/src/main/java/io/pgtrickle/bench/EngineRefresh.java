package io.pgtrickle.bench;

import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;

/**
 * One refresh as the container's engine runs it ({@code StreamTableRefresher}): {@code run_refresh}
 * under {@code pgtrickle.truncate_after_commit} and the read of its history row in one round trip,
 * the commit, then, when the refresh noted change buffers every consumer has passed, their TRUNCATE
 * in a transaction of its own. {@code refresh_stream_table} from SQL instead deletes consumed rows
 * inside the refresh, which is not what a deployment pays; the benchmarks time this path.
 */
final class EngineRefresh {

    /** Client wall times of the parts, in ms, and the history row's action. */
    record Timing(double runMs, double commitMs, double truncateMs, String action) {
        double totalMs() {
            return runMs + commitMs + truncateMs;
        }
    }

    private EngineRefresh() {
    }

    /** Refreshes the stream table {@code pgtId} on {@code c} (left in auto-commit); {@code s} keeps the refresh's warnings. */
    static Timing refresh(Connection c, Statement s, long pgtId) throws SQLException {
        long t = System.nanoTime();
        c.setAutoCommit(false);
        String action;
        boolean consumed;
        try {
            s.execute("SELECT pgtrickle.run_refresh(" + pgtId + ", 'MANUAL', true, 0)"
                    + " FROM (SELECT set_config('pgtrickle.truncate_after_commit', 'on', true)) AS engine;"
                    + " SELECT h.action, coalesce(current_setting('pgtrickle.consumed_buffers', true), '') <> ''"
                    + " FROM pgtrickle.pgt_refresh_history h"
                    + " WHERE h.refresh_id = nullif(current_setting('pgtrickle.refresh_id', true), '')::bigint");
            s.getMoreResults();
            try (ResultSet rs = s.getResultSet()) {
                rs.next();
                action = rs.getString(1);
                consumed = rs.getBoolean(2);
            }
        } catch (SQLException e) {
            c.rollback();
            c.setAutoCommit(true);
            throw e;
        }
        long ran = System.nanoTime();
        c.commit();
        c.setAutoCommit(true);
        long committed = System.nanoTime();
        if (consumed) {
            try (Statement truncate = c.createStatement()) {
                truncate.execute("SELECT pgtrickle.truncate_consumed_change_buffers()");
            }
        }
        long done = System.nanoTime();
        return new Timing((ran - t) / 1e6, (committed - ran) / 1e6, (done - committed) / 1e6, action);
    }

    /** The stream table's id, for {@link #refresh}. */
    static long pgtId(Connection c, String streamTable) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(
                "SELECT (pgtrickle.find_stream_table('" + streamTable.replace("'", "''") + "')).pgt_id")) {
            rs.next();
            return rs.getLong(1);
        }
    }
}
