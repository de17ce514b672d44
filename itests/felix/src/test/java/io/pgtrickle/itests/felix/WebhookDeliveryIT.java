package io.pgtrickle.itests.felix;

import static io.pgtrickle.itests.felix.InFramework.SERVICE_TIMEOUT_MILLIS;
import static io.pgtrickle.itests.felix.InFramework.awaitService;
import static io.pgtrickle.itests.felix.InFramework.exec;
import static io.pgtrickle.itests.felix.InFramework.query;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;
import static org.ops4j.pax.exam.CoreOptions.options;
import static org.ops4j.pax.exam.CoreOptions.systemPackage;
import static org.ops4j.pax.exam.cm.ConfigurationAdminOptions.newConfiguration;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import io.pgtrickle.api.catalog.Catalog;
import io.pgtrickle.testing.TestDatabase;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import javax.sql.DataSource;
import org.junit.Test;
import org.junit.runner.RunWith;
import org.ops4j.pax.exam.Configuration;
import org.ops4j.pax.exam.Option;
import org.ops4j.pax.exam.junit.PaxExam;
import org.ops4j.pax.exam.spi.reactors.ExamReactorStrategy;
import org.ops4j.pax.exam.spi.reactors.PerClass;
import org.osgi.framework.Bundle;
import org.osgi.service.cm.ConfigurationAdmin;

/**
 * Webhooks end to end inside Felix: the refresh bundle's scheduler announces every refresh of a
 * subscribed stream table into the outbox, the notify bundle delivers it through the webhook sink
 * (configured through ConfigAdmin) to an HTTP receiver this test runs on loopback. Checks the signed
 * requests against the refresh history, across an endpoint outage with a restart of the notify
 * bundle, and a dead letter that is replayed.
 */
@RunWith(PaxExam.class)
@ExamReactorStrategy(PerClass.class)
public class WebhookDeliveryIT {

    private static final String NOTIFY_BSN = "io.pgtrickle.notify";
    private static final String WEBHOOK_PID = "io.pgtrickle.sink.webhook";
    private static final String SINK_NAME = "orders";
    private static final String SINK_ID = "webhook:" + SINK_NAME;
    private static final String CHANNEL = "orders_changed";
    private static final String STREAM_TABLE = "wh_totals";
    private static final int MAX_ATTEMPTS = 3;
    private static final long WAIT_NANOS = TimeUnit.SECONDS.toNanos(60);

    private static final Pattern REFRESH_ID = Pattern.compile("\"refresh_id\"\\s*:\\s*(\\d+)");
    private static final Pattern INSERTED = Pattern.compile("\"inserted_count\"\\s*:\\s*(\\d+)");
    private static final Pattern DELETED = Pattern.compile("\"deleted_count\"\\s*:\\s*(\\d+)");

    @Configuration
    public Option[] configuration() {
        TestDatabase.Database db = FelixOptions.database("felix_webhook");
        // every refresh notifies: set on the database before the container's pool opens a connection
        FelixOptions.databaseSetting(db, "pg_trickle.notify_coalesce_ms", "0");
        return options(FelixOptions.platform(), FelixOptions.refreshBundle(), FelixOptions.notifyBundles(),
                FelixOptions.databaseProperties(db),
                // the test's HTTP receiver runs inside the framework: the JDK's server API from the system bundle
                systemPackage("com.sun.net.httpserver"),
                FelixOptions.datasourceConfiguration(db).put("maxPoolSize", "16").asOption(),
                newConfiguration("io.pgtrickle.refresh").put("schedulerIntervalMs", "100").asOption(),
                newConfiguration(NOTIFY_BSN)
                        .put("pollIntervalMs", "100")
                        .put("retryBaseMs", "200")
                        .put("retryMaxMs", "1000")
                        // a claim cut short by the bundle stop comes back after this, not after the default minute
                        .put("leaseMs", "3000")
                        .asOption());
    }

    /** What the receiver answers. */
    enum Mode {
        UP, DOWN, FAIL,
        /** 503 until an id has failed MAX_ATTEMPTS - 1 times, then 200: down, but no dead letter. */
        DOWN_CAPPED
    }

