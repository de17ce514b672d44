package io.pgtrickle.metrics;

import static io.pgtrickle.metrics.TextFormat.labels;
import static io.pgtrickle.metrics.TextFormat.with;

import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The catalog's figures: read from PostgreSQL at the scrape, in one snapshot. The history, the
 * outbox and the catalog are the durable facts, so every container reports the same numbers and a
 * restart resets nothing.
 */
final class CatalogFigures {

    private static final List<String> STATUSES = List.of("INITIALIZING", "ACTIVE", "SUSPENDED", "ERROR");
    private static final List<String> PHASES = List.of("BUILDING", "CATCHING_UP", "SWAPPING", "SWAPPED", "FAILED", "CANCELLED");

    private CatalogFigures() {
    }

    /** Every catalog figure, read through {@code s} (one snapshot). */
    static void write(Statement s, TextFormat out) throws SQLException {
        streamTables(s, out);
        refreshes(s, out);
        durations(s, out);
        outbox(s, out);
        evolutions(s, out);
    }

    private static void streamTables(Statement s, TextFormat out) throws SQLException {
        Map<String, Integer> byStatus = new TreeMap<>();
        STATUSES.forEach(st -> byStatus.put(st, 0));
        Map<String, Double> staleness = new TreeMap<>();
        Map<String, Integer> errors = new TreeMap<>();
        // the refresh unit's measure (0 while nothing is pending: an idle 'calculated' stream table is
        // current however old its last refresh), the age of the data where that unit is not installed
        boolean measured;
        try (ResultSet rs = s.executeQuery("SELECT to_regprocedure('pgtrickle.staleness(pgtrickle.pgt_stream_tables)') IS NOT NULL")) {
            measured = rs.next() && rs.getBoolean(1);
        }
        try (ResultSet rs = s.executeQuery("SELECT format('%I.%I', s.pgt_schema, s.pgt_name), s.status,"
                + (measured ? " extract(epoch FROM pgtrickle.staleness(s))," : " extract(epoch FROM clock_timestamp() - s.data_timestamp),")
                + " s.consecutive_errors FROM pgtrickle.pgt_stream_tables s WHERE s.shadow_of IS NULL")) {
            while (rs.next()) {
                byStatus.merge(rs.getString(2), 1, Integer::sum);
                double stale = rs.getDouble(3);
                if (!rs.wasNull()) {
                    staleness.put(rs.getString(1), stale);
                }
                errors.put(rs.getString(1), rs.getInt(4));
            }
        }
        out.family("pgtrickle_stream_tables", "gauge", "Stream tables by status");
        byStatus.forEach((st, n) -> out.sample("pgtrickle_stream_tables", labels("status", st), n));
        out.family("pgtrickle_suspended_stream_tables", "gauge", "Stream tables SUSPENDED after consecutive failed refreshes");
        out.sample("pgtrickle_suspended_stream_tables", Map.of(), byStatus.get("SUSPENDED"));
        out.family("pgtrickle_staleness_seconds", "gauge", "0 while no captured change is pending for a stream table, else seconds since the data it shows was computed (pgtrickle.staleness)");
        staleness.forEach((name, v) -> out.sample("pgtrickle_staleness_seconds", labels("stream_table", name), v));
        out.family("pgtrickle_consecutive_errors", "gauge", "Failed refreshes in a row");
        errors.forEach((name, v) -> out.sample("pgtrickle_consecutive_errors", labels("stream_table", name), v));
    }

    private static void refreshes(Statement s, TextFormat out) throws SQLException {
        Map<String, long[]> rows = new TreeMap<>();
        out.family("pgtrickle_refreshes_total", "counter", "Refreshes in the retained refresh history, by stream table, action and status");
        try (ResultSet rs = s.executeQuery("SELECT format('%I.%I', st.pgt_schema, st.pgt_name), h.action, h.status, count(*),"
                + " sum(h.rows_inserted), sum(h.rows_deleted) FROM pgtrickle.pgt_refresh_history h"
                + " JOIN pgtrickle.pgt_stream_tables st USING (pgt_id) WHERE st.shadow_of IS NULL GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")) {
            while (rs.next()) {
                out.sample("pgtrickle_refreshes_total", labels("stream_table", rs.getString(1), "action", rs.getString(2), "status",
                        rs.getString(3)), rs.getLong(4));
                long[] r = rows.computeIfAbsent(rs.getString(1), k -> new long[2]);
                r[0] += rs.getLong(5);
                r[1] += rs.getLong(6);
            }
        }
        out.family("pgtrickle_rows_inserted_total", "counter", "Rows refreshes inserted into the stream table (an updated row counts once here and once as deleted)");
        rows.forEach((name, r) -> out.sample("pgtrickle_rows_inserted_total", labels("stream_table", name), r[0]));
        out.family("pgtrickle_rows_deleted_total", "counter", "Rows refreshes deleted from the stream table");
        rows.forEach((name, r) -> out.sample("pgtrickle_rows_deleted_total", labels("stream_table", name), r[1]));
    }

