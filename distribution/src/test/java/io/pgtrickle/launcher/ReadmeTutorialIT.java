package io.pgtrickle.launcher;

import static io.pgtrickle.launcher.ExistingDatabaseIT.SHUTDOWN;
import static io.pgtrickle.launcher.ExistingDatabaseIT.SIGTERM_STATUS;
import static io.pgtrickle.launcher.ExistingDatabaseIT.STARTUP;
import static io.pgtrickle.launcher.SinkHotDeployIT.awaitEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The README's "Try a stream table", pasted against the distribution as shipped: the first block's
 * result, the differential refresh of the next change once the scheduler has planned the stream table,
 * and the log line of the log sink the distribution ships after a subscription to its channel.
 */
class ReadmeTutorialIT {

    @Test
    void theTutorialWorksAsWritten(@TempDir Path tmp) throws Exception {
        Path home = Distribution.copyTo(tmp.resolve("pgtrickle"));
        int port = Distribution.freePort();
        try (PgTrickleProcess pgtrickle = PgTrickleProcess.startReady(home, port, Map.of())) {
            try (Connection c = DriverManager.getConnection(PgTrickleProcess.jdbcUrl(port), "postgres", null);
                 Statement s = c.createStatement()) {
                s.execute("CREATE TABLE orders (id int PRIMARY KEY, customer text, amount numeric)");
                s.execute("INSERT INTO orders VALUES (1, 'ann', 10), (2, 'bob', 7)");
                s.execute("SELECT pgtrickle.create_stream_table('order_totals',\n"
                        + "       'SELECT customer, sum(amount) AS total FROM orders GROUP BY customer')");
                s.execute("INSERT INTO orders VALUES (3, 'ann', 5)");
                s.execute("SELECT pgtrickle.refresh_stream_table('order_totals')");
                assertEquals(List.of("ann 15", "bob 7"), rows(s, "SELECT customer || ' ' || total FROM order_totals ORDER BY customer"));
                assertEquals("AUTO DIFFERENTIAL", rows(s, "SELECT configured_mode || ' ' || effective_mode"
                        + " FROM pgtrickle.explain_refresh_mode('order_totals')").get(0));
                assertEquals(List.of("FULL 2 0"), rows(s, "SELECT action || ' ' || rows_inserted || ' ' || rows_deleted"
                        + " FROM pgtrickle.get_refresh_history('order_totals') WHERE refresh_id = (SELECT min(refresh_id)"
                        + " FROM pgtrickle.get_refresh_history('order_totals'))"));

                // "From then on": the scheduler plans it on its next tick, and the next change is applied differentially
                awaitEquals(List.of("t"), () -> rows(s, "SELECT delta_sql IS NOT NULL FROM pgtrickle.pgt_stream_tables"
                        + " WHERE pgt_name = 'order_totals'"), STARTUP, "order_totals planned", pgtrickle);
                s.execute("INSERT INTO orders VALUES (4, 'bob', 1)");
                s.execute("SELECT pgtrickle.refresh_stream_table('order_totals')");
                assertEquals("DIFFERENTIAL 1 1", rows(s, "SELECT action || ' ' || rows_inserted || ' ' || rows_deleted"
                        + " FROM pgtrickle.get_refresh_history('order_totals') WHERE action <> 'NO_DATA'").get(0));

                s.execute("SELECT pgtrickle.subscribe('order_totals', 'pgtrickle_log')");
                s.execute("INSERT INTO orders VALUES (5, 'cy', 3)");
                pgtrickle.awaitLine("INFO LogSink - pgtrickle notification id=pgt-\\d+ sink=log:log stream_table=public\\.order_totals"
                        + " channel=pgtrickle_log refresh_id=\\d+ first_refresh_id=\\d+ refreshes=1 inserted=1 deleted=0", STARTUP);
            }
            assertEquals(SIGTERM_STATUS, pgtrickle.terminate(SHUTDOWN), pgtrickle.dump());
        }
    }

    private static List<String> rows(Statement s, String sql) throws SQLException {
        List<String> rows = new ArrayList<>();
        try (ResultSet rs = s.executeQuery(sql)) {
            while (rs.next()) {
                rows.add(rs.getString(1));
            }
        }
        return rows;
    }
}
