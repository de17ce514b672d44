package io.pgtrickle.launcher;

import static io.pgtrickle.launcher.ExistingDatabaseIT.STARTUP;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.ConnectException;
import java.net.URI;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.io.TempDir;

/**
 * docs/live.md against the running distribution over real HTTP: server-sent events at
 * /pgtrickle/events, their order, resuming with Last-Event-ID, retention and resync, bearer tokens
 * and PostgreSQL privileges, keep-alives and retry. HTTP is bound to 127.0.0.2 (pgtrickle.http.host),
 * so 127.0.0.1 is refused.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class EventsIT {

    private static final Duration WAIT = Duration.ofSeconds(20);
    private static final String HOST = "127.0.0.2";

    private Path tmp;

    private PgTrickleProcess pgtrickle;
    private Path home;
    private int httpPort;
    private Connection db;
    private Statement sql;

    @BeforeAll
    void start(@TempDir Path dir) throws Exception {
        tmp = dir;
        home = Distribution.copyTo(tmp.resolve("pgtrickle"));
        // a .config file, Felix's typed format: the only one in which a list of tokens is a list
        writeConfig("tokens=[\"reader:tok-reader\",\"nobody:tok-nobody\",\"ghost:tok-ghost\"]\nkeepAliveSeconds=\"1\"\nretryMs=\"1500\"\n");
        int port = Distribution.freePort();
        httpPort = Distribution.freePort();
        pgtrickle = PgTrickleProcess.startReady(home, port, Map.of("PGTRICKLE_HTTP_PORT", Integer.toString(httpPort),
                "PGTRICKLE_HTTP_HOST", HOST));
        pgtrickle.awaitLine(Pattern.quote("pgtrickle: HTTP at http://" + HOST + ":" + httpPort + "/"), STARTUP);
        pgtrickle.awaitLine(Pattern.quote("pgtrickle server-sent events at /pgtrickle/events: 3 token(s), retention 3600 s"), STARTUP);
        db = DriverManager.getConnection(PgTrickleProcess.jdbcUrl(port), "postgres", null);
        sql = db.createStatement();
        sql.execute("CREATE ROLE reader");
        sql.execute("CREATE ROLE nobody");
        for (String st : new String[] {"st_history", "st_resume", "st_retention", "st_revoke", "st_other"}) {
            streamTable(st, !st.equals("st_other"));
        }
    }

    /** A stream table over a table src_{st} of its own, readable by {@code reader}, subscribed to the SSE channel if asked. */
    private void streamTable(String st, boolean subscribed) throws Exception {
        sql.execute("CREATE TABLE src_" + st + " (id int PRIMARY KEY, grp text, amount int)");
        sql.execute("SELECT pgtrickle.create_stream_table('" + st + "', 'SELECT grp, sum(amount) AS total FROM src_" + st
                + " GROUP BY grp')");
        // one event per refresh, so the events can be compared with the refresh history one to one
        sql.execute("SELECT pgtrickle.alter_stream_table('" + st + "', notify_coalesce_ms => 0)");
        if (subscribed) {
            sql.execute("SELECT pgtrickle.subscribe('" + st + "', 'pgtrickle_sse')");
        }
        sql.execute("GRANT SELECT ON " + st + " TO reader");
    }

    @AfterAll
    void stop() throws Exception {
        if (db != null) {
            db.close();
        }
        if (pgtrickle != null) {
            pgtrickle.close();
        }
    }

    private void writeConfig(String text) throws Exception {
        Path staged = tmp.resolve("events.config");
        Files.writeString(staged, text);
        Files.move(staged, home.resolve("etc/io.pgtrickle.http.events.config"), StandardCopyOption.ATOMIC_MOVE,
                StandardCopyOption.REPLACE_EXISTING);
    }

    private String url(String query) {
        return "http://" + HOST + ":" + httpPort + "/pgtrickle/events?" + query;
    }

    private SseClient open(String streamTable, String lastEventId) throws Exception {
        Map<String, String> headers = lastEventId == null ? Map.of("Authorization", "Bearer tok-reader")
                : Map.of("Authorization", "Bearer tok-reader", "Last-Event-ID", lastEventId);
        SseClient client = SseClient.open(url("stream_table=" + streamTable), headers);
        assertEquals(200, client.status);
        assertEquals("text/event-stream;charset=utf-8", client.contentType.replace(" ", "").toLowerCase());
        return client;
    }

    private int status(String query, Map<String, String> headers) throws Exception {
        HttpRequest.Builder r = HttpRequest.newBuilder(URI.create(url(query))).timeout(WAIT);
        headers.forEach(r::header);
        return SseClient.HTTP.send(r.build(), HttpResponse.BodyHandlers.discarding()).statusCode();
    }

    /** One change, refreshed now: a refresh that inserts or deletes, hence one notification. */
    private void change(String st, int id) throws Exception {
        sql.execute("INSERT INTO src_" + st + " VALUES (" + id + ", 'g" + id + "', " + id + ")");
        sql.execute("SELECT pgtrickle.refresh_stream_table('" + st + "')");
    }

    /** The payloads of the stream table's refreshes that changed it, after refresh {@code after}, in order. */
    private List<String> history(String st, long after) throws Exception {
        List<String> payloads = new ArrayList<>();
        try (ResultSet rs = sql.executeQuery("SELECT h.refresh_id, h.rows_inserted, h.rows_deleted FROM pgtrickle.pgt_refresh_history h"
                + " JOIN pgtrickle.pgt_stream_tables s USING (pgt_id) WHERE s.pgt_name = '" + st + "' AND h.status = 'COMPLETED'"
                + " AND (h.rows_inserted > 0 OR h.rows_deleted > 0) AND h.refresh_id > " + after + " ORDER BY h.refresh_id")) {
            while (rs.next()) {
                payloads.add("{\"name\" : \"public." + st + "\", \"refresh_id\" : " + rs.getLong(1) + ", \"inserted_count\" : "
                        + rs.getLong(2) + ", \"deleted_count\" : " + rs.getLong(3) + "}");
            }
        }
        return payloads;
    }

    private long lastRefresh(String st) throws Exception {
        try (ResultSet rs = sql.executeQuery("SELECT coalesce(max(h.refresh_id), 0) FROM pgtrickle.pgt_refresh_history h"
                + " JOIN pgtrickle.pgt_stream_tables s USING (pgt_id) WHERE s.pgt_name = '" + st + "'")) {
            rs.next();
            return rs.getLong(1);
        }
    }

    private static List<SseClient.Event> refreshes(SseClient client, int n) throws Exception {
        List<SseClient.Event> got = new ArrayList<>();
        while (got.size() < n) {
            SseClient.Event e = client.next("refresh", WAIT);
            assertNotNull(e, "only " + got.size() + " of " + n + " refresh events arrived: " + got);
            got.add(e);
        }
        return got;
    }

    @Test
    @Order(1)
    void tokensAndPrivilegesDecideWhoSeesWhat() throws Exception {
        assertEquals(401, status("stream_table=st_history", Map.of()));
        assertEquals(401, status("stream_table=st_history", Map.of("Authorization", "Bearer tok-wrong")));
        assertEquals(401, status("stream_table=st_history&access_token=tok-wrong", Map.of()));
        // nobody exists but has no SELECT; ghost is no role at all
        assertEquals(403, status("stream_table=st_history", Map.of("Authorization", "Bearer tok-nobody")));
        assertEquals(403, status("stream_table=st_history&access_token=tok-ghost", Map.of()));
        assertEquals(404, status("stream_table=no_such_table", Map.of("Authorization", "Bearer tok-reader")));
        assertEquals(404, status("stream_table=st_other", Map.of("Authorization", "Bearer tok-reader")), "not published");
        assertEquals(400, status("", Map.of("Authorization", "Bearer tok-reader")));
        assertEquals(400, status("stream_table=st_history", Map.of("Authorization", "Bearer tok-reader", "Last-Event-ID", "x")));
        // EventSource cannot send headers: the token as a query parameter
        try (SseClient viaQuery = SseClient.open(url("stream_table=st_history&access_token=tok-reader"), Map.of())) {
            assertEquals(200, viaQuery.status);
        }
        // pgtrickle.http.host: bound to 127.0.0.2 only
        HttpRequest elsewhere = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + httpPort + "/pgtrickle/events")).build();
        assertThrows(ConnectException.class, () -> SseClient.HTTP.send(elsewhere, HttpResponse.BodyHandlers.discarding()));
        // tokens never reach the log
        assertTrue(pgtrickle.allLines().stream().noneMatch(l -> l.contains("tok-")), pgtrickle.dump());
    }

    @Test
    @Order(2)
    void eventsEqualTheRefreshHistoryInOrderWithRetryAndKeepAlives() throws Exception {
        long before = lastRefresh("st_history");
        try (SseClient client = open("st_history", null)) {
            SseClient.Event retry = client.next(WAIT);
            assertEquals(new SseClient.Event("retry:", null, "1500"), retry, "retryMs");
            for (int i = 1; i <= 5; i++) {
                change("st_history", i);
            }
            sql.execute("DELETE FROM src_st_history WHERE id = 2");
            sql.execute("SELECT pgtrickle.refresh_stream_table('st_history')");
            List<String> expected = history("st_history", before);
            assertEquals(6, expected.size(), expected.toString());
            List<SseClient.Event> got = refreshes(client, expected.size());
            assertEquals(expected, got.stream().map(SseClient.Event::data).toList());
            long previous = 0;
            for (SseClient.Event e : got) {
                long id = Long.parseLong(e.id());
                assertTrue(id > previous, "ids increase: " + got);
                previous = id;
            }
            // keepAliveSeconds = 1: an idle stream hears a comment every second
            SseClient.Event comment = client.next(":", Duration.ofSeconds(5));
            assertNotNull(comment, "no keep-alive comment");
            assertEquals("keep-alive", comment.data());
        }
    }

    @Test
    @Order(3)
    void aReconnectWithLastEventIdGetsExactlyTheMissedEvents() throws Exception {
        String lastId;
        long seen;
        try (SseClient client = open("st_resume", null)) {
            change("st_resume", 1);
            change("st_resume", 2);
            List<SseClient.Event> got = refreshes(client, 2);
            lastId = got.get(1).id();
            seen = lastRefresh("st_resume");
        }
        // disconnected: changes happen meanwhile
        change("st_resume", 3);
        change("st_resume", 4);
        sql.execute("UPDATE src_st_resume SET amount = 40 WHERE id = 4");
        sql.execute("SELECT pgtrickle.refresh_stream_table('st_resume')");
        List<String> missed = history("st_resume", seen);
        assertEquals(3, missed.size(), missed.toString());
        try (SseClient client = open("st_resume", lastId)) {
            assertEquals(missed, refreshes(client, 3).stream().map(SseClient.Event::data).toList());
            // and nothing more: no duplicate of what came before the disconnect, no stray one after
            assertEquals(null, client.next("refresh", Duration.ofSeconds(2)));
            long b = lastRefresh("st_resume");
            change("st_resume", 5);
            assertEquals(history("st_resume", b), refreshes(client, 1).stream().map(SseClient.Event::data).toList());
        }
    }

    @Test
    @Order(34)
    void aNewEventSourceResumesWithTheLastEventIdParameter() throws Exception {
        streamTable("st_param", true);
        String first;
        String second;
        try (SseClient client = open("st_param", null)) {
            change("st_param", 1);
            change("st_param", 2);
            List<SseClient.Event> got = refreshes(client, 2);
            first = got.get(0).id();
            second = got.get(1).id();
        }
        long seen = lastRefresh("st_param");
        change("st_param", 3);
        List<String> missed = history("st_param", seen);
        // what a page does after the browser gave up on an error answer: a new EventSource, which cannot
        // send Last-Event-ID, names the last event it saw in the URL
        Map<String, String> bearer = Map.of("Authorization", "Bearer tok-reader");
        try (SseClient client = SseClient.open(url("stream_table=st_param&last_event_id=" + second), bearer)) {
            assertEquals(200, client.status);
            assertEquals(missed, refreshes(client, 1).stream().map(SseClient.Event::data).toList());
            assertEquals(null, client.next("refresh", Duration.ofSeconds(1)));
        }
        assertEquals(400, status("stream_table=st_param&last_event_id=soon", bearer), "not an id");
        // the header, which EventSource's own reconnects send, wins over a parameter left in the URL
        try (SseClient client = SseClient.open(url("stream_table=st_param&last_event_id=" + first),
                Map.of("Authorization", "Bearer tok-reader", "Last-Event-ID", second))) {
            assertEquals(missed, refreshes(client, 1).stream().map(SseClient.Event::data).toList());
            assertEquals(null, client.next("refresh", Duration.ofSeconds(1)));
        }
    }

    @Test
    @Order(35)
    void oneStreamForTwoStreamTablesResumesEachWhereItWas() throws Exception {
        streamTable("st_a", true);
        streamTable("st_b", true);
        String lastId;
        long seenA;
        long seenB;
        try (SseClient client = SseClient.open(url("stream_table=st_a&stream_table=st_b"), Map.of("Authorization", "Bearer tok-reader"))) {
            assertEquals(200, client.status);
            change("st_b", 1);
            change("st_a", 1);
            List<SseClient.Event> got = refreshes(client, 2);
            assertEquals(List.of(history("st_b", 0).get(0), history("st_a", 0).get(0)), got.stream().map(SseClient.Event::data).toList());
            // the id holds one position per stream table, in the order of the request
            lastId = got.get(1).id();
            assertTrue(lastId.matches("\\d+,\\d+"), lastId);
            seenA = lastRefresh("st_a");
            seenB = lastRefresh("st_b");
        }
        change("st_a", 2);
        change("st_b", 2);
        change("st_b", 3);
        try (SseClient client = SseClient.open(url("stream_table=st_a&stream_table=st_b"),
                Map.of("Authorization", "Bearer tok-reader", "Last-Event-ID", lastId))) {
            List<String> got = refreshes(client, 3).stream().map(SseClient.Event::data).toList();
            List<String> missed = new ArrayList<>(history("st_a", seenA));
            missed.addAll(history("st_b", seenB));
            assertEquals(3, missed.size(), missed.toString());
            assertEquals(new java.util.TreeSet<>(missed), new java.util.TreeSet<>(got));
            // in each stream table's own order
            assertEquals(history("st_b", seenB), got.stream().filter(d -> d.contains("public.st_b")).toList());
            assertEquals(null, client.next("refresh", Duration.ofSeconds(2)));
        }
    }

    @Test
    @Order(4)
    void aRevokedGrantEndsTheStream() throws Exception {
        try (SseClient client = open("st_revoke", null)) {
            client.next("retry:", WAIT);
            sql.execute("REVOKE SELECT ON st_revoke FROM reader");
            SseClient.Event revoked = client.next("revoked", WAIT);
            assertNotNull(revoked, "no revoked event");
            assertEquals("{\"stream_table\": \"public.st_revoke\"}", revoked.data());
            assertNotNull(client.next("end", WAIT), "the stream did not end");
        }
        assertEquals(403, status("stream_table=st_revoke", Map.of("Authorization", "Bearer tok-reader")));
    }

    @Test
    @Order(5)
    void pastTheRetentionAReconnectGetsResync() throws Exception {
        writeConfig("tokens=[\"reader:tok-reader\"]\nretentionSeconds=\"2\"\n");
        pgtrickle.awaitLine(Pattern.quote("pgtrickle server-sent events at /pgtrickle/events: 1 token(s), retention 2 s"), WAIT);
        // that line comes from the new servlet's activation; the whiteboard registers it afterwards, and
        // until then /pgtrickle/events is nobody's (404 from the live page's /pgtrickle/*), not 401
        long registered = System.nanoTime() + WAIT.toNanos();
        while (status("stream_table=st_retention", Map.of()) != 401 && System.nanoTime() < registered) {
            Thread.sleep(50);
        }
        String lastId;
        try (SseClient client = open("st_retention", null)) {
            change("st_retention", 1);
            lastId = refreshes(client, 1).get(0).id();
        }
        change("st_retention", 2);
        change("st_retention", 3);
        // older than two seconds, and pruned (every second at this retention); the newest is always kept
        long deadline = System.nanoTime() + WAIT.toNanos();
        while (retained("st_retention") > 1 && System.nanoTime() < deadline) {
            Thread.sleep(200);
        }
        assertEquals(1, retained("st_retention"));
        String head;
        try (SseClient client = open("st_retention", lastId)) {
            SseClient.Event resync = client.next("resync", WAIT);
            assertNotNull(resync, "no resync event");
            head = resync.id();
            assertTrue(Long.parseLong(head) > Long.parseLong(lastId), head);
            // after the resync, the stream goes on from the newest event
            long b = lastRefresh("st_retention");
            change("st_retention", 4);
            List<String> fourth = history("st_retention", b);
            assertEquals(fourth, refreshes(client, 1).stream().map(SseClient.Event::data).toList());
            // the id the resync gave is a valid place to resume from
            try (SseClient again = open("st_retention", head)) {
                assertEquals(fourth, refreshes(again, 1).stream().map(SseClient.Event::data).toList());
            }
        }
    }

    private long retained(String st) throws Exception {
        try (ResultSet rs = sql.executeQuery("SELECT count(*) FROM pgtrickle.pgt_outbox o JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)"
                + " WHERE o.sink_id = 'sse' AND s.pgt_name = '" + st + "'")) {
            rs.next();
            return rs.getLong(1);
        }
    }
}
