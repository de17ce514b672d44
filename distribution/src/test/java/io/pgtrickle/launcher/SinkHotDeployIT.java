package io.pgtrickle.launcher;

import static io.pgtrickle.launcher.ExistingDatabaseIT.SHUTDOWN;
import static io.pgtrickle.launcher.ExistingDatabaseIT.SIGTERM_STATUS;
import static io.pgtrickle.launcher.ExistingDatabaseIT.STARTUP;
import static io.pgtrickle.launcher.ExistingDatabaseIT.allActive;
import static io.pgtrickle.launcher.ExistingDatabaseIT.catalogLine;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.Callable;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A third-party sink hot-deployed into the running distribution (the issue's acceptance test): the
 * example sink bundle ({@code examples/sink-example}, which the distribution does not ship) is dropped
 * into deploy/ while pgtrickle runs with its embedded PostgreSQL, receives the notifications of a
 * subscribed stream table next to a webhook sink, and is removed again by deleting its jar; the webhook
 * keeps receiving every notification, in refresh order, and the removed sink's notifications queue in
 * the outbox instead of being delivered.
 */
class SinkHotDeployIT {

    private static final String BSN = "io.pgtrickle.examples.sink";
    private static final String EXAMPLE = "example:example";
    private static final String WEBHOOK = "webhook:hook";
    /** The log sink the distribution ships, on its own channel (etc/io.pgtrickle.sink.log.cfg). */
    private static final String LOG = "log:log";
    private static final String CHANNEL = "c";
    private static final String STREAM_TABLE = "sink_hot_deploy";
    /** Deliveries are polled (default every 100 ms) and loopback HTTP is fast: 30 s is a generous bound. */
    private static final Duration DELIVERY = Duration.ofSeconds(30);

    /** One line of the example sink's file, up to its refresh id; the payload is the rest of the line. */
    private static final Pattern EXAMPLE_LINE = Pattern.compile("^\\{\"id\":\"pgt-\\d+\",\"sink\":\"" + EXAMPLE
            + "\",\"stream_table\":\"public\\." + STREAM_TABLE + "\",\"channel\":\"" + CHANNEL + "\",\"refresh_id\":(\\d+),"
            + ".*,\"payload\":(.*)}$");
    private static final Pattern PAYLOAD_REFRESH_ID = Pattern.compile("\"refresh_id\"\\s*:\\s*(\\d+)");

    /** What the loopback endpoint received, in arrival order: webhook-id and body. */
    private final List<Map.Entry<String, String>> received = new ArrayList<>(); // guarded by itself

    @Test
    void aSinkBundleDroppedIntoDeployReceivesNotificationsAndLeavesTheOthersAloneWhenRemoved(@TempDir Path tmp) throws Exception {
        Path exampleJar = Path.of(Objects.requireNonNull(System.getProperty("pgtrickle.example.sink.jar"),
                "pgtrickle.example.sink.jar is not set: run the integration tests through Maven (mvn verify)"));
        assertTrue(Files.isRegularFile(exampleJar), exampleJar + " is missing");

        HttpServer endpoint = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
        endpoint.createContext("/hook", exchange -> {
            try (InputStream in = exchange.getRequestBody()) {
                String body = new String(in.readAllBytes(), StandardCharsets.UTF_8);
                synchronized (received) {
                    received.add(Map.entry(String.valueOf(exchange.getRequestHeaders().getFirst("webhook-id")), body));
                }
            }
            exchange.sendResponseHeaders(204, -1);
            exchange.close();
        });
        endpoint.start();
        try {
            run(tmp, exampleJar, endpoint.getAddress().getPort());
        } finally {
            endpoint.stop(0);
        }
    }

    private void run(Path tmp, Path exampleJar, int endpointPort) throws Exception {
        Path home = Distribution.copyTo(tmp.resolve("pgtrickle"));
        int port = Distribution.freePort();
        String url = "jdbc:postgresql://localhost:" + port + "/pgtrickle";
        Path exampleFile = tmp.resolve("example.jsonl");
        Map<String, String> env = Map.of(
                "PGTRICKLE_EMBEDDED_PORT", Integer.toString(port),
                // FileInstall reports installs and configurations at its INFO level; show OSGi log entries down to INFO
                "JAVA_OPTS", "-Dfelix.fileinstall.log.level=3 -D" + OsgiLogForwarder.LEVEL_PROPERTY + "=info");

        try (PgTrickleProcess pgtrickle = PgTrickleProcess.start(home, env, "--headless")) {
            pgtrickle.awaitLine(allActive(), STARTUP);
            pgtrickle.awaitLine(catalogLine(), STARTUP);

            try (Connection c = DriverManager.getConnection(url, "postgres", null); Statement s = c.createStatement()) {
                // the sink that stays: a webhook on the test's loopback endpoint, receiving only the channel
                moveInto(tmp, home.resolve("etc/io.pgtrickle.sink.webhook-hook.cfg"),
                        "name = hook\nurl = http://127.0.0.1:" + endpointPort + "/hook\nchannels = " + CHANNEL + "\n");
                awaitEquals(List.of(LOG, WEBHOOK), () -> sinks(s), STARTUP, "registered sinks", pgtrickle);

                s.execute("CREATE TABLE public.sink_hot_deploy_src (id int PRIMARY KEY, note text)");
                // refreshed only by this test (a day is never due while it runs), one notification per refresh
                s.execute("SELECT pgtrickle.create_stream_table('" + STREAM_TABLE
                        + "', 'SELECT id, note FROM public.sink_hot_deploy_src', '1d')");
                s.execute("SELECT pgtrickle.alter_stream_table('" + STREAM_TABLE + "', notify_coalesce_ms => 0)");
                s.execute("SELECT pgtrickle.subscribe('" + STREAM_TABLE + "', '" + CHANNEL + "')");

                // before the example sink exists: only the webhook is told
                long beforeExample = insertAndRefresh(s, 1);
                awaitEquals(List.of(beforeExample), this::webhookRefreshIds, DELIVERY, "refresh ids the webhook received", pgtrickle);

                // deploy the example sink, configured first so that it never writes to its default file
                moveInto(tmp, home.resolve("etc/io.pgtrickle.sink.example.cfg"), "file = " + exampleFile + "\n");
                pgtrickle.awaitLine(Pattern.quote("Creating configuration {io.pgtrickle.sink.example}"), STARTUP);
                Path deployed = home.resolve("deploy/pgtrickle-sink-example.jar");
                Files.copy(exampleJar, tmp.resolve("example-sink.jar"));
                Files.move(tmp.resolve("example-sink.jar"), deployed, StandardCopyOption.ATOMIC_MOVE);
                pgtrickle.awaitLine("Started bundle: file:.*/deploy/pgtrickle-sink-example\\.jar", STARTUP);
                awaitEquals(List.of(EXAMPLE, LOG, WEBHOOK), () -> sinks(s), STARTUP, "registered sinks", pgtrickle);
                pgtrickle.awaitLine(Pattern.quote("Notification sink " + EXAMPLE + " registered for channels [*]"), STARTUP);

                // both sinks get the notifications from now on, the same ones
                List<Long> whileDeployed = List.of(insertAndRefresh(s, 2), insertAndRefresh(s, 3));
                awaitEquals(whileDeployed, () -> exampleRefreshIds(exampleFile), DELIVERY, "refresh ids in " + exampleFile, pgtrickle);
                awaitEquals(concat(List.of(beforeExample), whileDeployed), this::webhookRefreshIds, DELIVERY,
                        "refresh ids the webhook received", pgtrickle);
                List<String> exampleLines = Files.readAllLines(exampleFile);
                for (String line : exampleLines) {
                    Matcher m = EXAMPLE_LINE.matcher(line);
                    assertTrue(m.matches(), line);
                    assertEquals(webhookBody(Long.parseLong(m.group(1))), m.group(2),
                            "the example sink and the webhook got different payloads for one refresh");
                }

                // remove it: FileInstall uninstalls the bundle, the notify bundle lets the sink go
                Files.delete(deployed);
                pgtrickle.awaitLine("Uninstalling bundle \\d+ \\(" + Pattern.quote(BSN) + "\\)", STARTUP);
                pgtrickle.awaitLine(Pattern.quote("Notification sink " + EXAMPLE + " left; its notifications queue until it returns"),
                        STARTUP);

                List<Long> afterRemoval = List.of(insertAndRefresh(s, 4), insertAndRefresh(s, 5));
                List<Long> all = concat(concat(List.of(beforeExample), whileDeployed), afterRemoval);
                awaitEquals(all, this::webhookRefreshIds, DELIVERY, "refresh ids the webhook received", pgtrickle);
                assertEquals(all, changedRefreshIds(s), "the webhook's refresh ids are not the history's");
                synchronized (received) {
                    assertEquals(all.size(), received.stream().map(Map.Entry::getKey).filter(id -> id.matches("pgt-\\d+"))
                            .distinct().count(), "webhook ids: " + received);
                }
                // the webhook's queue drains; the removed sink's notifications wait for it, undelivered
                awaitEquals(0L, () -> queued(s, WEBHOOK), DELIVERY, "notifications queued for " + WEBHOOK, pgtrickle);
                assertEquals(afterRemoval, outboxRefreshIds(c, EXAMPLE), "the outbox of " + EXAMPLE);
                assertEquals(exampleLines, Files.readAllLines(exampleFile), "the removed sink still wrote to its file");
                assertTrue(pgtrickle.allLines().stream().noneMatch(l -> l.contains("ERROR")), pgtrickle.dump());
            }

            assertEquals(SIGTERM_STATUS, pgtrickle.terminate(SHUTDOWN), pgtrickle.dump());
            assertTrue(pgtrickle.stdout().contains("pgtrickle: stopped"), pgtrickle.dump());
        }
        assertFalse(Files.exists(home.resolve("data/example-sink.jsonl")), "the example sink wrote to its default file");
    }

    /** Written elsewhere and moved in, so FileInstall never reads half a file. */
    private static void moveInto(Path tmp, Path target, String content) throws IOException {
        Path written = tmp.resolve(target.getFileName() + ".tmp");
        Files.writeString(written, content);
        Files.move(written, target, StandardCopyOption.ATOMIC_MOVE);
    }

    /** Inserts one source row and refreshes; returns the refresh's id, checking it inserted that row. */
    private static long insertAndRefresh(Statement s, int id) throws SQLException {
        s.execute("INSERT INTO public.sink_hot_deploy_src VALUES (" + id + ", 'row " + id + "')");
        s.execute("SELECT pgtrickle.refresh_stream_table('" + STREAM_TABLE + "')");
        try (ResultSet rs = s.executeQuery("SELECT refresh_id, status, rows_inserted, rows_deleted FROM pgtrickle.get_refresh_history('"
                + STREAM_TABLE + "', 1)")) {
            assertTrue(rs.next(), "no refresh history");
            assertEquals("COMPLETED", rs.getString("status"));
            assertEquals(1, rs.getLong("rows_inserted"));
            assertEquals(0, rs.getLong("rows_deleted"));
            return rs.getLong("refresh_id");
        }
    }

    /** The history's refreshes that changed rows, i.e. those that were announced (all manual here). */
    private static List<Long> changedRefreshIds(Statement s) throws SQLException {
        List<Long> ids = new ArrayList<>();
        try (ResultSet rs = s.executeQuery("SELECT refresh_id, initiated_by FROM pgtrickle.pgt_refresh_history"
                + " WHERE status = 'COMPLETED' AND rows_inserted + rows_deleted > 0 ORDER BY refresh_id")) {
            while (rs.next()) {
                assertEquals("MANUAL", rs.getString("initiated_by"), "a refresh this test did not make");
                ids.add(rs.getLong("refresh_id"));
            }
        }
        return ids;
    }

    private static List<String> sinks(Statement s) throws SQLException {
        List<String> ids = new ArrayList<>();
        try (ResultSet rs = s.executeQuery("SELECT sink_id FROM pgtrickle.list_sinks() WHERE enabled ORDER BY sink_id")) {
            while (rs.next()) {
                ids.add(rs.getString(1));
            }
        }
        return ids;
    }

    private static long queued(Statement s, String sinkId) throws SQLException {
        try (ResultSet rs = s.executeQuery("SELECT queued FROM pgtrickle.list_sinks() WHERE sink_id = '" + sinkId + "'")) {
            assertTrue(rs.next(), sinkId + " is not registered");
            return rs.getLong(1);
        }
    }

    private static List<Long> outboxRefreshIds(Connection c, String sinkId) throws SQLException {
        List<Long> ids = new ArrayList<>();
        try (PreparedStatement ps = c.prepareStatement("SELECT refresh_id, channel, attempts FROM pgtrickle.pgt_outbox"
                + " WHERE sink_id = ? ORDER BY outbox_id")) {
            ps.setString(1, sinkId);
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    assertEquals(CHANNEL, rs.getString("channel"));
                    assertEquals(0, rs.getInt("attempts"), "a delivery to the removed sink was attempted");
                    ids.add(rs.getLong("refresh_id"));
                }
            }
        }
        return ids;
    }

    private List<Long> webhookRefreshIds() {
        synchronized (received) {
            return received.stream().map(r -> refreshIdOf(r.getValue())).toList();
        }
    }

    private String webhookBody(long refreshId) {
        synchronized (received) {
            List<String> bodies = received.stream().map(Map.Entry::getValue).filter(b -> refreshIdOf(b) == refreshId).toList();
            assertEquals(1, bodies.size(), "webhook deliveries of refresh " + refreshId + ": " + received);
            return bodies.get(0);
        }
    }

    private static long refreshIdOf(String payload) {
        Matcher m = PAYLOAD_REFRESH_ID.matcher(payload);
        return m.find() ? Long.parseLong(m.group(1)) : -1;
    }

    /** The refresh ids of the example sink's complete lines (-1 for a line of another form). */
    private static List<Long> exampleRefreshIds(Path file) throws IOException {
        if (!Files.exists(file)) {
            return List.of();
        }
        String text = Files.readString(file);
        List<Long> ids = new ArrayList<>();
        int start = 0;
        for (int end = text.indexOf('\n'); end >= 0; start = end + 1, end = text.indexOf('\n', start)) {
            Matcher m = EXAMPLE_LINE.matcher(text.substring(start, end));
            ids.add(m.matches() ? Long.parseLong(m.group(1)) : -1);
        }
        return ids;
    }

    private static List<Long> concat(List<Long> a, List<Long> b) {
        List<Long> all = new ArrayList<>(a);
        all.addAll(b);
        return all;
    }

    /** Polls until {@code actual} equals {@code expected}; fails with the last value and the transcript. */
    static <T> void awaitEquals(T expected, Callable<T> actual, Duration timeout, String what, PgTrickleProcess pgtrickle)
            throws Exception {
        long deadline = System.nanoTime() + timeout.toNanos();
        T last = actual.call();
        while (!expected.equals(last)) {
            if (System.nanoTime() > deadline) {
                fail(what + ": expected " + expected + " within " + timeout.toSeconds() + " s, got " + last + pgtrickle.dump());
            }
            Thread.sleep(100);
            last = actual.call();
        }
    }
}