    /** One request the receiver got, and what it answered. */
    record Received(String id, String timestamp, String signature, byte[] body, int status) {
        String text() {
            return new String(body, StandardCharsets.UTF_8);
        }

        long refreshId() {
            return number(REFRESH_ID, text());
        }
    }

    private static final class Receiver implements AutoCloseable {
        final List<Received> requests = new CopyOnWriteArrayList<>();
        final AtomicReference<Mode> mode = new AtomicReference<>(Mode.UP);
        final HttpServer server;

        Receiver() throws IOException {
            server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
            server.createContext("/hook", this::handle);
            server.start();
        }

        String url() {
            return "http://" + server.getAddress().getAddress().getHostAddress() + ":" + server.getAddress().getPort() + "/hook?token=x";
        }

        private void handle(HttpExchange exchange) throws IOException {
            byte[] body;
            try (InputStream in = exchange.getRequestBody()) {
                body = in.readAllBytes();
            }
            String id = exchange.getRequestHeaders().getFirst("webhook-id");
            int status;
            switch (mode.get()) {
                case UP:
                    status = 200;
                    break;
                case DOWN:
                    status = 503;
                    break;
                case FAIL:
                    status = 500;
                    break;
                default:
                    status = failures(id) < MAX_ATTEMPTS - 1 ? 503 : 200;
            }
            requests.add(new Received(id, exchange.getRequestHeaders().getFirst("webhook-timestamp"),
                    exchange.getRequestHeaders().getFirst("webhook-signature"), body, status));
            byte[] answer = (status == 200 ? "" : "receiver says " + status).getBytes(StandardCharsets.UTF_8);
            exchange.sendResponseHeaders(status, answer.length == 0 ? -1 : answer.length);
            try (OutputStream out = exchange.getResponseBody()) {
                out.write(answer);
            }
        }

        long failures(String id) {
            return requests.stream().filter(r -> r.id().equals(id) && r.status() != 200).count();
        }

        List<Received> with(String id) {
            return requests.stream().filter(r -> r.id().equals(id)).toList();
        }

        /** The successful deliveries, first per id, in the order received. */
        List<Received> delivered() {
            Map<String, Received> first = new LinkedHashMap<>();
            for (Received r : requests) {
                if (r.status() == 200) {
                    first.putIfAbsent(r.id(), r);
                }
            }
            return new ArrayList<>(first.values());
        }

        @Override
        public void close() {
            server.stop(0);
        }
    }

