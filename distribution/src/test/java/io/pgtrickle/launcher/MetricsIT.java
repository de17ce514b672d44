package io.pgtrickle.launcher;

import java.io.ByteArrayInputStream;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.stream.Collectors;
import org.hawkular.agent.prometheus.text.TextPrometheusMetricsProcessor;
import org.hawkular.agent.prometheus.types.Counter;
import org.hawkular.agent.prometheus.types.Gauge;
import org.hawkular.agent.prometheus.types.Histogram;
import org.hawkular.agent.prometheus.types.Metric;
import org.hawkular.agent.prometheus.types.MetricFamily;
import org.hawkular.agent.prometheus.walkers.CollectorPrometheusMetricsWalker;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.Statement;
import java.time.Duration;
import java.util.Map;
import java.util.function.Predicate;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.io.TempDir;

/**
 * docs/operations.md's /metrics against the running distribution: the format holds, the catalog's
 * figures follow the refresh history, and the container's own (scheduler ticks and workers, pending
 * changes, deliveries to a sink, SSE clients) move when their thing happens.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class MetricsIT {

    private static final Duration WAIT = Duration.ofSeconds(30);

    private PgTrickleProcess pgtrickle;
    private int httpPort;
    private Connection c;
    private Statement s;

    @BeforeAll
    void start(@TempDir Path tmp) throws Exception {
        Path home = Distribution.copyTo(tmp.resolve("pgtrickle"));
        // server-sent events for role postgres; keep-alives every second, so that a client gone is noticed soon
        Files.writeString(home.resolve("etc/io.pgtrickle.http.events.config"), "tokens=[\"postgres:tok-metrics\"]\nkeepAliveSeconds=\"1\"\n");
        int port = Distribution.freePort();
        httpPort = Distribution.freePort();
        pgtrickle = PgTrickleProcess.startReady(home, port, Map.of("PGTRICKLE_HTTP_PORT", Integer.toString(httpPort)));
        c = DriverManager.getConnection(PgTrickleProcess.jdbcUrl(port), "postgres", null);
        s = c.createStatement();
    }

    @AfterAll
    void stop() throws Exception {
        if (c != null) {
            c.close();
        }
        if (pgtrickle != null) {
            pgtrickle.close();
        }
    }

    /** Scrapes until {@code condition} holds (at most {@link #WAIT}); returns that scrape. */
    private PrometheusText await(String what, Predicate<PrometheusText> condition) throws Exception {
        long deadline = System.nanoTime() + WAIT.toNanos();
        PrometheusText m = scrape(httpPort);
        while (!condition.test(m)) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError(what + ": not within " + WAIT.toSeconds() + " s; last scrape:\n" + m.text + pgtrickle.dump());
            }
            Thread.sleep(100);
            m = scrape(httpPort);
        }
        return m;
    }

    private static final HttpClient HTTP = HttpClient.newHttpClient();

    private static PrometheusText scrape(int port) throws Exception {
        HttpResponse<String> r = HTTP.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/metrics")).build(),
                HttpResponse.BodyHandlers.ofString());
        assertEquals(200, r.statusCode(), r.body());
        assertEquals("text/plain;version=0.0.4;charset=utf-8", r.headers().firstValue("Content-Type").orElse("").replace(" ", "").toLowerCase());
        PrometheusText ours = PrometheusText.parse(r.body());
        agreesWithAnIndependentParser(r.body(), ours);
        return ours;
    }

    /**
     * The same text read by a parser library (Hawkular's prometheus-scraper): every family with the type
     * our strict reader found, every counter and gauge with the same value, every histogram with the
     * same count, sum and buckets, so that the format is judged by a reader we did not write.
     */
    private static void agreesWithAnIndependentParser(String text, PrometheusText ours) throws Exception {
        CollectorPrometheusMetricsWalker walker = new CollectorPrometheusMetricsWalker();
        new TextPrometheusMetricsProcessor(new ByteArrayInputStream(text.getBytes(StandardCharsets.UTF_8)), walker).walk();
        List<MetricFamily> families = walker.getAllMetricFamilies();
        assertEquals(ours.types.keySet(), families.stream().map(MetricFamily::getName).collect(Collectors.toSet()), text);
        for (MetricFamily f : families) {
            assertEquals(ours.types.get(f.getName()), f.getType().name().toLowerCase(Locale.ROOT), f.getName());
            for (Metric m : f.getMetrics()) {
                if (m instanceof Counter c) {
                    assertEquals(ours.value(f.getName(), m.getLabels()), c.getValue(), f.getName() + m.getLabels());
                } else if (m instanceof Gauge g) {
                    assertEquals(ours.value(f.getName(), m.getLabels()), g.getValue(), f.getName() + m.getLabels());
                } else if (m instanceof Histogram h) {
                    assertEquals(ours.value(f.getName() + "_count", m.getLabels()), h.getSampleCount(), f.getName() + m.getLabels());
                    assertEquals(ours.value(f.getName() + "_sum", m.getLabels()), h.getSampleSum(), 1e-9, f.getName() + m.getLabels());
                    for (Histogram.Bucket b : h.getBuckets()) {
                        Map<String, String> le = new HashMap<>(m.getLabels());
                        le.put("le", Double.isInfinite(b.getUpperBound()) ? "+Inf" : ours.le(f.getName(), m.getLabels(), b.getUpperBound()));
                        assertEquals(ours.value(f.getName() + "_bucket", le), b.getCumulativeCount(), f.getName() + le);
                    }
                } else {
                    throw new AssertionError("unexpected metric " + m.getClass() + " in " + f.getName());
                }
            }
        }
    }

    private static long one(Statement s, String sql) throws Exception {
        try (ResultSet rs = s.executeQuery(sql)) {
            rs.next();
            return rs.getLong(1);
        }
    }

    @Test
    @Order(1)
    void metricsFollowTheRefreshes() throws Exception {
        assertThrows(IllegalArgumentException.class, () -> PrometheusText.parse("# TYPE x gauge\ny 1\n"), "the reader is strict");
        {
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
            // nothing pending after the refresh: current, not "seconds since the refresh"
            assertEquals(0, first.value("pgtrickle_staleness_seconds", st));
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

    private static double ticks(PrometheusText m) {
        return m.value("pgtrickle_scheduler_ticks_total", Map.of());
    }

    @Test
    @Order(2)
    void theContainersOwnFiguresMoveWhenTheirThingHappens() throws Exception {
        PrometheusText before = scrape(httpPort);
        assertEquals("counter", before.types.get("pgtrickle_scheduler_ticks_total"));
        assertEquals("histogram", before.types.get("pgtrickle_scheduler_tick_duration_seconds"));
        assertEquals("gauge", before.types.get("pgtrickle_refresh_workers_busy"));
        assertEquals("gauge", before.types.get("pgtrickle_pending_changes"));
        assertEquals("counter", before.types.get("pgtrickle_deliveries_total"));
        assertEquals("histogram", before.types.get("pgtrickle_delivery_latency_seconds"));
        assertEquals("gauge", before.types.get("pgtrickle_sse_clients"));
        assertEquals(4, before.value("pgtrickle_refresh_workers", Map.of()), "the scheduler's default pool");

        // ticks: the scheduler ticks at least every second, and each tick is timed
        PrometheusText ticked = await("the scheduler ticks", m -> ticks(m) >= ticks(before) + 2);
        assertTrue(ticked.value("pgtrickle_scheduler_tick_duration_seconds_count", Map.of())
                >= before.value("pgtrickle_scheduler_tick_duration_seconds_count", Map.of()) + 2, ticked.text);
        assertTrue(ticked.value("pgtrickle_scheduler_tick_duration_seconds_sum", Map.of())
                > before.value("pgtrickle_scheduler_tick_duration_seconds_sum", Map.of()), ticked.text);

        s.execute("CREATE TABLE items (id int PRIMARY KEY, grp text, n int)");
        s.execute("SELECT pgtrickle.create_stream_table('item_totals', 'SELECT grp, sum(n) AS total FROM items GROUP BY grp')");
        s.execute("SELECT pgtrickle.subscribe('item_totals', 'pgtrickle_log')");
        Map<String, String> items = Map.of("source", "public.items");
        Map<String, String> delivered = Map.of("sink", "log:log", "outcome", "delivered");
        Map<String, String> logSink = Map.of("sink", "log:log");
        PrometheusText idle = await("the stream table's source is captured", m -> m.value("pgtrickle_pending_changes", items) == 0);
        double refreshed = idle.value("pgtrickle_scheduler_refreshes_total", Map.of("outcome", "refreshed"));

        // a change: the scheduler refreshes (which plans the stream table first) and the log sink delivers the notification
        s.execute("INSERT INTO items VALUES (0, 'z', 0)");
        PrometheusText first = await("the first change refreshed and delivered",
                m -> m.value("pgtrickle_deliveries_total", delivered) == 1 && m.value("pgtrickle_pending_changes", items) == 0);
        assertTrue(first.value("pgtrickle_scheduler_refreshes_total", Map.of("outcome", "refreshed")) > refreshed, first.text);
        assertEquals(1, first.value("pgtrickle_delivery_latency_seconds_count", logSink), first.text);
        assertTrue(first.value("pgtrickle_delivery_latency_seconds_sum", logSink) > 0, first.text);
        assertEquals(0, first.value("pgtrickle_refresh_workers_busy", Map.of()), first.text);
        refreshed = first.value("pgtrickle_scheduler_refreshes_total", Map.of("outcome", "refreshed"));

        // a refresh that cannot finish (another session holds the stream table): its changes are pending
        // and a worker is busy with it; once it can, both go back to 0, and the log sink delivers its notification
        try (Connection holder = DriverManager.getConnection(c.getMetaData().getURL(), "postgres", null); Statement hs = holder.createStatement()) {
            holder.setAutoCommit(false);
            hs.execute("LOCK TABLE item_totals IN ACCESS EXCLUSIVE MODE");
            s.execute("INSERT INTO items VALUES (1, 'a', 1), (2, 'b', 2), (3, 'a', 3)");
            PrometheusText blocked = await("the refresh waits for the lock",
                    m -> m.value("pgtrickle_refresh_workers_busy", Map.of()) == 1 && m.value("pgtrickle_pending_changes", items) == 3);
            assertEquals(refreshed, blocked.value("pgtrickle_scheduler_refreshes_total", Map.of("outcome", "refreshed")), blocked.text);
            assertEquals(1, blocked.value("pgtrickle_deliveries_total", delivered), blocked.text);
            holder.rollback();
        }
        PrometheusText after = await("the refresh is done and its notification delivered",
                m -> m.value("pgtrickle_refresh_workers_busy", Map.of()) == 0 && m.value("pgtrickle_pending_changes", items) == 0
                        && m.value("pgtrickle_deliveries_total", delivered) == 2);
        assertTrue(after.value("pgtrickle_scheduler_refreshes_total", Map.of("outcome", "refreshed")) > refreshed, after.text);
        assertEquals(2, after.value("pgtrickle_delivery_latency_seconds_count", logSink), after.text);
        assertEquals(0, after.value("pgtrickle_deliveries_total", Map.of("sink", "log:log", "outcome", "failed")), after.text);

        // SSE clients: one connects, then leaves
        assertEquals(0, scrape(httpPort).value("pgtrickle_sse_clients", Map.of()));
        s.execute("SELECT pgtrickle.subscribe('item_totals', 'pgtrickle_sse')");
        try (SseClient sse = SseClient.open("http://127.0.0.1:" + httpPort + "/pgtrickle/events?stream_table=item_totals",
                Map.of("Authorization", "Bearer tok-metrics"))) {
            assertEquals(200, sse.status);
            await("one SSE client", m -> m.value("pgtrickle_sse_clients", Map.of()) == 1);
        }
        await("the SSE client has left", m -> m.value("pgtrickle_sse_clients", Map.of()) == 0);
    }
}
