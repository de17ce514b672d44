package io.pgtrickle.launcher;

import static io.pgtrickle.launcher.ExistingDatabaseIT.SHUTDOWN;
import static io.pgtrickle.launcher.ExistingDatabaseIT.SIGTERM_STATUS;
import static io.pgtrickle.launcher.ExistingDatabaseIT.STARTUP;
import static io.pgtrickle.launcher.SinkHotDeployIT.awaitEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.SQLWarning;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.postgresql.PGConnection;
import org.postgresql.PGNotification;

/**
 * docs/shadow-evolution.md, followed against the running distribution: the flag's error, an
 * evolution started, watched and swapped in (the container's log lines, the subscription's
 * evolution notification), one held up by a reader and cancelled, and one whose query fails at
 * runtime, rolled back while the live table keeps refreshing.
 */
class ShadowEvolutionRunbookIT {

    /** The runbook's new query. */
    private static final String NEW = "SELECT o.customer, c.region, sum(o.amount) AS total"
            + " FROM orders o JOIN customers c ON c.name = o.customer GROUP BY o.customer, c.region";
    /** The README's query. */
    private static final String OLD = "SELECT customer, sum(amount) AS total FROM orders GROUP BY customer";
    /** Default throttle (1 s) and poll interval (1 s): an evolution of a few rows takes seconds. */
    private static final Duration EVOLUTION = Duration.ofSeconds(60);

