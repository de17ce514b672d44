package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pgtrickle.catalog.CatalogMigrator;
import io.pgtrickle.testing.TestDatabase;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import javax.sql.DataSource;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The whole engine as a role without superuser: it migrates the catalog, captures, plans and
 * refreshes; each stream table is computed with the privileges of its owner, so an owner
 * materialises only what it may read (table privileges, row-level security), while the engine's
 * role needs only what docs/configuration.md lists.
 */
class LeastPrivilegeTest {

    private static final String PASSWORD = "pgtrickle-test";

    private TestDatabase.Database db;
    private String engineRole;
    private String alice;
    private String keeper;
    private DataSource asEngine;
    private DataSource asAlice;

    @BeforeEach
    void setUp() throws SQLException {
        db = TestDatabase.get().createDatabase("least_privilege");
        engineRole = "engine_" + db.name();
        alice = "alice_" + db.name();
        keeper = "keeper_" + db.name();
        try (Connection c = db.connect(); Statement s = c.createStatement()) {
            s.execute("CREATE ROLE " + engineRole + " LOGIN NOSUPERUSER PASSWORD '" + PASSWORD + "'");
            s.execute("CREATE ROLE " + alice + " LOGIN NOSUPERUSER PASSWORD '" + PASSWORD + "'");
            // the documented grants: create schemas in the database, and act as the owners of the
            // stream tables it refreshes
            s.execute("GRANT CREATE ON DATABASE " + db.name() + " TO " + engineRole);
            s.execute("GRANT " + alice + " TO " + engineRole);
            s.execute("GRANT CREATE ON SCHEMA public TO " + alice);
            // the owner of other sources: capture sets their row triggers ENABLE REPLICA, which is
            // an owner's ALTER TABLE, so the engine's role is a member
            s.execute("CREATE ROLE " + keeper + " NOLOGIN");
            s.execute("GRANT " + keeper + " TO " + engineRole);
            // a table alice does not own, shown to her through a policy
            s.execute("CREATE TABLE regions (code text PRIMARY KEY, secret boolean)");
            s.execute("INSERT INTO regions VALUES ('north', false), ('south', true)");
            s.execute("ALTER TABLE regions ENABLE ROW LEVEL SECURITY");
            s.execute("CREATE POLICY public_regions ON regions FOR SELECT USING (NOT secret)");
            s.execute("GRANT SELECT ON regions TO " + alice);
            // a table alice may not read at all
            s.execute("CREATE TABLE salaries (region text, amount int)");
            s.execute("INSERT INTO salaries VALUES ('north', 1), ('south', 2)");
            s.execute("ALTER TABLE regions OWNER TO " + keeper);
            s.execute("ALTER TABLE salaries OWNER TO " + keeper);
            // a table of an owner the engine's role is not a member of
            s.execute("CREATE TABLE audit (id int)");
            s.execute("GRANT SELECT, TRIGGER ON audit TO " + engineRole);
        }
        asEngine = db.dataSource(engineRole, PASSWORD);
        asAlice = db.dataSource(alice, PASSWORD);
        try (Connection c = asEngine.getConnection()) {
            new CatalogMigrator().migrate(c);
        }
        try (Connection c = asAlice.getConnection(); Statement s = c.createStatement()) {
            s.execute("CREATE TABLE public.orders (id int PRIMARY KEY, region text, amount int)");
            s.execute("INSERT INTO public.orders SELECT g, CASE WHEN g % 2 = 0 THEN 'north' ELSE 'south' END, g FROM generate_series(1, 20) g");
            s.execute("GRANT SELECT, TRIGGER ON public.orders TO " + engineRole);
        }
    }

    @AfterEach
    void tearDown() throws SQLException {
        db.drop();
        try (Connection c = TestDatabase.get().connect("postgres"); Statement s = c.createStatement()) {
            s.execute("DROP ROLE IF EXISTS " + engineRole);
            s.execute("DROP ROLE IF EXISTS " + alice);
            s.execute("DROP ROLE IF EXISTS " + keeper);
        }
    }

    /** Created by the engine's role (which owns the catalog), then handed to alice. */
    private void aliceStreamTable(String name, String query) throws SQLException {
        // not filled by the engine's role: the first rows are computed as alice, by the scheduler
        exec(asEngine, "SELECT pgtrickle.create_stream_table('" + name + "', $q$" + query + "$q$, 'calculated', initialize => false)",
                "ALTER TABLE " + name + " OWNER TO " + alice);
    }

