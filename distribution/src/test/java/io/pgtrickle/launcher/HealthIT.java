package io.pgtrickle.launcher;

import static io.pgtrickle.launcher.ExistingDatabaseIT.STARTUP;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.zonky.test.db.postgres.embedded.EmbeddedPostgres;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.Statement;
import java.time.Duration;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.Predicate;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * docs/operations.md's /health against the running distribution on a PostgreSQL server of the test's
 * own, which the test stops and starts again: each named check goes CRITICAL (and /health 503) when
 * its condition is broken, and back to OK (200) when it is mended.
 */
class HealthIT {

    private static final Duration WAIT = Duration.ofSeconds(60);
    private static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    private static final ObjectMapper JSON = new ObjectMapper();

    private record Health(int status, JsonNode body) {

        String check(String name) {
            for (JsonNode r : body.get("results")) {
                if (r.get("name").asText().equals(name)) {
                    return r.get("status").asText() + ": " + r.get("messages").get(0).get("message").asText();
                }
            }
            return "missing";
        }

        Map<String, String> statuses() {
            Map<String, String> m = new TreeMap<>();
            body.get("results").forEach(r -> m.put(r.get("name").asText(), r.get("status").asText()));
            return m;
        }
    }

    private int httpPort;

    private Health health() throws Exception {
        HttpResponse<String> r = HTTP.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + httpPort + "/health"))
                .timeout(Duration.ofSeconds(20)).build(), HttpResponse.BodyHandlers.ofString());
        assertEquals("application/json;charset=utf-8", r.headers().firstValue("Content-Type").orElse("").replace(" ", "").toLowerCase());
        return new Health(r.statusCode(), JSON.readTree(r.body()));
    }

    private Health await(String what, Predicate<Health> condition, PgTrickleProcess pgtrickle) throws Exception {
        long deadline = System.nanoTime() + WAIT.toNanos();
        Health h = health();
        while (!condition.test(h)) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError(what + ": last answer " + h.status() + " " + h.body().toPrettyString() + pgtrickle.dump());
            }
            Thread.sleep(250);
            h = health();
        }
        return h;
    }

    private static Predicate<Health> healthy() {
        return h -> h.status() == 200 && h.body().get("overallResult").asText().equals("OK");
    }

    private static Predicate<Health> critical(String check, String message) {
        return h -> h.status() == 503 && h.body().get("overallResult").asText().equals("CRITICAL")
                && h.check(check).startsWith("CRITICAL: ") && h.check(check).contains(message);
    }

    @Test
    void eachCheckFailsWhenItsConditionBreaksAndRecovers(@TempDir Path tmp) throws Exception {
        int pgPort = Distribution.freePort();
        Path data = tmp.resolve("pgdata");
        Files.createDirectories(data);
        EmbeddedPostgres pg = EmbeddedPostgres.builder().setPort(pgPort).setDataDirectory(data).setCleanDataDirectory(false).start();
        try {
            Path home = Distribution.copyTo(tmp.resolve("pgtrickle"));
            Files.writeString(home.resolve("etc/io.pgtrickle.health.cfg"), "schedulerMaxOverdueSeconds = 3\noutboxMaxAgeSeconds = 2\n");
            httpPort = Distribution.freePort();
            String url = "jdbc:postgresql://localhost:" + pgPort + "/postgres";
            try (PgTrickleProcess pgtrickle = PgTrickleProcess.start(home, Map.of("PGTRICKLE_JDBC_URL", url, "PGTRICKLE_JDBC_USER",
                    "postgres", "PGTRICKLE_HTTP_PORT", Integer.toString(httpPort), "PGTRICKLE_JDBC_MAX_RETRY_DELAY_SECONDS", "1"),
                    "--headless")) {
                pgtrickle.awaitLine(ExistingDatabaseIT.catalogLine(), STARTUP);
                Health h = await("healthy after start", healthy(), pgtrickle);
                assertEquals(Map.of("catalog", "OK", "database", "OK", "outbox", "OK", "scheduler", "OK", "suspended", "OK"), h.statuses());
                assertTrue(h.check("catalog").startsWith("OK: catalog at version " + Distribution.version()), h.check("catalog"));

                try (Connection c = DriverManager.getConnection(url, "postgres", null); Statement s = c.createStatement()) {
                    // suspended: a refresh that fails three times in a row
                    s.execute("CREATE TABLE divisors (id int PRIMARY KEY, d int)");
                    s.execute("SELECT pgtrickle.create_stream_table('quotients', 'SELECT id, 100 / d AS q FROM divisors')");
                    s.execute("INSERT INTO divisors VALUES (1, 0)");
                    await("suspended", critical("suspended", "1 stream table(s) suspended: public.quotients"), pgtrickle);
                    s.execute("DELETE FROM divisors");
                    s.execute("SELECT pgtrickle.resume_stream_table('quotients')");
                    await("resumed", healthy(), pgtrickle);

                    // outbox: notifications for a sink no container delivers, older than outboxMaxAgeSeconds
                    s.execute("SELECT pgtrickle.register_sink('nobody:here', ARRAY['unheard'])");
                    s.execute("CREATE TABLE words (id int PRIMARY KEY, w text)");
                    s.execute("SELECT pgtrickle.create_stream_table('word_count', 'SELECT count(*) AS n FROM words')");
                    s.execute("SELECT pgtrickle.subscribe('word_count', 'unheard')");
                    s.execute("INSERT INTO words VALUES (1, 'a')");
                    s.execute("SELECT pgtrickle.refresh_stream_table('word_count')");
                    await("outbox stuck", critical("outbox", "notifications waiting longer than 2 s: nobody:here (1 queued"), pgtrickle);
                    s.execute("SELECT pgtrickle.unregister_sink('nobody:here')");
                    await("outbox emptied", healthy(), pgtrickle);

                    // scheduler: a stream table with a change it cannot refresh (its catalog row held by another session) for 3 s
                    try (Connection holder = DriverManager.getConnection(url, "postgres", null); Statement hs = holder.createStatement()) {
                        holder.setAutoCommit(false);
                        hs.execute("SELECT 1 FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'word_count' FOR UPDATE");
                        s.execute("INSERT INTO words VALUES (2, 'b')");
                        await("scheduler behind", critical("scheduler", "1 stream table(s) due for more than 3 s: public.word_count"),
                                pgtrickle);
                        holder.rollback();
                    }
                    await("scheduler caught up", healthy(), pgtrickle);
                }

                // the database goes away, and comes back
                pg.close();
                // "does not answer", or "no answer within 5000 ms" while the pool still waits for its connection attempt
                await("database stopped", critical("database", ""), pgtrickle);
                pg = EmbeddedPostgres.builder().setPort(pgPort).setDataDirectory(data).setCleanDataDirectory(false).start();
                await("database back", healthy(), pgtrickle);
            }
        } finally {
            pg.close();
        }
    }
}
