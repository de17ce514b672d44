package io.pgtrickle.shell;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pgtrickle.api.refresh.RefreshService;
import io.pgtrickle.catalog.CatalogMigrator;
import io.pgtrickle.testing.SqlStatements;
import io.pgtrickle.testing.TestDatabase;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class StreamTableCommandsTest implements SqlStatements {

    private TestDatabase.Database db;
    private Connection c;
    private final ByteArrayOutputStream printed = new ByteArrayOutputStream();
    private StreamTableCommands commands;

    @Override
    public Connection connection() {
        return c;
    }

    @BeforeEach
    void setUp() throws SQLException {
        db = TestDatabase.get().createDatabase("shell");
        c = db.connect();
        new CatalogMigrator().migrate(c);
        exec("CREATE TABLE orders (id int PRIMARY KEY, customer text, amount numeric)");
        exec("INSERT INTO orders VALUES (1, 'ann', 10), (2, 'bob', 7)");
        // the refresh bundle's service runs pgtrickle.run_refresh; here it is called directly
        RefreshService refreshService = name -> {
            try (Connection r = db.connect(); PreparedStatement p = r.prepareStatement(
                    "SELECT pgtrickle.run_refresh((pgtrickle.find_stream_table(?)).pgt_id, 'MANUAL')")) {
                p.setString(1, name);
                try (ResultSet rs = p.executeQuery()) {
                    rs.next();
                    return rs.getLong(1);
                }
            }
        };
        commands = new StreamTableCommands(db.dataSource(), refreshService, new PrintStream(printed, true, StandardCharsets.UTF_8));
    }

    @AfterEach
    void tearDown() throws SQLException {
        c.close();
        db.drop();
    }

    private String output() {
        String s = printed.toString(StandardCharsets.UTF_8);
        printed.reset();
        return s;
    }

    @Test
    void commandsGoThroughTheSqlApi() throws SQLException {
        commands.create("order_totals", "SELECT customer, sum(amount) AS total FROM orders GROUP BY customer");
        assertEquals("created order_totals\n", output());
        assertEquals("2", string("SELECT count(*) FROM order_totals"));
        assertEquals("INITIAL", string("SELECT initiated_by FROM pgtrickle.pgt_refresh_history"));

        commands.list();
        String list = output();
        assertTrue(list.matches("(?s)name +\\| status \\| mode +\\| populated \\| schedule \\| errors \\| data_timestamp.*"), list);
        assertTrue(list.matches("(?s).*public\\.order_totals \\| ACTIVE \\| DIFFERENTIAL \\| t +\\| 1s +\\| 0 .*"), list);
        assertTrue(list.endsWith("(1 row)\n"), list);

        exec("INSERT INTO orders VALUES (3, 'ann', 5)");
        commands.refresh("order_totals");
        String refresh = output();
        // DIFFERENTIAL once the engine has planned it, FULL before that: either way one row in, one out
        assertTrue(refresh.matches("(?s).*\\| (FULL|DIFFERENTIAL) +\\| 1 +\\| 1 .*"), refresh);
        assertEquals("MANUAL", string("SELECT initiated_by FROM pgtrickle.pgt_refresh_history ORDER BY refresh_id DESC LIMIT 1"));
        assertEquals("15", string("SELECT total FROM order_totals WHERE customer = 'ann'"));

        commands.history("order_totals");
        assertTrue(output().contains("(2 rows)"));
        commands.mode("order_totals");
        String mode = output();
        assertTrue(mode.matches("(?s).*AUTO +\\| DIFFERENTIAL +\\| +\\| *\n.*"), mode);

        commands.subscribe("order_totals", "totals_changed");
        assertEquals("subscribed totals_changed to order_totals\n", output());
        commands.subscriptions();
        String subscriptions = output();
        assertTrue(subscriptions.matches("(?s).*public\\.order_totals \\| totals_changed +\\| .*\\(1 row\\)\n"), subscriptions);
        commands.unsubscribe("order_totals", "totals_changed");
        assertEquals("unsubscribed totals_changed from order_totals\n", output());
        assertEquals("0", string("SELECT count(*) FROM pgtrickle.pgt_subscriptions"));

        exec("SELECT pgtrickle.register_sink('webhook:down', ARRAY['*'])");
        exec("SELECT pgtrickle.subscribe('order_totals', 'totals_changed')");
        exec("SET pg_trickle.notify_coalesce_ms = 0");
        exec("INSERT INTO orders VALUES (4, 'bob', 1)");
        exec("SELECT pgtrickle.refresh_stream_table('order_totals')");
        exec("SELECT pgtrickle.fail_notification(outbox_id, claim_token, 'HTTP 503', 0, 1) FROM pgtrickle.claim_notifications('webhook:down', 1, 1000)");
        commands.sinks();
        assertTrue(output().matches("(?s).*webhook:down \\| \\{\\*\\} +\\| t +\\| +\\| 0 +\\| 1 .*"), "one dead letter");
        commands.deadletters("webhook:down");
        assertTrue(output().contains("HTTP 503"));
        commands.replay("webhook:down");
        assertTrue(output().matches("(?s)replayed.*\n1 *\n.*"));
        assertEquals("1", string("SELECT count(*) FROM pgtrickle.pgt_outbox"));

        commands.drop("order_totals");
        assertEquals("dropped order_totals\n", output());
        assertEquals(null, string("SELECT to_regclass('order_totals')"));
    }

    @Test
    void statusShowsPgtStatusForAllOrOneStreamTable() throws SQLException {
        commands.create("order_totals", "SELECT customer, sum(amount) AS total FROM orders GROUP BY customer");
        commands.create("ids", "SELECT id FROM orders", "calculated", "FULL");
        output();

        commands.status();
        String all = output();
        assertTrue(all.matches("(?s)name +\\| status \\| refresh_mode \\| is_populated \\| consecutive_errors \\| schedule +\\|"
                + " data_timestamp +\\| staleness +\\| last_error_message\n.*"), all);
        assertTrue(all.matches("(?s).*\npublic\\.ids +\\| ACTIVE \\| FULL +\\| t +\\| 0 +\\| calculated \\| .*"), all);
        assertTrue(all.matches("(?s).*\npublic\\.order_totals \\| ACTIVE \\| DIFFERENTIAL \\| t +\\| 0 +\\| 1s +\\| .*"), all);
        assertTrue(all.endsWith("(2 rows)\n"), all);

        exec("SELECT pgtrickle.record_refresh_failure((pgtrickle.find_stream_table('ids')).pgt_id, 'boom', 1)");
        // the name as the SQL functions take it: bare (search_path) or qualified
        for (String name : new String[] {"ids", "public.ids"}) {
            commands.status(name);
            String one = output();
            assertTrue(one.matches("(?s).*\npublic\\.ids \\| SUSPENDED \\| FULL +\\| t +\\| 1 +\\| calculated \\| .* \\| boom\n\\(1 row\\)\n"), one);
            assertTrue(!one.contains("order_totals"), one);
        }

        SQLException e = assertThrows(SQLException.class, () -> commands.status("nope"));
        assertTrue(e.getMessage().contains("stream table 'nope' does not exist"), e.getMessage());
        assertEquals("", output());
    }

    @Test
    void unitsListsEachBundlesDatabasePart() throws SQLException {
        commands.units();
        String out = output();
        for (String unit : new String[] {"io.pgtrickle.catalog", "io.pgtrickle.refresh", "io.pgtrickle.notify", "io.pgtrickle.evolution"}) {
            assertTrue(out.lines().anyMatch(l -> l.contains(unit) && l.contains("READY")), out);
        }
        exec("UPDATE pgtrickle.pgt_schema_unit SET state = 'FAILED', message = 'R__10_evolution.sql: boom' WHERE unit = 'io.pgtrickle.evolution'");
        commands.units();
        out = output();
        assertTrue(out.lines().anyMatch(l -> l.contains("io.pgtrickle.evolution") && l.contains("FAILED") && l.contains("boom")), out);
    }

    @Test
    void errorsAreTheDatabasesOwn() throws SQLException {
        SQLException e = assertThrows(SQLException.class, () -> commands.refresh("nope"));
        assertTrue(e.getMessage().contains("stream table 'nope' does not exist"), e.getMessage());
        e = assertThrows(SQLException.class, () -> commands.create("bad", "SELECT * FROM orders LIMIT 1", "1s", "AUTO"));
        assertTrue(e.getMessage().contains("LIMIT or OFFSET without ORDER BY"), e.getMessage());
        assertEquals("", output());
    }

    @Test
    void resumeBringsASuspendedStreamTableBack() throws SQLException {
        commands.create("ids", "SELECT id FROM orders", "calculated", "FULL");
        output();
        exec("SELECT pgtrickle.record_refresh_failure(pgt_id, 'boom', 1) FROM pgtrickle.pgt_stream_tables");
        commands.resume("ids");
        assertEquals("resumed ids\n", output());
        assertEquals("ACTIVE", string("SELECT status FROM pgtrickle.pgt_stream_tables"));
    }

    @Test
    void evolveWatchAndFinishAShadowEvolution() throws SQLException {
        commands.create("order_totals", "SELECT customer, sum(amount) AS total FROM orders GROUP BY customer", "1h", "AUTO");
        output();
        // the commands' connections come from the data source: the flag is a setting of the database
        exec("ALTER DATABASE \"" + db.name() + "\" SET pg_trickle.shadow_build_enabled = on");
        // for the steps below, run on this connection; no engine runs here to plan the shadow
        exec("SET pg_trickle.shadow_refresh_throttle_ms = 0");
        exec("SET pg_trickle.scheduler_interval_ms = 0");

        commands.evolve("order_totals", "SELECT customer, sum(amount) AS total, count(*) AS orders FROM orders GROUP BY customer");
        String id = string("SELECT evolution_id FROM pgtrickle.pgt_evolutions");
        assertEquals("evolution " + id + " of order_totals started: the new query is built beside the live table in the background\n"
                + "watch it with pgtrickle:evolution order_totals, cancel it with pgtrickle:cancelevolution order_totals\n", output());

        commands.evolution("order_totals");
        String building = output();
        assertTrue(building.matches("(?s)id +\\| stream_table +\\| status +\\| phase +\\| live_rows \\| shadow_rows \\| progress \\| started +\\| ended \\| error\n"
                + "-.*\n" + id + " +\\| public\\.order_totals \\| in_progress \\| BUILDING \\| 2 +\\| 0 +\\| 0% +\\| 20.* \\| +\\|\n\\(1 row\\)\n"), building);

        // a second evolution while this one runs: the database's error
        SQLException second = assertThrows(SQLException.class, () -> commands.evolve("order_totals", "SELECT customer FROM orders"));
        assertTrue(second.getMessage().contains("an evolution of order_totals is already in progress (evolution " + id), second.getMessage());

        // the evolution bundle's steps, by hand
        int steps = 0;
        while (string("SELECT pgtrickle.evolution_step(" + id + ")") != null) {
            assertTrue(++steps < 20, "the evolution converges");
        }
        commands.evolution("order_totals");
        String converged = output();
        assertTrue(converged.matches("(?s).*\n" + id + " +\\| public\\.order_totals \\| converged \\| SWAPPED \\| 2 +\\| 2 +\\| 100% +\\| 20.* \\| 20.* \\|\n\\(1 row\\)\n"), converged);
        assertEquals("2", string("SELECT sum(orders) FROM order_totals"), "the new query's column is there");

        // all evolutions, newest first
        exec("SELECT pgtrickle.create_stream_table('ids', 'SELECT id FROM orders', schedule => '1h')");
        commands.evolve("ids", "SELECT id, amount FROM orders");
        output();
        commands.evolution();
        String all = output();
        assertTrue(all.matches("(?s)id .*\n-.*\n\\d+ +\\| public\\.ids +\\| in_progress \\| BUILDING .*\n" + id
                + " +\\| public\\.order_totals \\| converged +\\| SWAPPED .*\n\\(2 rows\\)\n"), all);
    }

    @Test
    void cancelEvolutionDropsTheShadow() throws SQLException {
        commands.create("ids", "SELECT id FROM orders", "1h", "AUTO");
        exec("ALTER DATABASE \"" + db.name() + "\" SET pg_trickle.shadow_build_enabled = on");
        commands.evolve("ids", "SELECT id, customer FROM orders");
        output();
        assertEquals("__pgt_shadow_ids", string("SELECT to_regclass('__pgt_shadow_ids')::text"));

        commands.cancelEvolution("ids");
        assertEquals("cancelled the evolution of ids\n", output());
        assertEquals(null, string("SELECT to_regclass('__pgt_shadow_ids')"));
        commands.evolution("ids");
        String cancelled = output();
        assertTrue(cancelled.matches("(?s).*\n\\d+ +\\| public\\.ids +\\| cancelled \\| CANCELLED \\| .*\n\\(1 row\\)\n"), cancelled);

        SQLException none = assertThrows(SQLException.class, () -> commands.cancelEvolution("ids"));
        assertTrue(none.getMessage().contains("no evolution of ids is in progress"), none.getMessage());
        assertEquals("42704", none.getSQLState());
        assertEquals("", output());
    }

    @Test
    void evolutionErrorsAreTheDatabasesOwn() throws SQLException {
        commands.create("ids", "SELECT id FROM orders", "1h", "AUTO");
        output();
        // the flag is off by default
        SQLException off = assertThrows(SQLException.class, () -> commands.evolve("ids", "SELECT id, customer FROM orders"));
        assertTrue(off.getMessage().contains("shadow builds are disabled: set pg_trickle.shadow_build_enabled = on"), off.getMessage());
        assertEquals("0A000", off.getSQLState());
        assertEquals("0", string("SELECT count(*) FROM pgtrickle.pgt_evolutions"));
        assertEquals(null, string("SELECT to_regclass('__pgt_shadow_ids')"));

        exec("ALTER DATABASE \"" + db.name() + "\" SET pg_trickle.shadow_build_enabled = on");
        SQLException unknown = assertThrows(SQLException.class, () -> commands.evolve("nope", "SELECT id FROM orders"));
        assertTrue(unknown.getMessage().contains("stream table 'nope' does not exist"), unknown.getMessage());
        unknown = assertThrows(SQLException.class, () -> commands.evolution("nope"));
        assertTrue(unknown.getMessage().contains("stream table 'nope' does not exist"), unknown.getMessage());
        SQLException bad = assertThrows(SQLException.class, () -> commands.evolve("ids", "SELEC nonsense"));
        assertTrue(bad.getMessage().contains("invalid query for stream table ids"), bad.getMessage());
        assertEquals("", output());

        // nothing evolved yet: an empty table
        commands.evolution();
        assertTrue(output().endsWith("(0 rows)\n"));
    }
}