    @Test
    void theEngineNeedsNoSuperuserAndEachStreamTableGetsOnlyWhatItsOwnerMayRead() throws Exception {
        assertEquals("f", one(asEngine, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"));
        aliceStreamTable("order_sums", "SELECT region, sum(amount) AS total, count(*) AS n FROM orders GROUP BY region");
        aliceStreamTable("order_rows", "SELECT o.id, o.region, o.amount FROM orders o WHERE o.amount > 5");
        // a derived table, maintained by a statement of its own, also as alice
        aliceStreamTable("top_region", "WITH per AS (SELECT region, sum(amount) AS total FROM orders GROUP BY region) SELECT per.region, per.total FROM per WHERE per.total = (SELECT max(total) FROM per)");
        aliceStreamTable("visible_regions", "SELECT o.id, r.code FROM orders o JOIN regions r ON r.code = o.region");
        aliceStreamTable("paid", "SELECT o.id, s.amount FROM orders o JOIN salaries s ON s.region = o.region");

        try (RefreshEngine engine = new RefreshEngine(asEngine, new EngineSettings(1000, 4, 3), new Listeners(), System::nanoTime, 1000)) {
            exec(asAlice, "INSERT INTO orders VALUES (21, 'north', 21), (22, 'south', 22)", "UPDATE orders SET amount = amount + 1 WHERE id <= 4");
            tick(engine);
            exec(asAlice, "DELETE FROM orders WHERE id IN (2, 3)");
            tick(engine);
        }
        // alice's own table: maintained differentially, computed as alice
        for (String st : List.of("order_sums", "order_rows", "top_region")) {
            // the status too: a refresh that failed is recorded with the action it attempted
            assertEquals("DIFFERENTIAL COMPLETED",
                    one(asEngine, "SELECT action || ' ' || status FROM pgtrickle.get_refresh_history('" + st + "', 1)"), st);
            assertEquals("0", one(asAlice, difference(st)), st);
        }
        assertEquals(alice, one(asEngine, "SELECT proowner::regrole::text FROM pg_proc WHERE proname = 'pgt_'"
                + " || (SELECT pgt_id FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'order_sums') || '_refresh'"));
        // row-level security applies to alice: only the north orders, recomputed as her, never from
        // the change buffers (which hold the south rows too)
        assertEquals("0", one(asAlice, difference("visible_regions")));
        assertEquals("[north]", strings(asAlice, "SELECT DISTINCT code FROM visible_regions").toString());
        assertEquals("FULL COMPLETED",
                one(asEngine, "SELECT action || ' ' || status FROM pgtrickle.get_refresh_history('visible_regions', 1)"));
        // a source alice may not read: every refresh fails, saying so, and nothing was materialised
        String error = one(asEngine, "SELECT last_error_message FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'paid'");
        assertTrue(error != null && error.contains("permission denied for table salaries"), error);
        assertEquals("0", one(asEngine, "SELECT count(*) FROM pgtrickle.pgt_refresh_history h JOIN pgtrickle.pgt_stream_tables s"
                + " USING (pgt_id) WHERE s.pgt_name = 'paid' AND h.status = 'COMPLETED'"));
        assertEquals("0", one(asEngine, "SELECT count(*) FROM paid"));

        // a source whose capture the engine's role cannot complete is refused, not half-captured
        try (Connection c = asEngine.getConnection(); Statement s = c.createStatement()) {
            SQLException e = org.junit.jupiter.api.Assertions.assertThrows(SQLException.class,
                    () -> s.execute("SELECT pgtrickle.create_stream_table('audited', 'SELECT id FROM audit')"));
            assertEquals("42501", e.getSQLState(), e.getMessage());
            assertTrue(e.getMessage().contains("cannot capture public.audit completely"), e.getMessage());
        }
        assertEquals("0", one(asEngine, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.audit'::regclass"));
    }

    private static String difference(String st) {
        String query = switch (st) {
            case "order_sums" -> "SELECT region, sum(amount) AS total, count(*) AS n FROM orders GROUP BY region";
            case "order_rows" -> "SELECT o.id, o.region, o.amount FROM orders o WHERE o.amount > 5";
            case "top_region" -> "WITH per AS (SELECT region, sum(amount) AS total FROM orders GROUP BY region) SELECT per.region, per.total FROM per WHERE per.total = (SELECT max(total) FROM per)";
            default -> "SELECT o.id, r.code FROM orders o JOIN regions r ON r.code = o.region";
        };
        return "SELECT count(*) FROM ((TABLE " + st + " EXCEPT ALL (" + query + ")) UNION ALL ((" + query + ") EXCEPT ALL TABLE " + st + ")) d";
    }

    /** Twice: a tick starts at most as many refreshes as the engine has workers (4), and there are five stream tables. */
    private static void tick(RefreshEngine engine) throws Exception {
        for (int i = 0; i < 2; i++) {
            for (CompletableFuture<RefreshEngine.Outcome> f : engine.tick()) {
                f.get(60, TimeUnit.SECONDS);
            }
        }
    }

    private static void exec(DataSource ds, String... sql) throws SQLException {
        try (Connection c = ds.getConnection(); Statement s = c.createStatement()) {
            for (String q : sql) {
                s.execute(q);
            }
        }
    }

    private static String one(DataSource ds, String sql) throws SQLException {
        List<String> rows = strings(ds, sql);
        return rows.isEmpty() ? null : rows.get(0);
    }

    private static List<String> strings(DataSource ds, String sql) throws SQLException {
        List<String> out = new ArrayList<>();
        try (Connection c = ds.getConnection(); Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
            while (rs.next()) {
                out.add(rs.getString(1));
            }
        }
        return out;
    }
}
