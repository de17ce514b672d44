package io.pgtrickle.launcher;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.Statement;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** docs/operations.md's /metrics against the running distribution: the format holds, and the figures follow the catalog. */
class MetricsIT {

    private static final HttpClient HTTP = HttpClient.newHttpClient();

    private static PrometheusText scrape(int port) throws Exception {
        HttpResponse<String> r = HTTP.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/metrics")).build(),
                HttpResponse.BodyHandlers.ofString());
        assertEquals(200, r.statusCode(), r.body());
        assertEquals("text/plain;version=0.0.4;charset=utf-8", r.headers().firstValue("Content-Type").orElse("").replace(" ", "").toLowerCase());
        return PrometheusText.parse(r.body());
    }

    private static long one(Statement s, String sql) throws Exception {
        try (ResultSet rs = s.executeQuery(sql)) {
            rs.next();
            return rs.getLong(1);
        }
    }

    @Test
    void metricsFollowTheRefreshes(@TempDir Path tmp) throws Exception {
        assertThrows(IllegalArgumentException.class, () -> PrometheusText.parse("# TYPE x gauge\ny 1\n"), "the reader is strict");
        Path home = Distribution.copyTo(tmp.resolve("pgtrickle"));
        int port = Distribution.freePort();
        int httpPort = Distribution.freePort();
        try (PgTrickleProcess pgtrickle = PgTrickleProcess.startReady(home, port, Map.of("PGTRICKLE_HTTP_PORT", Integer.toString(httpPort)));
             Connection c = DriverManager.getConnection(PgTrickleProcess.jdbcUrl(port), "postgres", null); Statement s = c.createStatement()) {
            PrometheusText before = scrape(httpPort);
            assertEquals("counter", before.types.get("pgtrickle_refreshes_total"));
            assertEquals("histogram", before.types.get("pgtrickle_refresh_duration_seconds"));
            assertEquals(0, before.value("pgtrickle_suspended_stream_tables", Map.of()));
            assertEquals(0, before.value("pgtrickle_outbox_queued", Map.of("sink", "log:log")));

            s.execute("CREATE TABLE sales (id int PRIMARY KEY, region text, amount int)");
            s.execute("SELECT pgtrickle.create_stream_table('region_sales', 'SELECT region, sum(amount) AS total FROM sales GROUP BY region')");
            s.execute("INSERT INTO sales VALUES (1, 'north', 5), (2, 'south', 7), (3, 'east', 1)");
            s.execute("SELECT pgtrickle.refresh_stream_table('region_sales')");
            Map<String, String> st = Map.of("stream_table", "public.region_sales");
            PrometheusText first = scrape(httpPort);
            long inserted = one(s, "SELECT sum(rows_inserted) FROM pgtrickle.get_refresh_history('region_sales')");
            assertEquals(3, inserted, "the initial FULL refresh inserted nothing, this one three groups");
            assertEquals(inserted, first.value("pgtrickle_rows_inserted_total", st));
            assertTrue(first.value("pgtrickle_stream_tables", Map.of("status", "ACTIVE")) >= 1);
            assertTrue(first.value("pgtrickle_staleness_seconds", st) >= 0);
            assertEquals(0, first.value("pgtrickle_consecutive_errors", st));
            double refreshes = first.sum("pgtrickle_refreshes_total", st);
            assertTrue(refreshes >= 2, "the initial refresh and ours: " + refreshes);
            assertEquals(first.sum("pgtrickle_refreshes_total", Map.of("stream_table", "public.region_sales", "status", "COMPLETED")),
                    first.value("pgtrickle_refresh_duration_seconds_count", st));

            // the figures move with the next refresh: one group updated (1 deleted, 1 inserted), one added
            s.execute("INSERT INTO sales VALUES (4, 'north', 2), (5, 'west', 3)");
            s.execute("SELECT pgtrickle.refresh_stream_table('region_sales')");
            PrometheusText second = scrape(httpPort);
            assertEquals(inserted + 2, second.value("pgtrickle_rows_inserted_total", st));
            assertEquals(first.value("pgtrickle_rows_deleted_total", st) + 1, second.value("pgtrickle_rows_deleted_total", st));
            assertTrue(second.sum("pgtrickle_refreshes_total", st) > refreshes);
        }
    }
}
