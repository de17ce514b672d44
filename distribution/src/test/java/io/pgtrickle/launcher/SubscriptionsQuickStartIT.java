package io.pgtrickle.launcher;

import static io.pgtrickle.launcher.ExistingDatabaseIT.SHUTDOWN;
import static io.pgtrickle.launcher.ExistingDatabaseIT.SIGTERM_STATUS;
import static io.pgtrickle.launcher.ExistingDatabaseIT.STARTUP;
import static io.pgtrickle.launcher.SinkHotDeployIT.awaitEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.sun.net.httpserver.Headers;
import com.sun.net.httpserver.HttpServer;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.postgresql.PGConnection;
import org.postgresql.PGNotification;

/**
 * docs/subscriptions.md's quick start and docs/webhooks.md's endpoint, followed against the running
 * distribution with its defaults, after the README's tutorial as a newcomer does (the quick start has
 * tables of its own): the quick start's SQL, a listening JDBC session, a webhook
 * configured by a file in etc/, and a write. No refresh is run by hand: the container's scheduler
 * refreshes the stream table on its default schedule, the listener hears the refresh and the
 * endpoint receives it signed. Then the low-latency recipe's schedule, {@code calculated}.
 */
class SubscriptionsQuickStartIT {

    /** docs/webhooks.md's example secret. */
    private static final String SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    /** A one-second schedule, a one-second scheduler tick and the 250 ms window: seconds, not minutes. */
    private static final Duration ANNOUNCED = Duration.ofSeconds(60);

    private record Post(Headers headers, String body) {
    }

    private final List<Post> posts = new ArrayList<>(); // guarded by itself

    @Test
    void theQuickStartWorksAsWritten(@TempDir Path tmp) throws Exception {
        HttpServer endpoint = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
        endpoint.createContext("/pgtrickle/payments", exchange -> {
            try (InputStream in = exchange.getRequestBody()) {
                String body = new String(in.readAllBytes(), StandardCharsets.UTF_8);
                synchronized (posts) {
                    posts.add(new Post(exchange.getRequestHeaders(), body));
                }
            }
            exchange.sendResponseHeaders(204, -1);
            exchange.close();
        });
        endpoint.start();
        try {
            run(tmp, endpoint.getAddress().getPort());
        } finally {
            endpoint.stop(0);
        }
    }

