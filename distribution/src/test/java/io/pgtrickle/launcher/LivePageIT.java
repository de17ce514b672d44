package io.pgtrickle.launcher;

import static io.pgtrickle.launcher.ExistingDatabaseIT.STARTUP;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
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
import java.time.OffsetDateTime;
import java.util.ArrayList;
import java.util.HashMap;
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
import org.openqa.selenium.By;
import org.openqa.selenium.WebDriver;
import org.openqa.selenium.WebElement;

/**
 * docs/live.md's live page against the running distribution: the list endpoint
 * {@code /pgtrickle/stream-tables} over real HTTP (tokens, privileges, fields, values that move), the
 * page's files, and the page itself in a real headless Chromium, following a stream table while its
 * source is written and while the network drops.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class LivePageIT {

    private static final Duration WAIT = Duration.ofSeconds(30);
    private static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
    private static final ObjectMapper JSON = new ObjectMapper();

    private Path tmp;
    private PgTrickleProcess pgtrickle;
    private int httpPort;
    private Connection db;
    private Statement sql;

    @BeforeAll
    void start(@TempDir Path dir) throws Exception {
        tmp = dir;
        Path home = Distribution.copyTo(tmp.resolve("pgtrickle"));
        // retryMs: the browser retries a dropped stream every half second
        Files.writeString(home.resolve("etc/io.pgtrickle.http.events.config"),
                "tokens=[\"lp_reader:tok-reader\",\"lp_nobody:tok-nobody\",\"lp_ghost:tok-ghost\"]\nretryMs=\"500\"\n");
        int port = Distribution.freePort();
        httpPort = Distribution.freePort();
        pgtrickle = PgTrickleProcess.startReady(home, port, Map.of("PGTRICKLE_HTTP_PORT", Integer.toString(httpPort)));
        pgtrickle.awaitLine(Pattern.quote("pgtrickle server-sent events at /pgtrickle/events: 3 token(s)"), STARTUP);
        db = DriverManager.getConnection(PgTrickleProcess.jdbcUrl(port), "postgres", null);
        sql = db.createStatement();
        sql.execute("CREATE ROLE lp_reader");
        sql.execute("CREATE ROLE lp_nobody");
        for (String st : new String[] {"lp_orders", "lp_quiet", "lp_hidden", "lp_live"}) {
            sql.execute("CREATE TABLE src_" + st + " (id int PRIMARY KEY, grp text, amount int)");
            sql.execute("SELECT pgtrickle.create_stream_table('" + st + "', 'SELECT grp, sum(amount) AS total FROM src_" + st
                    + " GROUP BY grp')");
        }
        // published as events: all but lp_quiet; readable by lp_reader: all but lp_hidden
        for (String st : new String[] {"lp_orders", "lp_hidden", "lp_live"}) {
            sql.execute("SELECT pgtrickle.subscribe('" + st + "', 'pgtrickle_sse')");
        }
        for (String st : new String[] {"lp_orders", "lp_quiet", "lp_live"}) {
            sql.execute("GRANT SELECT ON " + st + " TO lp_reader");
        }
        // one event per refresh, so that the page's entries can be compared with the refresh history one to one
        sql.execute("SELECT pgtrickle.alter_stream_table('lp_live', notify_coalesce_ms => 0)");
    }

    @AfterAll
    void stop() throws Exception {
        if (sql != null) {
            for (String role : new String[] {"lp_reader", "lp_nobody"}) {
                sql.execute("DROP OWNED BY " + role);
                sql.execute("DROP ROLE " + role);
            }
        }
        if (db != null) {
            db.close();
        }
        if (pgtrickle != null) {
            pgtrickle.close();
        }
    }

    private String base() {
        return "http://127.0.0.1:" + httpPort;
    }

    private HttpResponse<String> get(String path, Map<String, String> headers) throws Exception {
        HttpRequest.Builder r = HttpRequest.newBuilder(URI.create(base() + path)).timeout(WAIT);
        headers.forEach(r::header);
        return HTTP.send(r.build(), HttpResponse.BodyHandlers.ofString());
    }

    /** The list for a token, by stream table name, in the order it came. */
    private Map<String, JsonNode> list(String token) throws Exception {
        HttpResponse<String> r = get("/pgtrickle/stream-tables", Map.of("Authorization", "Bearer " + token));
        assertEquals(200, r.statusCode(), r.body());
        assertEquals("application/json;charset=utf-8", contentType(r));
        assertEquals("no-store", r.headers().firstValue("Cache-Control").orElse(""));
        Map<String, JsonNode> byName = new java.util.LinkedHashMap<>();
        for (JsonNode t : JSON.readTree(r.body())) {
            byName.put(t.get("name").asText(), t);
        }
        return byName;
    }

    private static String contentType(HttpResponse<?> r) {
        return r.headers().firstValue("Content-Type").orElse("").replace(" ", "").toLowerCase();
    }

    /** The newest refresh of a stream table: refresh_id, action, status, rows_inserted, rows_deleted, data_timestamp. */
    private Map<String, Object> newestRefresh(String st) throws Exception {
        try (ResultSet rs = sql.executeQuery("SELECT h.refresh_id, h.action, h.status, h.rows_inserted, h.rows_deleted, s.data_timestamp"
                + " FROM pgtrickle.pgt_refresh_history h JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)"
                + " WHERE s.pgt_name = '" + st + "' ORDER BY h.start_time DESC, h.refresh_id DESC LIMIT 1")) {
            assertTrue(rs.next(), st + " has no refresh");
            Map<String, Object> row = new HashMap<>();
            row.put("refresh_id", rs.getLong(1));
            row.put("action", rs.getString(2));
            row.put("status", rs.getString(3));
            row.put("rows_inserted", rs.getLong(4));
            row.put("rows_deleted", rs.getLong(5));
            row.put("data_timestamp", rs.getObject(6, OffsetDateTime.class));
            return row;
        }
    }

    private void assertShows(Map<String, Object> refresh, JsonNode t) {
        JsonNode last = t.get("last_refresh");
        assertNotNull(last, t.toString());
        assertEquals(refresh.get("refresh_id"), last.get("refresh_id").asLong(), t.toString());
        assertEquals(refresh.get("action"), last.get("action").asText(), t.toString());
        assertEquals(refresh.get("status"), last.get("status").asText(), t.toString());
        assertEquals(refresh.get("rows_inserted"), last.get("rows_inserted").asLong(), t.toString());
        assertEquals(refresh.get("rows_deleted"), last.get("rows_deleted").asLong(), t.toString());
        assertEquals(((OffsetDateTime) refresh.get("data_timestamp")).toInstant(),
                OffsetDateTime.parse(t.get("data_timestamp").asText()).toInstant(), t.toString());
    }

    @Test
    @Order(1)
    void theListAnswersToTheSameTokensAndPrivilegesAsTheEvents() throws Exception {
        HttpResponse<String> none = get("/pgtrickle/stream-tables", Map.of());
        assertEquals(401, none.statusCode());
        assertEquals("Bearer realm=\"pgtrickle\"", none.headers().firstValue("WWW-Authenticate").orElse(""));
        assertEquals(401, get("/pgtrickle/stream-tables", Map.of("Authorization", "Bearer tok-wrong")).statusCode());
        assertEquals(401, get("/pgtrickle/stream-tables?access_token=tok-wrong", Map.of()).statusCode());
        // the query parameter works as it does for the events
        assertEquals(200, get("/pgtrickle/stream-tables?access_token=tok-reader", Map.of()).statusCode());

        Map<String, JsonNode> reader = list("tok-reader");
        assertEquals(List.of("public.lp_live", "public.lp_orders", "public.lp_quiet"), new ArrayList<>(reader.keySet()),
                "only what lp_reader may SELECT, by name");
        assertTrue(list("tok-nobody").isEmpty(), "a role without SELECT sees nothing");
        assertTrue(list("tok-ghost").isEmpty(), "a token whose role does not exist sees nothing");

        JsonNode orders = reader.get("public.lp_orders");
        assertEquals("ACTIVE", orders.get("status").asText());
        assertEquals("DIFFERENTIAL", orders.get("refresh_mode").asText());
        assertTrue(orders.get("is_populated").asBoolean());
        assertEquals(0, orders.get("consecutive_errors").asInt());
        assertTrue(orders.get("events").asBoolean(), "subscribed to pgtrickle_sse");
        assertFalse(reader.get("public.lp_quiet").get("events").asBoolean(), "not subscribed");
        assertTrue(orders.get("staleness_seconds").asDouble() >= 0, orders.toString());
        assertShows(newestRefresh("lp_orders"), orders);

        // a grant revoked: gone from the list at once
        sql.execute("REVOKE SELECT ON lp_quiet FROM lp_reader");
        assertFalse(list("tok-reader").containsKey("public.lp_quiet"));
        sql.execute("GRANT SELECT ON lp_quiet TO lp_reader");
        assertTrue(list("tok-reader").containsKey("public.lp_quiet"));
    }

    @Test
    @Order(2)
    void theListsValuesMoveWithTheRefreshes() throws Exception {
        // (the scheduler, woken by the commit, may refresh before refresh_stream_table does, which then finds
        // nothing to do: either way the list shows the newest refresh, whichever it is)
        long initial = newestRefreshId("lp_orders");
        sql.execute("INSERT INTO src_lp_orders VALUES (1, 'a', 5), (2, 'b', 7)");
        sql.execute("SELECT pgtrickle.refresh_stream_table('lp_orders')");
        JsonNode first = list("tok-reader").get("public.lp_orders");
        Map<String, Object> refresh = newestRefresh("lp_orders");
        assertTrue((Long) refresh.get("refresh_id") > initial);
        assertShows(refresh, first);

        // current while nothing is pending, however long since the refresh
        Thread.sleep(1100);
        assertEquals(0.0, list("tok-reader").get("public.lp_orders").get("staleness_seconds").asDouble(), 0.0);
        // a change the scheduler leaves alone (an hourly schedule): stale from the last refresh on.
        // Poll until it is at least 2 s behind, then refresh
        sql.execute("SELECT pgtrickle.alter_stream_table('lp_orders', schedule => '1h')");
        sql.execute("UPDATE src_lp_orders SET amount = 6 WHERE id = 1");
        JsonNode idle = first;
        long deadline = System.nanoTime() + WAIT.toNanos();
        while (idle.get("staleness_seconds").asDouble() < 2 && System.nanoTime() < deadline) {
            Thread.sleep(200);
            idle = list("tok-reader").get("public.lp_orders");
        }
        assertTrue(idle.get("staleness_seconds").asDouble() >= 2, idle.toString());
        assertEquals(first.get("last_refresh"), idle.get("last_refresh"), "no refresh meanwhile");

        sql.execute("UPDATE src_lp_orders SET amount = 8 WHERE id = 1");
        sql.execute("SELECT pgtrickle.refresh_stream_table('lp_orders')");
        JsonNode second = list("tok-reader").get("public.lp_orders");
        Map<String, Object> next = newestRefresh("lp_orders");
        assertTrue((Long) next.get("refresh_id") > (Long) refresh.get("refresh_id"));
        assertShows(next, second);
        assertTrue(OffsetDateTime.parse(second.get("data_timestamp").asText()).isAfter(OffsetDateTime.parse(idle.get("data_timestamp").asText())));
        assertEquals(0.0, second.get("staleness_seconds").asDouble(), 0.0, "the refresh made it current again: " + idle + " then " + second);
        sql.execute("SELECT pgtrickle.alter_stream_table('lp_orders', schedule => 'calculated')");
    }

    @Test
    @Order(3)
    void thePageAndItsFilesAreServedWithTheirTypes() throws Exception {
        Map<String, String> files = Map.of("/pgtrickle/", "text/html;charset=utf-8", "/pgtrickle/index.html", "text/html;charset=utf-8",
                "/pgtrickle/live.js", "text/javascript;charset=utf-8", "/pgtrickle/live.css", "text/css;charset=utf-8");
        for (Map.Entry<String, String> f : files.entrySet()) {
            HttpResponse<String> r = get(f.getKey(), Map.of()); // no token: the page holds no data
            assertEquals(200, r.statusCode(), f.getKey());
            assertEquals(f.getValue(), contentType(r), f.getKey());
            assertEquals("nosniff", r.headers().firstValue("X-Content-Type-Options").orElse(""), f.getKey());
            assertTrue(r.headers().firstValue("Content-Security-Policy").orElse("").contains("script-src 'self'"), f.getKey());
        }
        String page = get("/pgtrickle/", Map.of()).body();
        assertTrue(page.contains("<script src=\"live.js\"></script>"), page);
        assertTrue(page.contains("<link rel=\"stylesheet\" href=\"live.css\">"), page);
        assertTrue(get("/pgtrickle/live.js", Map.of()).body().contains("new EventSource("));
        HttpResponse<String> bare = get("/pgtrickle", Map.of());
        assertEquals(302, bare.statusCode());
        assertEquals("/pgtrickle/", bare.headers().firstValue("Location").orElse(""), "relative URLs need the slash");
        assertEquals(404, get("/pgtrickle/nothing.js", Map.of()).statusCode());
        assertEquals(404, get("/pgtrickle/page/live.js", Map.of()).statusCode(), "only the page's files, by name");
        // the page's servlet sits at /pgtrickle/*: the events' exact paths still win
        assertEquals(401, get("/pgtrickle/events?stream_table=lp_live", Map.of()).statusCode());
        assertEquals(401, get("/pgtrickle/stream-tables", Map.of()).statusCode());
    }

    /** The refreshes of lp_live that changed it and so were announced, after refresh {@code after}, newest first. */
    private List<String> announced(long after) throws Exception {
        List<String> ids = new ArrayList<>();
        try (ResultSet rs = sql.executeQuery("SELECT h.refresh_id FROM pgtrickle.pgt_refresh_history h JOIN pgtrickle.pgt_stream_tables s"
                + " USING (pgt_id) WHERE s.pgt_name = 'lp_live' AND h.status = 'COMPLETED' AND (h.rows_inserted > 0 OR h.rows_deleted > 0)"
                + " AND h.refresh_id > " + after + " ORDER BY h.refresh_id DESC")) {
            while (rs.next()) {
                ids.add(rs.getString(1));
            }
        }
        return ids;
    }

    private static List<String> shownRefreshes(WebDriver browser) {
        return browser.findElements(By.cssSelector("#live-log li.refresh")).stream().map(li -> li.getAttribute("data-refresh-id")).toList();
    }

    private static String state(WebDriver browser) {
        return browser.findElement(By.id("live-state")).getAttribute("data-state");
    }

    private static String shown(WebDriver browser) {
        return browser.findElement(By.tagName("body")).getText();
    }

    /**
     * The real browser test: headless Chromium opens the page with a token in the fragment,
     * follows a stream table, a write happens on its source, and the page shows the scheduler's refresh;
     * then the network drops, changes happen meanwhile, and once it is back the page shows exactly the
     * missed refreshes (EventSource's own Last-Event-ID); then the grant is revoked and the page stops.
     */
    @Test
    @Order(4)
    void aBrowserFollowsAStreamTableAndResumesAfterTheNetworkDrops() throws Exception {
        try (CuttableProxy network = new CuttableProxy(httpPort)) {
            WebDriver browser = Chromium.startOrSkip(Files.createDirectories(tmp.resolve("chromium-profile")));
            try {
                browser.get("http://127.0.0.1:" + network.port() + "/pgtrickle/#token=tok-reader");
                Chromium.await("the list", WAIT, () -> !browser.findElements(By.cssSelector("tr[data-name='public.lp_live'] button")).isEmpty(),
                        () -> shown(browser));
                assertFalse(browser.getCurrentUrl().contains("tok-reader"), "the token is taken off the address bar: " + browser.getCurrentUrl());
                assertTrue(browser.findElements(By.cssSelector("tr[data-name='public.lp_hidden']")).isEmpty(), "not readable, not listed");
                Chromium.await("lp_quiet without events", WAIT, () -> "no events".equals(
                        browser.findElement(By.cssSelector("tr[data-name='public.lp_quiet'] td:last-child")).getText()), () -> shown(browser));

                long before = newestRefreshId("lp_live");
                Chromium.click(browser, "tr[data-name='public.lp_live'] button");
                Chromium.await("following lp_live", WAIT, () -> "live".equals(state(browser)), () -> shown(browser));
                assertEquals("public.lp_live", browser.findElement(By.id("live-name")).getText());

                // a write, and nothing else: the scheduler refreshes, the refresh is announced, the page shows it
                long written = System.nanoTime();
                sql.execute("INSERT INTO src_lp_live VALUES (1, 'a', 1)");
                Chromium.await("the refresh after the write", WAIT, () -> !shownRefreshes(browser).isEmpty(), () -> shown(browser));
                long shownAfterMs = (System.nanoTime() - written) / 1_000_000;
                // a measurement, not an assertion (2 noisy cores): the issue expects about a second
                System.out.println("LivePageIT: the page showed the scheduler's refresh " + shownAfterMs + " ms after the write's commit");
                List<String> expected = announced(before);
                assertEquals(1, expected.size(), expected.toString());
                assertEquals(expected, shownRefreshes(browser));
                // the page read the list again on that event: its row shows the refresh
                Chromium.await("the list after the refresh", WAIT, () -> browser.findElement(
                        By.cssSelector("tr[data-name='public.lp_live'] td:nth-child(5)")).getText().endsWith("completed +1 -0"),
                        () -> shown(browser));

                // the network drops: EventSource notices and keeps retrying
                network.cut();
                Chromium.await("noticing the drop", WAIT, () -> "reconnecting".equals(state(browser)), () -> shown(browser));
                sql.execute("INSERT INTO src_lp_live VALUES (2, 'b', 2)");
                sql.execute("SELECT pgtrickle.refresh_stream_table('lp_live')");
                sql.execute("UPDATE src_lp_live SET amount = 3 WHERE id = 1");
                sql.execute("SELECT pgtrickle.refresh_stream_table('lp_live')");
                expected = announced(before);
                assertEquals(3, expected.size(), expected.toString());
                assertEquals("reconnecting", state(browser), "still cut off while the changes were made");
                assertEquals(1, shownRefreshes(browser).size());
                network.restore();
                List<String> all = expected;
                Chromium.await("the missed refreshes", WAIT, () -> shownRefreshes(browser).size() >= all.size(), () -> shown(browser));
                assertEquals("live", state(browser));
                assertEquals(expected, shownRefreshes(browser), "each refresh exactly once, in order (newest first)");

                // the grant is revoked: the server ends the stream with 'revoked' (re-checked every 5 s), the page stops
                sql.execute("REVOKE SELECT ON lp_live FROM lp_reader");
                Chromium.await("the revocation", WAIT, () -> "revoked".equals(state(browser)), () -> shown(browser));
                Chromium.await("lp_live leaving the list", WAIT,
                        () -> browser.findElements(By.cssSelector("tr[data-name='public.lp_live']")).isEmpty(), () -> shown(browser));
                List<WebElement> still = browser.findElements(By.cssSelector("tr[data-name='public.lp_orders']"));
                assertEquals(1, still.size(), "the rest of the list stays");
            } finally {
                browser.quit();
            }
        }
    }

    private long newestRefreshId(String st) throws Exception {
        return (Long) newestRefresh(st).get("refresh_id");
    }
}