    @Test
    void theRunbookWorksAsWritten(@TempDir Path tmp) throws Exception {
        Path home = Distribution.copyTo(tmp.resolve("pgtrickle"));
        int port = Distribution.freePort();
        String url = PgTrickleProcess.jdbcUrl(port);
        try (PgTrickleProcess pgtrickle = PgTrickleProcess.startReady(home, port, Map.of())) {
            try (Connection listener = DriverManager.getConnection(url, "postgres", null);
                 Connection c = DriverManager.getConnection(url, "postgres", null); Statement s = c.createStatement()) {
                s.execute("CREATE TABLE orders (id int PRIMARY KEY, customer text, amount numeric)");
                s.execute("CREATE TABLE customers (name text PRIMARY KEY, region text)");
                s.execute("INSERT INTO orders VALUES (1, 'ann', 10), (2, 'bob', 7), (3, 'ann', 5)");
                s.execute("INSERT INTO customers VALUES ('ann', 'north'), ('bob', 'south')");
                s.execute("SELECT pgtrickle.create_stream_table('order_totals', '" + OLD + "')");
                s.execute("SELECT pgtrickle.alter_stream_table('order_totals', notify_coalesce_ms => 0)");
                s.execute("SELECT pgtrickle.subscribe('order_totals', 'order_events')");
                try (Statement l = listener.createStatement()) {
                    l.execute("LISTEN order_events");
                }

                // 1. the flag is off by default, and the error names it
                SQLException off = assertThrows(SQLException.class, () -> s.execute(alter(NEW)));
                assertEquals("0A000", off.getSQLState());
                assertTrue(off.getMessage().contains("shadow builds are disabled: set pg_trickle.shadow_build_enabled = on"),
                        off.getMessage());
                s.execute("ALTER DATABASE pgtrickle SET pg_trickle.shadow_build_enabled = on");
                s.execute("SET pg_trickle.shadow_build_enabled = on");

                // 2. start it: the notice says where the shadow is
                s.execute(alter(NEW));
                String notice = notices(s);
                assertTrue(notice.matches("(?s).*pgtrickle: evolution \\d+ of order_totals started: public\\.__pgt_shadow_order_totals"
                        + " is built in the background.*"), notice);

                // 3. watch it: the status, and the container's log
                awaitEquals("converged|SWAPPED|2|2", () -> status(s, "status || '|' || phase || '|' || live_rows || '|' || shadow_rows"),
                        EVOLUTION, "the evolution's status", pgtrickle);
                pgtrickle.awaitLine("Shadow evolution \\d+ of public\\.order_totals: swapped in after \\d+ lock timeouts;"
                        + " the new query is live", STARTUP);
                assertEquals("ann|north|15, bob|south|7", rows(s, "SELECT customer || '|' || region || '|' || total FROM order_totals ORDER BY 1"));
                PGNotification[] heard = notifications(listener);
                assertTrue(Arrays.stream(heard).anyMatch(n -> n.getParameter().matches(
                        ".*\"name\"\\s*:\\s*\"public\\.order_totals\".*\"inserted_count\"\\s*:\\s*2,\\s*\"deleted_count\"\\s*:\\s*2,\\s*\"evolution\"\\s*:\\s*true.*")),
                        Arrays.toString(Arrays.stream(heard).map(PGNotification::getParameter).toArray()));
                // and the new query refreshes as usual
                s.execute("INSERT INTO orders VALUES (4, 'bob', 1)");
                awaitEquals("ann|north|15, bob|south|8", () -> rows(s, "SELECT customer || '|' || region || '|' || total FROM order_totals ORDER BY 1"),
                        EVOLUTION, "order_totals after a write", pgtrickle);

                // 5. cancel: a reader holding the table keeps the swap waiting (swap_attempts grows) until the cancel
                try (Connection reader = DriverManager.getConnection(url, "postgres", null); Statement r = reader.createStatement()) {
                    reader.setAutoCommit(false);
                    r.execute("LOCK TABLE order_totals IN ACCESS SHARE MODE");
                    s.execute(alter(OLD));
                    awaitEquals(true, () -> "SWAPPING".equals(status(s, "phase")) && Integer.parseInt(status(s, "swap_attempts")) > 0,
                            EVOLUTION, "a swap that waits for the reader", pgtrickle);
                    s.execute("SELECT pgtrickle.cancel_evolution('order_totals')");
                    reader.rollback();
                }
                assertEquals("cancelled|CANCELLED", status(s, "status || '|' || phase"));
                assertEquals("null", rows(s, "SELECT coalesce(to_regclass('public.__pgt_shadow_order_totals')::text, 'null')"));
                assertEquals("ann|north|15, bob|south|8", rows(s, "SELECT customer || '|' || region || '|' || total FROM order_totals ORDER BY 1"));

                // 6. a query that fails at runtime: failed, with the error; the live table untouched and refreshing
                s.execute(alter("SELECT customer, sum(amount) / (count(*) - count(*)) AS total FROM orders GROUP BY customer"));
                awaitEquals("failed|FAILED", () -> status(s, "status || '|' || phase"), EVOLUTION, "the failed evolution", pgtrickle);
                assertTrue(status(s, "error").contains("division by zero"), status(s, "error"));
                pgtrickle.awaitLine("Shadow evolution \\d+ of public\\.order_totals: failed: .*division by zero", STARTUP);
                assertEquals("0", rows(s, "SELECT count(*) FROM pg_class WHERE relname LIKE '\\_\\_pgt\\_shadow\\_%'"));
                assertEquals("0", rows(s, "SELECT count(*) FROM pgtrickle.pgt_stream_tables WHERE shadow_of IS NOT NULL"));
                s.execute("INSERT INTO orders VALUES (5, 'ann', 1)");
                awaitEquals("ann|north|16, bob|south|8", () -> rows(s, "SELECT customer || '|' || region || '|' || total FROM order_totals ORDER BY 1"),
                        EVOLUTION, "order_totals after the failure", pgtrickle);
                assertEquals("3", rows(s, "SELECT count(*) FROM pgtrickle.view_evolution_status()"), "every evolution is listed");
            }
            assertEquals(SIGTERM_STATUS, pgtrickle.terminate(SHUTDOWN), pgtrickle.dump());
        }
    }

    private static String alter(String query) {
        return "SELECT pgtrickle.alter_query('order_totals', '" + query.replace("'", "''") + "', shadow_build => true)";
    }

    private static String status(Statement s, String columns) throws SQLException {
        return rows(s, "SELECT " + columns + " FROM pgtrickle.view_evolution_status('order_totals')");
    }

    /** The rows of a one-column query, joined with ", ". */
    private static String rows(Statement s, String sql) throws SQLException {
        List<String> out = new ArrayList<>();
        try (ResultSet rs = s.executeQuery(sql)) {
            while (rs.next()) {
                out.add(rs.getString(1));
            }
        }
        return String.join(", ", out);
    }

    private static String notices(Statement s) throws SQLException {
        StringBuilder out = new StringBuilder();
        for (SQLWarning w = s.getWarnings(); w != null; w = w.getNextWarning()) {
            out.append(w.getMessage()).append('\n');
        }
        return out.toString();
    }

    private static PGNotification[] notifications(Connection listener) throws SQLException {
        try (Statement l = listener.createStatement()) {
            l.execute("SELECT 1");
        }
        PGNotification[] heard = listener.unwrap(PGConnection.class).getNotifications(5_000);
        assertNotNull(heard, "no notification");
        return heard;
    }
}