    @Test
    public void webhooksAreDeliveredSignedInOrderAcrossOutagesRestartsAndDeadLetters() throws Exception {
        DataSource ds = awaitService(Catalog.class, null, SERVICE_TIMEOUT_MILLIS).dataSource();
        assertEquals("0", query(ds, "SELECT current_setting('pg_trickle.notify_coalesce_ms', true)"));
        byte[] key = new byte[32];
        new SecureRandom().nextBytes(key);
        String secret = "whsec_" + Base64.getEncoder().encodeToString(key);

        try (Receiver receiver = new Receiver()) {
            ConfigurationAdmin cm = awaitService(ConfigurationAdmin.class, null, SERVICE_TIMEOUT_MILLIS);
            org.osgi.service.cm.Configuration webhook = cm.createFactoryConfiguration(WEBHOOK_PID, "?");
            webhook.update(InFramework.properties("name", SINK_NAME, "url", receiver.url(), "channels", new String[] {CHANNEL},
                    "secret", secret, "maxAttempts", MAX_ATTEMPTS, "timeoutMs", 2000));
            // the outbox only gets rows for registered sinks: wait for the notify bundle to register it
            await("sink " + SINK_ID + " registered", () -> "1".equals(q(ds,
                    "SELECT count(*) FROM pgtrickle.list_sinks() WHERE sink_id = '" + SINK_ID + "' AND enabled"
                            + " AND channels = ARRAY['" + CHANNEL + "']")));

            exec(ds, "CREATE TABLE wh_orders (id int PRIMARY KEY, customer text NOT NULL, amount numeric NOT NULL)");
            exec(ds, "SELECT pgtrickle.create_stream_table('" + STREAM_TABLE + "',"
                    + " 'SELECT customer, sum(amount) AS total, count(*) AS n FROM wh_orders GROUP BY customer', schedule => '100ms')");
            exec(ds, "SELECT pgtrickle.subscribe('" + STREAM_TABLE + "', '" + CHANNEL + "')");
            long pgtId = Long.parseLong(query(ds, "SELECT pgt_id FROM pgtrickle.pgt_stream_tables WHERE pgt_name = '" + STREAM_TABLE + "'"));
            long baseline = Long.parseLong(query(ds, "SELECT coalesce(max(refresh_id), 0) FROM pgtrickle.pgt_refresh_history WHERE pgt_id = " + pgtId));

            // 1. a few changes, each its own refresh: one signed POST per refresh, in refresh order
            change(ds, pgtId, baseline, "INSERT INTO wh_orders VALUES (1, 'ann', 10), (2, 'bob', 7)");
            change(ds, pgtId, baseline, "UPDATE wh_orders SET amount = 12 WHERE id = 1");
            change(ds, pgtId, baseline, "INSERT INTO wh_orders VALUES (3, 'cy', 5)");
            change(ds, pgtId, baseline, "DELETE FROM wh_orders WHERE id = 2");
            awaitAllDelivered(ds, receiver, pgtId, baseline);
            assertEquals("phase 1: no failed attempt while the receiver was up", 0,
                    receiver.requests.stream().filter(r -> r.status() != 200).count());
            int phase1 = receiver.delivered().size();
            assertTrue("phase 1 delivered " + phase1, phase1 >= 4);

            // 2. the endpoint is down; the notify bundle restarts during the outage; nothing is lost
            receiver.mode.set(Mode.DOWN);
            int seen = receiver.requests.size();
            change(ds, pgtId, baseline, "INSERT INTO wh_orders VALUES (4, 'dee', 40)");
            await("a 503 attempt", () -> receiver.requests.stream().skip(seen).anyMatch(r -> r.status() == 503));
            String headId = receiver.requests.stream().skip(seen).filter(r -> r.status() == 503).findFirst().orElseThrow().id();
            Bundle notify = InFramework.bundle(NOTIFY_BSN);
            notify.stop();
            change(ds, pgtId, baseline, "INSERT INTO wh_orders VALUES (5, 'ed', 50)");
            change(ds, pgtId, baseline, "UPDATE wh_orders SET amount = amount + 1 WHERE id IN (3, 4)");
            change(ds, pgtId, baseline, "DELETE FROM wh_orders WHERE id = 5");
            assertEquals("outbox rows queued while the notify bundle is stopped", "4",
                    query(ds, "SELECT queued FROM pgtrickle.list_sinks() WHERE sink_id = '" + SINK_ID + "'"));
            int beforeRestart = receiver.requests.size();
            receiver.mode.set(Mode.DOWN_CAPPED); // still down, but the head notification must not die here
            notify.start();
            await("the outage's first notification delivered after the restart",
                    () -> receiver.delivered().stream().anyMatch(r -> r.id().equals(headId)));
            receiver.mode.set(Mode.UP);
            awaitAllDelivered(ds, receiver, pgtId, baseline);
            List<Received> head = receiver.with(headId);
            assertTrue("503 then 200 for " + headId + ": " + statuses(head),
                    head.get(0).status() == 503 && head.get(head.size() - 1).status() == 200);
            assertEquals("phase 2: four more notifications", phase1 + 4, receiver.delivered().size());
            List<Received> afterRestart = receiver.requests.subList(beforeRestart, receiver.requests.size());
            assertTrue("the outage's notifications arrived after the restart",
                    receiver.delivered().subList(phase1, phase1 + 4).stream().allMatch(afterRestart::contains));
            assertEquals("no dead letters after the outage", "0", query(ds, "SELECT count(*) FROM pgtrickle.list_dead_letters()"));

            // 3. a permanent failure: a dead letter after maxAttempts, replayed with the same id
            receiver.mode.set(Mode.FAIL);
            long refreshesBefore = nonEmptyRefreshes(ds, pgtId, baseline).size();
            change(ds, pgtId, baseline, "INSERT INTO wh_orders VALUES (6, 'flo', 60)");
            long deadRefresh = nonEmptyRefreshes(ds, pgtId, baseline).get((int) refreshesBefore)[0];
            await("a dead letter for refresh " + deadRefresh, () -> "1".equals(q(ds,
                    "SELECT count(*) FROM pgtrickle.list_dead_letters('" + SINK_ID + "') WHERE refresh_id = " + deadRefresh)));
            String deadRow = query(ds, "SELECT outbox_id || '|' || attempts || '|' || stream_table || '|' || channel"
                    + " FROM pgtrickle.list_dead_letters('" + SINK_ID + "') WHERE refresh_id = " + deadRefresh);
            String[] dead = deadRow.split("\\|");
            String deadId = "pgt-" + dead[0];
            assertEquals("attempts of the dead letter", String.valueOf(MAX_ATTEMPTS), dead[1]);
            assertEquals("public." + STREAM_TABLE, dead[2]);
            assertEquals(CHANNEL, dead[3]);
            assertTrue("last_error names the answer", query(ds, "SELECT last_error FROM pgtrickle.list_dead_letters('" + SINK_ID
                    + "') WHERE refresh_id = " + deadRefresh).contains("HTTP 500"));
            assertEquals("500 answers for " + deadId, List.of(500, 500, 500), statuses(receiver.with(deadId)));
            assertEquals("the dead letter leaves the queue", "0",
                    query(ds, "SELECT queued FROM pgtrickle.list_sinks() WHERE sink_id = '" + SINK_ID + "'"));

            receiver.mode.set(Mode.UP);
            assertEquals("1", query(ds, "SELECT pgtrickle.replay_dead_letters('" + SINK_ID + "', NULL)"));
            await("the replayed dead letter delivered", () -> receiver.delivered().stream().anyMatch(r -> r.id().equals(deadId)));
            awaitAllDelivered(ds, receiver, pgtId, baseline);
            assertEquals("0", query(ds, "SELECT count(*) FROM pgtrickle.list_dead_letters()"));
            List<Received> replayed = receiver.with(deadId);
            assertEquals(List.of(500, 500, 500, 200), statuses(replayed));
            assertEquals(deadRefresh, replayed.get(3).refreshId());
            verifyAll(receiver, secret);
            // for the build log: what the receiver saw, per notification
            Map<String, List<Integer>> seenById = new LinkedHashMap<>();
            receiver.requests.forEach(r -> seenById.computeIfAbsent(r.id(), k -> new ArrayList<>()).add(r.status()));
            System.out.println("webhook receiver, answers per webhook-id (restart before request " + beforeRestart + "): " + seenById);
        }
    }

