package io.pgtrickle.notify;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.pgtrickle.testing.MigratedDatabaseTest;
import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.postgresql.PGConnection;
import org.postgresql.PGNotification;

/** Reactive subscriptions through the SQL API, heard by a plain JDBC client that LISTENs. */
class SubscriptionsTest extends MigratedDatabaseTest {

    private static final ObjectMapper JSON = new ObjectMapper();

    private Connection listener;

    SubscriptionsTest() {
        super("subscriptions");
    }

    @BeforeEach
    void ordersAndAStreamTable() throws SQLException {
        exec("CREATE TABLE orders (id int PRIMARY KEY, customer text, amount numeric)");
        exec("INSERT INTO orders VALUES (1, 'ann', 10), (2, 'bob', 7)");
        exec("SELECT pgtrickle.create_stream_table('totals', 'SELECT customer, sum(amount) AS total FROM orders GROUP BY customer',"
                + " schedule => 'calculated')");
        listener = db.connect();
        try (Statement s = listener.createStatement()) {
            s.execute("LISTEN order_events");
        }
    }

    @AfterEach
    void closeListener() throws SQLException {
        listener.close();
    }

    @Test
    void everyNonEmptyRefreshIsAnnouncedOnceWithTheHistorysNumbers() throws Exception {
        exec("SELECT pgtrickle.subscribe('totals', 'order_events')");
        exec("SET pg_trickle.notify_coalesce_ms = 0");

        List<String> expected = new ArrayList<>();
        String[] changes = {
            "INSERT INTO orders VALUES (3, 'cy', 1)",
            "UPDATE orders SET amount = amount + 1 WHERE customer = 'ann'",
            "DELETE FROM orders WHERE id = 2",
            "UPDATE orders SET amount = amount WHERE id = 1", // rewrites a row, changes no result row
            null, // nothing changed: NO_DATA
            "INSERT INTO orders VALUES (4, 'ann', 2), (5, 'dee', 3)",
        };
        for (String change : changes) {
            if (change != null) {
                exec(change);
            }
            exec("SELECT pgtrickle.refresh_stream_table('totals')");
            String last = string("SELECT refresh_id || '|' || rows_inserted || '|' || rows_deleted FROM pgtrickle.pgt_refresh_history"
                    + " ORDER BY refresh_id DESC LIMIT 1");
            if (!last.endsWith("|0|0")) {
                expected.add(last);
            }
        }
        // a refresh that rolls back announces nothing
        exec("INSERT INTO orders VALUES (6, 'eve', 9)");
        c.setAutoCommit(false);
        exec("SELECT pgtrickle.refresh_stream_table('totals')");
        c.rollback();
        c.setAutoCommit(true);

        List<String> heard = new ArrayList<>();
        for (JsonNode n : drain()) {
            assertEquals("public.totals", n.get("name").asText());
            assertEquals(4, n.size(), "no coalescing fields when one refresh is announced: " + n);
            heard.add(n.get("refresh_id").asLong() + "|" + n.get("inserted_count").asLong() + "|" + n.get("deleted_count").asLong());
        }
        assertEquals(expected, heard);
        assertEquals(4, expected.size(), "insert, update, delete and the last insert changed rows; the others did not");
    }

    @Test
    void refreshesInsideTheWindowFoldIntoOneTrailingNotification() throws Exception {
        exec("SELECT pgtrickle.subscribe('totals', 'order_events')");
        exec("SELECT pgtrickle.alter_stream_table('totals', notify_coalesce_ms => 1500)");

        exec("INSERT INTO orders VALUES (3, 'cy', 1)");
        long first = refresh();
        exec("INSERT INTO orders VALUES (4, 'dee', 1)");
        long second = refresh();
        exec("UPDATE orders SET amount = 20 WHERE id = 1");
        long third = refresh();

        List<JsonNode> heard = drain();
        assertEquals(1, heard.size(), "the first refresh opens the window; the next two are folded: " + heard);
        assertEquals(first, heard.get(0).get("refresh_id").asLong());
        assertEquals(second + "|2", string("SELECT last_notified_refresh_id + 1 || '|' || pending_refreshes FROM pgtrickle.list_subscriptions()"));
        assertEquals(0, Integer.parseInt(string("SELECT pgtrickle.flush_notifications()")), "the window is still open");

        Thread.sleep(1600);
        assertEquals(1, Integer.parseInt(string("SELECT pgtrickle.flush_notifications()")));
        heard = drain();
        assertEquals(1, heard.size());
        JsonNode trailing = heard.get(0);
        assertEquals(third, trailing.get("refresh_id").asLong());
        assertEquals(second, trailing.get("first_refresh_id").asLong());
        assertEquals(2, trailing.get("refreshes").asInt());
        long inserted = Long.parseLong(string("SELECT sum(rows_inserted) FROM pgtrickle.pgt_refresh_history WHERE refresh_id IN ("
                + second + ", " + third + ")"));
        long deleted = Long.parseLong(string("SELECT sum(rows_deleted) FROM pgtrickle.pgt_refresh_history WHERE refresh_id IN ("
                + second + ", " + third + ")"));
        assertEquals(inserted, trailing.get("inserted_count").asLong());
        assertEquals(deleted, trailing.get("deleted_count").asLong());
        assertEquals("0|" + third, string("SELECT pending_refreshes || '|' || last_notified_refresh_id FROM pgtrickle.list_subscriptions()"));
        assertEquals(0, Integer.parseInt(string("SELECT pgtrickle.flush_notifications()")), "nothing left to send");

        // 0 on the stream table: every refresh notifies at once, whatever the database says
        exec("SET pg_trickle.notify_coalesce_ms = 60000");
        exec("SELECT pgtrickle.alter_stream_table('totals', notify_coalesce_ms => 0)");
        exec("INSERT INTO orders VALUES (5, 'eve', 1)");
        refresh();
        exec("INSERT INTO orders VALUES (6, 'fay', 1)");
        refresh();
        assertEquals(2, drain().size());
        // a negative value removes the stream table's own window: the session's 60 s applies again
        exec("SELECT pgtrickle.alter_stream_table('totals', notify_coalesce_ms => -1)");
        assertEquals("", string("SELECT coalesce(notify_coalesce_ms::text, '') FROM pgtrickle.pgt_stream_tables"));
        exec("INSERT INTO orders VALUES (7, 'gus', 1)");
        refresh();
        assertEquals(0, drain().size(), "inside the 60 s window opened by the last notification");
    }

