package io.pgtrickle.http.events;

import java.sql.Array;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The SQL of the event stream. The events are the outbox rows of sink {@value #SINK_ID}: the refresh
 * transaction writes one for every notification it sends on channel {@value #CHANNEL} (so coalescing
 * applies, and nothing of a rolled-back refresh is ever seen). Unlike the notify bundle's sinks, this
 * sink never claims its rows: every container reads them in place and they stay for the retention,
 * which is what lets a client resume from its last id. Pruning removes old rows but always keeps each
 * stream table's newest, so a retained id is proof that nothing after it was removed.
 */
final class EventStore {

    /** The sink id in {@code pgtrickle.pgt_sinks}; the notify bundle's dispatcher never delivers it (no sink service has it). */
    static final String SINK_ID = "sse";

    /** The channel a stream table is subscribed to for its refreshes to become events. */
    static final String CHANNEL = "pgtrickle_sse";

    /** Most rows read per stream table and poll; a backlog larger than that takes several polls. */
    static final int BATCH = 500;

    /** A stream table as a request named it. */
    record StreamTable(long pgtId, String name, boolean readable, boolean published) {
    }

    /** One event. */
    record Row(long pgtId, long outboxId, String payload) {
    }

    private EventStore() {
    }

    static void register(Connection c) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement("SELECT pgtrickle.register_sink(?, ARRAY[?])")) {
            ps.setString(1, SINK_ID);
            ps.setString(2, CHANNEL);
            ps.execute();
        }
    }

    /**
     * The stream table a name denotes (as SQL would resolve it, search path included), whether
     * {@code role} may read it, and whether it is published on {@value #CHANNEL}; null when the name
     * denotes no stream table.
     */
    static StreamTable resolve(Connection c, String name, String role) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(
                "SELECT s.pgt_id, format('%I.%I', s.pgt_schema, s.pgt_name),"
                        // a role that does not exist may read nothing (has_table_privilege(text, ...) would raise)
                        + " coalesce((SELECT has_table_privilege(r.oid, s.pgt_relid, 'SELECT') FROM pg_roles r WHERE r.rolname = ?), false),"
                        + " EXISTS (SELECT FROM pgtrickle.pgt_subscriptions u WHERE u.pgt_id = s.pgt_id AND u.channel = ?)"
                        + " FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_relid = to_regclass(?)")) {
            ps.setString(1, role);
            ps.setString(2, CHANNEL);
            ps.setString(3, name);
            try (ResultSet rs = ps.executeQuery()) {
                return rs.next() ? new StreamTable(rs.getLong(1), rs.getString(2), rs.getBoolean(3), rs.getBoolean(4)) : null;
            }
        } catch (SQLException e) {
            String state = e.getSQLState() == null ? "" : e.getSQLState();
            if (state.equals("42602") || state.equals("42601") || state.startsWith("0A")) {
                // not a name at all, or another database's: to_regclass refuses it rather than answering null
                return null;
            }
            throw e;
        }
    }

    /** The newest retained event of a stream table, 0 when there is none. */
    static long head(Connection c, long pgtId) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(
                "SELECT coalesce(max(outbox_id), 0) FROM pgtrickle.pgt_outbox WHERE sink_id = ? AND pgt_id = ?")) {
            ps.setString(1, SINK_ID);
            ps.setLong(2, pgtId);
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                return rs.getLong(1);
            }
        }
    }

    /** Whether the event with this id of this stream table is still retained. */
    static boolean retained(Connection c, long pgtId, long outboxId) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(
                "SELECT EXISTS (SELECT FROM pgtrickle.pgt_outbox WHERE sink_id = ? AND pgt_id = ? AND outbox_id = ?)")) {
            ps.setString(1, SINK_ID);
            ps.setLong(2, pgtId);
            ps.setLong(3, outboxId);
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                return rs.getBoolean(1);
            }
        }
    }

    /**
     * The events after each stream table's cursor, in id order. Per stream table the ids follow the
     * commit order (a notification is written while its subscription row is locked), so a cursor per
     * stream table misses nothing; one cursor for all would skip a lower id committed late.
     */
    static List<Row> after(Connection c, Map<Long, Long> cursors) throws SQLException {
        List<Row> rows = new ArrayList<>();
        if (cursors.isEmpty()) {
            return rows;
        }
        Long[] ids = cursors.keySet().toArray(Long[]::new);
        Long[] after = new Long[ids.length];
        for (int i = 0; i < ids.length; i++) {
            after[i] = cursors.get(ids[i]);
        }
        try (PreparedStatement ps = c.prepareStatement(
                "SELECT o.pgt_id, o.outbox_id, o.payload FROM unnest(?::bigint[], ?::bigint[]) AS w(pgt_id, after)"
                        + " CROSS JOIN LATERAL (SELECT x.pgt_id, x.outbox_id, x.payload FROM pgtrickle.pgt_outbox x"
                        + "  WHERE x.sink_id = ? AND x.pgt_id = w.pgt_id AND x.outbox_id > w.after ORDER BY x.outbox_id LIMIT ?) o"
                        + " ORDER BY o.outbox_id")) {
            Array a = c.createArrayOf("bigint", ids);
            Array b = c.createArrayOf("bigint", after);
            ps.setArray(1, a);
            ps.setArray(2, b);
            ps.setString(3, SINK_ID);
            ps.setInt(4, BATCH);
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    rows.add(new Row(rs.getLong(1), rs.getLong(2), rs.getString(3)));
                }
            }
        }
        return rows;
    }

    /**
     * Removes events older than the retention, per stream table a prefix of its ids and never its
     * newest. Returns how many.
     */
    static int prune(Connection c, long retentionMs) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(
                "DELETE FROM pgtrickle.pgt_outbox o USING ("
                        + "  SELECT pgt_id, max(outbox_id) FILTER (WHERE created_at < now() - ? * interval '1 ms') AS upto,"
                        + "         max(outbox_id) AS newest"
                        + "    FROM pgtrickle.pgt_outbox WHERE sink_id = ? GROUP BY pgt_id) p"
                        + " WHERE o.sink_id = ? AND o.pgt_id = p.pgt_id AND o.outbox_id <= p.upto AND o.outbox_id < p.newest")) {
            ps.setLong(1, retentionMs);
            ps.setString(2, SINK_ID);
            ps.setString(3, SINK_ID);
            return ps.executeUpdate();
        }
    }

    /** Whether {@code role} may still read the stream table; false when either is gone. */
    static boolean canRead(Connection c, String role, long pgtId) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(
                "SELECT coalesce((SELECT has_table_privilege(r.oid, s.pgt_relid, 'SELECT') FROM pgtrickle.pgt_stream_tables s,"
                        + " pg_roles r WHERE s.pgt_id = ? AND r.rolname = ?), false)")) {
            ps.setLong(1, pgtId);
            ps.setString(2, role);
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                return rs.getBoolean(1);
            }
        }
    }
}