    /** Runs a change and waits for the scheduler's refresh of it (one non-empty refresh more). */
    private static void change(DataSource ds, long pgtId, long baseline, String sql) throws Exception {
        int before = nonEmptyRefreshes(ds, pgtId, baseline).size();
        exec(ds, sql);
        await("a refresh after: " + sql, () -> nonEmptyRefreshes(ds, pgtId, baseline).size() > before);
    }

    /**
     * Waits until the sink's queue is empty and every non-empty refresh was delivered, then checks
     * the successful deliveries against the history: the same refreshes, in refresh order, with their
     * exact counts, one notification each.
     */
    private static void awaitAllDelivered(DataSource ds, Receiver receiver, long pgtId, long baseline) throws Exception {
        await("every refresh delivered and the queue empty", () -> receiver.delivered().size() >= nonEmptyRefreshes(ds, pgtId, baseline).size()
                && "0".equals(q(ds, "SELECT queued FROM pgtrickle.list_sinks() WHERE sink_id = '" + SINK_ID + "'")));
        List<long[]> history = nonEmptyRefreshes(ds, pgtId, baseline);
        List<Received> delivered = receiver.delivered();
        List<String> expected = new ArrayList<>();
        for (long[] h : history) {
            expected.add(h[0] + " +" + h[1] + " -" + h[2]);
        }
        List<String> actual = new ArrayList<>();
        for (Received r : delivered) {
            String body = r.text();
            assertTrue("payload names the stream table: " + body, body.contains("\"public." + STREAM_TABLE + "\""));
            assertFalse("no folded refreshes with notify_coalesce_ms = 0: " + body, body.contains("\"refreshes\""));
            actual.add(r.refreshId() + " +" + number(INSERTED, body) + " -" + number(DELETED, body));
        }
        assertEquals("deliveries (refresh_id +inserted -deleted) against pgtrickle.pgt_refresh_history", expected, actual);
    }

