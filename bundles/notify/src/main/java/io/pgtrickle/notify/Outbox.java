package io.pgtrickle.notify;

import io.pgtrickle.api.notify.Notification;
import java.sql.Array;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.OffsetDateTime;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.UUID;

/** The catalog's outbox API ({@code 0.33.0-outbox.sql}), one auto-committed call each. */
final class Outbox {

    /** The longest error text kept; the catalog keeps 4000 characters too. */
    static final int MAX_ERROR = 4000;

    /**
     * One claimed {@code pgtrickle.pgt_outbox} row; {@code attempts} counts this delivery, and
     * {@code claimToken} proves the claim when the row is completed or failed.
     */
    record Row(long outboxId, UUID claimToken, String streamTable, String channel, long refreshId, long firstRefreshId,
               int refreshes, long insertedCount, long deletedCount, String payload, OffsetDateTime createdAt, int attempts) {

        String id() {
            return "pgt-" + outboxId;
        }

        Notification toNotification(String sinkId) {
            return new Notification(id(), sinkId, streamTable, channel, refreshId, firstRefreshId, refreshes, insertedCount,
                    deletedCount, payload, createdAt.toInstant(), attempts);
        }
    }

    private Outbox() {
    }

    static void register(Connection c, String sinkId, List<String> channels) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement("SELECT pgtrickle.register_sink(?, ?)")) {
            Array array = c.createArrayOf("text", channels.toArray());
            ps.setString(1, sinkId);
            ps.setArray(2, array);
            ps.execute();
            array.free();
        }
    }

    static List<Row> claim(Connection c, String sinkId, int maxRows, int leaseMs) throws SQLException {
        List<Row> rows = new ArrayList<>();
        try (PreparedStatement ps = c.prepareStatement(
                "SELECT outbox_id, claim_token, stream_table, channel, refresh_id, first_refresh_id, refreshes, inserted_count, deleted_count,"
                        + " payload, created_at, attempts FROM pgtrickle.claim_notifications(?, ?, ?) ORDER BY outbox_id")) {
            ps.setString(1, sinkId);
            ps.setInt(2, maxRows);
            ps.setInt(3, leaseMs);
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    rows.add(new Row(rs.getLong(1), rs.getObject(2, UUID.class), rs.getString(3), rs.getString(4), rs.getLong(5),
                            rs.getLong(6), rs.getInt(7), rs.getLong(8), rs.getLong(9), rs.getString(10),
                            rs.getObject(11, OffsetDateTime.class), rs.getInt(12)));
                }
            }
        }
        return rows;
    }

    /**
     * Deletes delivered rows; returns the ids deleted. A row missing from the answer lost its claim
     * (its lease ran out and another claimer took it): it will be delivered again.
     */
    static Set<Long> complete(Connection c, List<Row> rows) throws SQLException {
        Long[] ids = new Long[rows.size()];
        UUID[] tokens = new UUID[rows.size()];
        for (int i = 0; i < ids.length; i++) {
            ids[i] = rows.get(i).outboxId();
            tokens[i] = rows.get(i).claimToken();
        }
        Set<Long> done = new HashSet<>();
        try (PreparedStatement ps = c.prepareStatement("SELECT * FROM pgtrickle.complete_notifications(?, ?)")) {
            ps.setArray(1, c.createArrayOf("bigint", ids));
            ps.setArray(2, c.createArrayOf("uuid", tokens));
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    done.add(rs.getLong(1));
                }
            }
        }
        return done;
    }

    /** {@code RETRY}, {@code DEAD}, or null when the claim was lost (completed elsewhere, or claimed again). */
    static String fail(Connection c, Row row, String error, int retryInMs, int maxAttempts) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement("SELECT pgtrickle.fail_notification(?, ?, ?, ?, ?)")) {
            ps.setLong(1, row.outboxId());
            ps.setObject(2, row.claimToken());
            ps.setString(3, clean(error));
            ps.setInt(4, retryInMs);
            ps.setInt(5, maxAttempts);
            try (ResultSet rs = ps.executeQuery()) {
                return rs.next() ? rs.getString(1) : null;
            }
        }
    }

    static void disable(Connection c, String sinkId, String reason) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement("SELECT pgtrickle.disable_sink(?, ?)")) {
            ps.setString(1, sinkId);
            ps.setString(2, clean(reason));
            ps.execute();
        }
    }

    /** PostgreSQL text holds no NUL; and an error text need not be a novel. */
    static String clean(String text) {
        String s = text == null ? "" : text.replace('\0', ' ');
        return s.length() > MAX_ERROR ? s.substring(0, MAX_ERROR) : s;
    }
}