    private static void durations(Statement s, TextFormat out) throws SQLException {
        StringBuilder buckets = new StringBuilder();
        for (double b : TextFormat.DURATION_BUCKETS) {
            buckets.append(", count(*) FILTER (WHERE d <= ").append(b).append(')');
        }
        out.family("pgtrickle_refresh_duration_seconds", "histogram", "Duration of completed refreshes in the retained history");
        try (ResultSet rs = s.executeQuery("SELECT name, count(*), coalesce(sum(d), 0)" + buckets
                + " FROM (SELECT format('%I.%I', st.pgt_schema, st.pgt_name) AS name, extract(epoch FROM h.end_time - h.start_time) AS d"
                + "         FROM pgtrickle.pgt_refresh_history h JOIN pgtrickle.pgt_stream_tables st USING (pgt_id)"
                + "        WHERE st.shadow_of IS NULL AND h.status = 'COMPLETED' AND h.end_time IS NOT NULL) x GROUP BY name ORDER BY name")) {
            while (rs.next()) {
                Map<String, String> table = labels("stream_table", rs.getString(1));
                for (int i = 0; i < TextFormat.DURATION_BUCKETS.size(); i++) {
                    out.sample("pgtrickle_refresh_duration_seconds_bucket", with(table, "le", TextFormat.le(TextFormat.DURATION_BUCKETS.get(i))),
                            rs.getLong(4 + i));
                }
                out.sample("pgtrickle_refresh_duration_seconds_bucket", with(table, "le", "+Inf"), rs.getLong(2));
                out.sample("pgtrickle_refresh_duration_seconds_sum", table, rs.getDouble(3));
                out.sample("pgtrickle_refresh_duration_seconds_count", table, rs.getLong(2));
            }
        }
    }

    private static void outbox(Statement s, TextFormat out) throws SQLException {
        Map<String, double[]> sinks = new TreeMap<>();
        try (ResultSet rs = s.executeQuery("SELECT sink_id, queued, dead_letters, coalesce(extract(epoch FROM clock_timestamp() - oldest_queued), 0)"
                + " FROM pgtrickle.list_sinks()")) {
            while (rs.next()) {
                sinks.put(rs.getString(1), new double[] {rs.getLong(2), rs.getLong(3), rs.getDouble(4)});
            }
        }
        out.family("pgtrickle_outbox_queued", "gauge", "Notifications in the outbox waiting for the sink (sink sse: retained events)");
        sinks.forEach((sink, v) -> out.sample("pgtrickle_outbox_queued", labels("sink", sink), v[0]));
        out.family("pgtrickle_outbox_dead_letters", "gauge", "Notifications the sink failed to take after its last attempt");
        sinks.forEach((sink, v) -> out.sample("pgtrickle_outbox_dead_letters", labels("sink", sink), v[1]));
        out.family("pgtrickle_outbox_oldest_seconds", "gauge", "Age of the oldest notification waiting for the sink, 0 when none");
        sinks.forEach((sink, v) -> out.sample("pgtrickle_outbox_oldest_seconds", labels("sink", sink), v[2]));
    }

    private static void evolutions(Statement s, TextFormat out) throws SQLException {
        Map<String, Long> byPhase = new TreeMap<>();
        PHASES.forEach(p -> byPhase.put(p, 0L));
        try (ResultSet rs = s.executeQuery("SELECT phase, count(*) FROM pgtrickle.pgt_evolutions GROUP BY phase")) {
            while (rs.next()) {
                byPhase.put(rs.getString(1), rs.getLong(2));
            }
        }
        out.family("pgtrickle_evolutions", "gauge", "Shadow evolutions (zero-downtime ALTER QUERY) recorded, by phase");
        byPhase.forEach((phase, n) -> out.sample("pgtrickle_evolutions", labels("phase", phase), n));
    }
}