    /** Every request, failed or not: signed over id.timestamp.body with the secret's key; one id, one body. */
    private static void verifyAll(Receiver receiver, String secret) throws Exception {
        byte[] key = Base64.getDecoder().decode(secret.substring("whsec_".length()));
        Map<String, byte[]> bodies = new LinkedHashMap<>();
        long now = Instant.now().getEpochSecond();
        for (Received r : receiver.requests) {
            assertNotNull("webhook-id", r.id());
            assertTrue("webhook-id " + r.id(), r.id().matches("pgt-\\d+"));
            assertNotNull("webhook-timestamp of " + r.id(), r.timestamp());
            assertTrue("fresh timestamp " + r.timestamp(), Math.abs(now - Long.parseLong(r.timestamp())) < 300);
            assertNotNull("webhook-signature of " + r.id(), r.signature());
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(key, "HmacSHA256"));
            mac.update((r.id() + "." + r.timestamp() + ".").getBytes(StandardCharsets.UTF_8));
            byte[] expected = Base64.getEncoder().encode(mac.doFinal(r.body()));
            boolean ok = Arrays.stream(r.signature().split(" "))
                    .anyMatch(s -> s.startsWith("v1,") && MessageDigest.isEqual(expected, s.substring(3).getBytes(StandardCharsets.US_ASCII)));
            assertTrue("signature of " + r.id() + " at " + r.timestamp() + " verifies", ok);
            byte[] previous = bodies.putIfAbsent(r.id(), r.body());
            if (previous != null) {
                assertTrue("same body on every attempt of " + r.id(), Arrays.equals(previous, r.body()));
            }
        }
    }

    /** Completed refreshes of the stream table after {@code baseline} that changed rows: id, inserted, deleted. */
    private static List<long[]> nonEmptyRefreshes(DataSource ds, long pgtId, long baseline) throws SQLException {
        List<long[]> rows = new ArrayList<>();
        try (Connection c = ds.getConnection(); Statement s = c.createStatement();
             ResultSet rs = s.executeQuery("SELECT refresh_id, rows_inserted, rows_deleted FROM pgtrickle.pgt_refresh_history"
                     + " WHERE pgt_id = " + pgtId + " AND refresh_id > " + baseline + " AND status = 'COMPLETED'"
                     + " AND (rows_inserted > 0 OR rows_deleted > 0) ORDER BY refresh_id")) {
            while (rs.next()) {
                rows.add(new long[] {rs.getLong(1), rs.getLong(2), rs.getLong(3)});
            }
        }
        return rows;
    }

    private static List<Integer> statuses(List<Received> requests) {
        return requests.stream().map(Received::status).toList();
    }

    private static long number(Pattern p, String body) {
        Matcher m = p.matcher(body);
        if (!m.find()) {
            fail("no " + p.pattern() + " in " + body);
        }
        return Long.parseLong(m.group(1));
    }

    @FunctionalInterface
    private interface Condition {
        boolean holds() throws Exception;
    }

    private static void await(String what, Condition condition) throws Exception {
        long deadline = System.nanoTime() + WAIT_NANOS;
        while (!condition.holds()) {
            if (System.nanoTime() > deadline) {
                fail("not within 60 s: " + what + "\n" + InFramework.componentReport());
            }
            Thread.sleep(50);
        }
    }

    /** For conditions: a query, its exceptions unchecked. */
    private static String q(DataSource ds, String sql) {
        try {
            return query(ds, sql);
        } catch (SQLException e) {
            throw new IllegalStateException(e);
        }
    }
}