    private void run(Path tmp, int endpointPort) throws Exception {
        Path home = Distribution.copyTo(tmp.resolve("pgtrickle"));
        int port = Distribution.freePort();
        String url = PgTrickleProcess.jdbcUrl(port);
        try (PgTrickleProcess pgtrickle = PgTrickleProcess.startReady(home, port, Map.of())) {
            try (Connection c = DriverManager.getConnection(url, "postgres", null); Statement s = c.createStatement();
                 Connection listener = DriverManager.getConnection(url, "postgres", null)) {
                // docs/webhooks.md: one file per endpoint in etc/, written elsewhere and moved in
                Path cfg = tmp.resolve("payments.cfg");
                Files.writeString(cfg, "name = payments\nurl = http://127.0.0.1:" + endpointPort + "/pgtrickle/payments\n"
                        + "channels = payment_totals_changed, refunds_changed\nsecret = " + SECRET + "\ntimeoutMs = 10000\nmaxAttempts = 10\n");
                Files.move(cfg, home.resolve("etc/io.pgtrickle.sink.webhook-payments.cfg"), StandardCopyOption.ATOMIC_MOVE);
                awaitEquals(1L, () -> count(s, "SELECT count(*) FROM pgtrickle.list_sinks() WHERE sink_id = 'webhook:payments' AND enabled"),
                        STARTUP, "the webhook sink registered", pgtrickle);

                // the README's tutorial, which a newcomer has usually followed first
                s.execute("CREATE TABLE orders (id int PRIMARY KEY, customer text, amount numeric)");
                s.execute("SELECT pgtrickle.create_stream_table('order_totals',\n"
                        + "       'SELECT customer, sum(amount) AS total FROM orders GROUP BY customer')");

                // docs/subscriptions.md, "Quick start with psql", with a JDBC session as the listening one
                s.execute("CREATE TABLE payments (id int PRIMARY KEY, customer text, amount numeric)");
                s.execute("SELECT pgtrickle.create_stream_table('payment_totals',\n"
                        + "       'SELECT customer, sum(amount) AS total FROM payments GROUP BY customer')");
                s.execute("SELECT pgtrickle.subscribe('payment_totals', 'payment_totals_changed')");
                try (Statement l = listener.createStatement()) {
                    l.execute("LISTEN payment_totals_changed");
                }
                s.execute("INSERT INTO payments VALUES (1, 'ann', 10), (2, 'bob', 7)");

                // no refresh by hand: the scheduler's, announced on the channel
                String payload = nextNotification(listener, "payment_totals_changed", ANNOUNCED);
                long refreshId = count(s, "SELECT max(h.refresh_id) FROM pgtrickle.pgt_refresh_history h"
                        + " JOIN pgtrickle.pgt_stream_tables st USING (pgt_id) WHERE st.pgt_name = 'payment_totals' AND h.rows_inserted > 0");
                assertEquals("{\"name\" : \"public.payment_totals\", \"refresh_id\" : " + refreshId
                        + ", \"inserted_count\" : 2, \"deleted_count\" : 0}", payload);
                assertEquals("SCHEDULER", string(s, "SELECT initiated_by FROM pgtrickle.pgt_refresh_history WHERE refresh_id = "
                        + refreshId));

                // the endpoint: the same notification, signed as docs/webhooks.md tells a receiver to verify
                awaitEquals(1, this::postCount, ANNOUNCED, "POSTs received", pgtrickle);
                Post post;
                synchronized (posts) {
                    post = posts.get(0);
                }
                assertEquals(payload, post.body());
                assertEquals("application/json", post.headers().getFirst("Content-Type"));
                String id = post.headers().getFirst("webhook-id");
                String timestamp = post.headers().getFirst("webhook-timestamp");
                assertNotNull(id);
                assertEquals("v1," + sign(id + "." + timestamp + "." + post.body()), post.headers().getFirst("webhook-signature"));

                // "Low latency": schedule 'calculated' refreshes when the scheduler's look finds changes
                s.execute("SELECT pgtrickle.alter_stream_table('payment_totals', schedule => 'calculated')");
                s.execute("INSERT INTO payments VALUES (3, 'cy', 1)");
                String next = nextNotification(listener, "payment_totals_changed", ANNOUNCED);
                assertTrue(next.contains("\"inserted_count\" : 1, \"deleted_count\" : 0"), next);
                awaitEquals(2, this::postCount, ANNOUNCED, "POSTs received", pgtrickle);
                assertTrue(pgtrickle.allLines().stream().noneMatch(line -> line.contains("ERROR")), pgtrickle.dump());
            }
            assertEquals(SIGTERM_STATUS, pgtrickle.terminate(SHUTDOWN), pgtrickle.dump());
        }
    }

    /** The payload of the next notification on the channel, waiting as the docs' listener does. */
    private static String nextNotification(Connection listener, String channel, Duration timeout) throws SQLException {
        PGConnection pg = listener.unwrap(PGConnection.class);
        long deadline = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < deadline) {
            PGNotification[] got = pg.getNotifications(1_000);
            if (got != null) {
                for (PGNotification n : got) {
                    if (n.getName().equals(channel)) {
                        return n.getParameter();
                    }
                }
            }
        }
        throw new AssertionError("no notification on " + channel + " within " + timeout.toSeconds() + " s");
    }

    private int postCount() {
        synchronized (posts) {
            return posts.size();
        }
    }

    private static String sign(String signed) throws Exception {
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(Base64.getDecoder().decode(SECRET.substring("whsec_".length())), "HmacSHA256"));
        return Base64.getEncoder().encodeToString(mac.doFinal(signed.getBytes(StandardCharsets.UTF_8)));
    }

    private static long count(Statement s, String sql) throws SQLException {
        try (ResultSet rs = s.executeQuery(sql)) {
            rs.next();
            return rs.getLong(1);
        }
    }

    private static String string(Statement s, String sql) throws SQLException {
        try (ResultSet rs = s.executeQuery(sql)) {
            rs.next();
            return rs.getString(1);
        }
    }
}