    @Test
    void subscriptionsFollowTheirStreamTable() throws Exception {
        exec("SELECT pgtrickle.subscribe('totals', 'order_events')");
        exec("SELECT pgtrickle.subscribe('totals', 'Order_Events')"); // the same channel, as LISTEN folds it
        exec("SELECT pgtrickle.subscribe('totals', 'audit')");
        assertEquals(List.of("public.totals|audit|0", "public.totals|order_events|0"),
                strings("SELECT concat_ws('|', stream_table, channel, pending_refreshes) FROM pgtrickle.list_subscriptions()"));

        exec("ALTER TABLE totals RENAME TO customer_totals");
        exec("SET pg_trickle.notify_coalesce_ms = 0");
        exec("INSERT INTO orders VALUES (3, 'cy', 1)");
        exec("SELECT pgtrickle.refresh_stream_table('customer_totals')");
        List<JsonNode> heard = drain();
        assertEquals(1, heard.size());
        assertEquals("public.customer_totals", heard.get(0).get("name").asText(), "the payload names the table as it is now");

        exec("SELECT pgtrickle.unsubscribe('customer_totals', 'audit')");
        exec("SELECT pgtrickle.unsubscribe('customer_totals', 'audit')"); // nothing left to remove: no error
        assertEquals(List.of("order_events"), strings("SELECT channel FROM pgtrickle.list_subscriptions()"));
        exec("SELECT pgtrickle.drop_stream_table('customer_totals')");
        assertEquals("0", string("SELECT count(*) FROM pgtrickle.pgt_subscriptions"));
    }

    @Test
    void badSubscriptionsFailClearlyAndLeaveNothing() throws SQLException {
        assertFails("SELECT pgtrickle.subscribe('nope', 'order_events')", "nope", "42P01");
        assertFails("SELECT pgtrickle.subscribe('totals', 'order-events')", "invalid channel name 'order-events'", "42602");
        assertFails("SELECT pgtrickle.subscribe('totals', '')", "invalid channel name ''", "42602");
        assertFails("SELECT pgtrickle.subscribe('totals', NULL)", "invalid channel name NULL", "42602");
        assertFails("SELECT pgtrickle.subscribe('totals', '" + "c".repeat(64) + "')", "invalid channel name", "42602");
        assertFails("SELECT pgtrickle.subscribe('totals', '1st')", "invalid channel name '1st'", "42602");

        exec("CREATE ROLE outsider");
        exec("GRANT USAGE ON SCHEMA pgtrickle TO outsider");
        exec("GRANT SELECT ON ALL TABLES IN SCHEMA pgtrickle TO outsider");
        exec("GRANT INSERT ON pgtrickle.pgt_subscriptions TO outsider");
        exec("SET ROLE outsider");
        try {
            assertFails("SELECT pgtrickle.subscribe('totals', 'order_events')", "permission denied to subscribe to totals", "42501");
        } finally {
            exec("RESET ROLE");
            exec("DROP OWNED BY outsider");
            exec("DROP ROLE outsider");
        }
        assertEquals("0", string("SELECT count(*) FROM pgtrickle.pgt_subscriptions"));
    }

    private long refresh() throws SQLException {
        exec("SELECT pgtrickle.refresh_stream_table('totals')");
        return Long.parseLong(string("SELECT max(refresh_id) FROM pgtrickle.pgt_refresh_history"));
    }

    /** What the listener has received so far, as JSON (a query makes pgjdbc read pending notifications). */
    private List<JsonNode> drain() throws Exception {
        List<JsonNode> out = new ArrayList<>();
        try (Statement s = listener.createStatement()) {
            s.execute("SELECT 1");
        }
        PGNotification[] got = listener.unwrap(PGConnection.class).getNotifications(200);
        if (got != null) {
            for (PGNotification n : got) {
                assertEquals("order_events", n.getName());
                assertTrue(n.getParameter().length() < 8000);
                out.add(JSON.readTree(n.getParameter()));
            }
        }
        return out;
    }

}
