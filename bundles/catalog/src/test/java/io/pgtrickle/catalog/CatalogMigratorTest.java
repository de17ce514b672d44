package io.pgtrickle.catalog;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pgtrickle.testing.SchemaSignature;
import io.pgtrickle.testing.TestDatabase;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class CatalogMigratorTest {

    private static final String LATEST = "0.33.0";
    /** The newest step of the release: each bundle owns its database part (issue 12). */
    private static final String LATEST_STEP = "0.33.0.2";

    private final List<TestDatabase.Database> databases = new ArrayList<>();
    private TestDatabase.Database db;

    @BeforeEach
    void newDatabase() {
        db = database("catalog");
    }

    @AfterEach
    void dropDatabases() {
        databases.forEach(TestDatabase.Database::drop);
    }

    private TestDatabase.Database database(String prefix) {
        TestDatabase.Database d = TestDatabase.get().createDatabase(prefix);
        databases.add(d);
        return d;
    }

    @Test
    void freshInstallAppliesEveryShippedMigrationInOrder() throws SQLException {
        try (Connection c = db.connect()) {
            CatalogMigrator.Result r = new CatalogMigrator().migrate(c);
            assertEquals(List.of("0.31.0", "0.32.0", "0.33.0", "0.33.0.1", "0.33.0.2"), r.applied());
            assertEquals(LATEST, r.releaseVersion());
            assertEquals(List.of("0.31.0", "0.32.0", "0.33.0", "0.33.0.1", "0.33.0.2"), strings(c, "SELECT version FROM pgtrickle.pgt_schema_version ORDER BY applied_at, version"));
            assertEquals(List.of("pgt_change_tracking", "pgt_dead_letters", "pgt_dependencies", "pgt_evolutions", "pgt_outbox", "pgt_refresh_history",
                    "pgt_schema_script", "pgt_schema_unit", "pgt_schema_version", "pgt_sinks", "pgt_stream_tables", "pgt_subscriptions"),
                    strings(c, "SELECT relname FROM pg_class WHERE relnamespace = 'pgtrickle'::regnamespace AND relkind = 'r' ORDER BY 1"));
            assertEquals(List.of("pgtrickle_changes"), strings(c, "SELECT nspname FROM pg_namespace WHERE nspname = 'pgtrickle_changes'"));
        }
    }

    @Test
    void secondRunFindsNothingToDo() throws SQLException {
        try (Connection c = db.connect()) {
            new CatalogMigrator().migrate(c);
            CatalogMigrator.Result again = new CatalogMigrator().migrate(c);
            assertEquals(List.of(), again.applied());
            assertEquals(LATEST_STEP, again.migrationVersion());
        }
    }

    @Test
    void upgradeFrom0310KeepsRowsAndMatchesAFreshInstall() throws SQLException {
        upgradeKeepsRowsAndMatchesFreshInstall("0.31.0");
    }

    @Test
    void upgradeFrom0320KeepsRowsAndMatchesAFreshInstall() throws SQLException {
        upgradeKeepsRowsAndMatchesFreshInstall("0.32.0");
    }

    @Test
    void upgradeFrom0330KeepsRowsAndMatchesAFreshInstall() throws SQLException {
        upgradeKeepsRowsAndMatchesFreshInstall("0.33.0");
    }

    /**
     * A source captured by 0.33.0 (a partitioned table, one partition holding rows, a column with a
     * collation of its own) ends with the capture a fresh install sets up: triggers on every member,
     * with their enablement, and buffer columns with the source's collations. Its reader recomputes
     * once, since direct writes to the partition were never captured. A reader of a table with ONLY
     * (which has an inheritance child) becomes FULL, as a fresh create makes it.
     */
    @Test
    void upgradeFrom0330BringsExistingCapturesInLineWithAFreshInstall() throws SQLException {
        String[] setUp = {
            "CREATE TABLE public.measures (id int, name text COLLATE \"C\", v int) PARTITION BY RANGE (id)",
            "CREATE TABLE public.measures_low PARTITION OF public.measures FOR VALUES FROM (0) TO (100)",
            "INSERT INTO public.measures VALUES (1, 'a', 1)",
            "SELECT pgtrickle.create_stream_table('public.named_measures', 'SELECT id, name, v FROM public.measures WHERE name > ''B''', 'calculated', 'DIFFERENTIAL')",
            "CREATE TABLE public.invoices (id int, amount int)",
            "CREATE TABLE public.old_invoices () INHERITS (public.invoices)",
            "SELECT pgtrickle.create_stream_table('public.own_invoices', 'SELECT id, amount FROM ONLY public.invoices', 'calculated')",
        };
        String modes = "SELECT concat_ws('|', s.pgt_name, s.refresh_mode, s.refresh_mode_reason, d.source_type) FROM pgtrickle.pgt_stream_tables s"
                + " JOIN pgtrickle.pgt_dependencies d USING (pgt_id) ORDER BY s.pgt_name";
        String capture = "SELECT format('%s %s', pg_get_triggerdef(t.oid), t.tgenabled) FROM pg_trigger t"
                + " WHERE t.tgrelid IN ('public.measures'::regclass, 'public.measures_low'::regclass) AND NOT t.tgisinternal"
                + " UNION ALL SELECT format('%s %s %s', a.attname, format_type(a.atttypid, a.atttypmod), a.attcollation::regcollation)"
                + " FROM pg_attribute a WHERE a.attrelid = pgtrickle.change_buffer('public.measures') AND a.attnum > 0 AND NOT a.attisdropped"
                + " ORDER BY 1";
        List<String> upgradedCapture;
        List<String> upgradedModes;
        try (Connection c = db.connect(); Statement s = c.createStatement()) {
            new CatalogMigrator().migrate(c, MigrationVersion.parse("0.33.0"));
            for (String sql : setUp) {
                s.execute(sql);
            }
            new CatalogMigrator().migrate(c);
            upgradedCapture = strings(c, capture);
            upgradedModes = strings(c, modes);
            assertEquals(List.of("true", "true"), strings(c, "SELECT needs_reinit::text FROM pgtrickle.pgt_stream_tables"));
        }
        TestDatabase.Database fresh = database("fresh");
        try (Connection upgraded = db.connect(); Connection installed = fresh.connect(); Statement s = installed.createStatement()) {
            new CatalogMigrator().migrate(installed);
            for (String sql : setUp) {
                s.execute(sql);
            }
            assertEquals(strings(installed, capture), upgradedCapture);
            // a stream table reading a table with ONLY is no longer maintained from its capture
            assertEquals(strings(installed, modes), upgradedModes);
            assertEquals("own_invoices|FULL|the query reads relations whose changes are not captured (only table invoices)|ONLY TABLE",
                    upgradedModes.get(1));
            assertTrue(upgradedCapture.contains("name text \"C\""), upgradedCapture.toString());
            assertEquals(SchemaSignature.of(installed), SchemaSignature.of(upgraded));
        }
    }

    private void upgradeKeepsRowsAndMatchesFreshInstall(String from) throws SQLException {
        List<String> before;
        try (Connection c = db.connect(); Statement s = c.createStatement()) {
            new CatalogMigrator().migrate(c, MigrationVersion.parse(from));
            assertEquals(from, strings(c, "SELECT max(version) FROM pgtrickle.pgt_schema_version").get(0));
            s.execute("CREATE TABLE public.orders (id int PRIMARY KEY, amount numeric)");
            s.execute("CREATE TABLE public.order_totals (total numeric)");
            s.execute("INSERT INTO pgtrickle.pgt_stream_tables (pgt_relid, pgt_name, pgt_schema, defining_query, schedule, status, is_populated)"
                    + " VALUES ('public.order_totals'::regclass, 'order_totals', 'public', 'SELECT sum(amount) AS total FROM orders', '1s', 'ACTIVE', true)");
            s.execute("INSERT INTO pgtrickle.pgt_dependencies (pgt_id, source_relid, columns_used)"
                    + " SELECT pgt_id, 'public.orders'::regclass, '{amount}' FROM pgtrickle.pgt_stream_tables");
            s.execute("INSERT INTO pgtrickle.pgt_change_tracking (source_relid, tracked_by_pgt_ids)"
                    + " SELECT 'public.orders'::regclass, array_agg(pgt_id) FROM pgtrickle.pgt_stream_tables");
            s.execute("INSERT INTO pgtrickle.pgt_refresh_history (pgt_id, action, rows_inserted, rows_deleted, status, initiated_by)"
                    + " SELECT pgt_id, 'FULL', 1, 0, 'COMPLETED', 'INITIAL' FROM pgtrickle.pgt_stream_tables");
            if (!from.equals("0.31.0")) {
                // from 0.32.0 on, the engine records the stable name itself when it adds a source
                s.execute("UPDATE pgtrickle.pgt_dependencies SET source_stable_name = pgtrickle.source_stable_name(source_relid::regclass)");
                s.execute("UPDATE pgtrickle.pgt_change_tracking SET source_stable_name = pgtrickle.source_stable_name(source_relid::regclass)");
            }
            before = strings(c, "SELECT row(pgt_id, pgt_relid::regclass, pgt_name, defining_query, schedule, status, is_populated)::text FROM pgtrickle.pgt_stream_tables"
                    + " UNION ALL SELECT row(pgt_id, source_relid::regclass, columns_used)::text FROM pgtrickle.pgt_dependencies"
                    + " UNION ALL SELECT row(refresh_id, pgt_id, action, rows_inserted, rows_deleted, status)::text FROM pgtrickle.pgt_refresh_history");

            CatalogMigrator.Result r = new CatalogMigrator().migrate(c);
            assertEquals(LATEST_STEP, r.migrationVersion());
            assertFalse(r.applied().contains(from));

            assertEquals(before, strings(c, "SELECT row(pgt_id, pgt_relid::regclass, pgt_name, defining_query, schedule, status, is_populated)::text FROM pgtrickle.pgt_stream_tables"
                    + " UNION ALL SELECT row(pgt_id, source_relid::regclass, columns_used)::text FROM pgtrickle.pgt_dependencies"
                    + " UNION ALL SELECT row(refresh_id, pgt_id, action, rows_inserted, rows_deleted, status)::text FROM pgtrickle.pgt_refresh_history"));
            // rows written before 0.33.0 are not in a shadow build
            assertEquals(List.of("false|null"), strings(c, "SELECT in_shadow_build || '|' || coalesce(shadow_table_name, 'null') FROM pgtrickle.pgt_stream_tables"));
            // the stable buffer name is filled in for sources that existed before 0.32.0
            String stable = strings(c, "SELECT pgtrickle.source_stable_name('public.orders')").get(0);
            assertEquals(16, stable.length());
            assertEquals(List.of(stable), strings(c, "SELECT source_stable_name FROM pgtrickle.pgt_dependencies"));
            assertEquals(List.of(stable), strings(c, "SELECT source_stable_name FROM pgtrickle.pgt_change_tracking"));
        }

        TestDatabase.Database fresh = database("fresh");
        try (Connection upgraded = db.connect(); Connection installed = fresh.connect()) {
            new CatalogMigrator().migrate(installed);
            assertEquals(SchemaSignature.of(installed), SchemaSignature.of(upgraded));
        }
    }

    @Test
    void schemaSignatureSeesADifferenceInAColumnDefault() throws SQLException {
        TestDatabase.Database other = database("other");
        try (Connection a = db.connect(); Connection b = other.connect(); Statement s = b.createStatement()) {
            new CatalogMigrator().migrate(a);
            new CatalogMigrator().migrate(b);
            assertEquals(SchemaSignature.of(a), SchemaSignature.of(b));
            s.execute("ALTER TABLE pgtrickle.pgt_stream_tables ALTER COLUMN consecutive_errors SET DEFAULT 1");
            assertFalse(SchemaSignature.of(a).equals(SchemaSignature.of(b)));
        }
    }

    @Test
    void concurrentMigratorsMigrateOnce() throws Exception {
        int migrators = 4;
        CyclicBarrier start = new CyclicBarrier(migrators);
        ExecutorService pool = Executors.newFixedThreadPool(migrators);
        try {
            List<Future<CatalogMigrator.Result>> results = new ArrayList<>();
            for (int i = 0; i < migrators; i++) {
                Callable<CatalogMigrator.Result> task = () -> {
                    try (Connection c = db.connect()) {
                        start.await(30, TimeUnit.SECONDS);
                        return new CatalogMigrator().migrate(c);
                    }
                };
                results.add(pool.submit(task));
            }
            List<String> appliedByAll = new ArrayList<>();
            for (Future<CatalogMigrator.Result> f : results) {
                CatalogMigrator.Result r = f.get(120, TimeUnit.SECONDS);
                assertEquals(LATEST_STEP, r.migrationVersion());
                appliedByAll.addAll(r.applied());
            }
            appliedByAll.sort(null);
            assertEquals(List.of("0.31.0", "0.32.0", "0.33.0", "0.33.0.1", "0.33.0.2"), appliedByAll);
        } finally {
            pool.shutdownNow();
        }
        try (Connection c = db.connect()) {
            assertEquals(List.of("5"), strings(c, "SELECT count(*) FROM pgtrickle.pgt_schema_version"));
        }
    }

    @Test
    void migrationWhoseTextChangedAfterItWasAppliedIsRefused() throws SQLException {
        List<Migration> shipped = Migration.shipped();
        try (Connection c = db.connect()) {
            CatalogMigrator.coreOnly(shipped).migrate(c);
            List<Migration> tampered = new ArrayList<>(shipped);
            Migration original = tampered.get(1);
            tampered.set(1, Migration.of(original.version().toString(), original.description(), original.sql() + "\nSELECT 1;\n"));
            List<String> signature = SchemaSignature.of(c);

            CatalogRefusedException e = assertThrows(CatalogRefusedException.class, () -> CatalogMigrator.coreOnly(tampered).migrate(c));
            assertTrue(e.getMessage().contains("0.32.0") && e.getMessage().contains("changed"), e.getMessage());
            assertEquals(signature, SchemaSignature.of(c));
        }
    }

    @Test
    void lineEndingsDoNotCountAsTampering() {
        assertEquals(Migration.checksum("a;\nb;\n"), Migration.checksum("a;\r\nb;\r\n"));
    }

    @Test
    void catalogNewerThanTheBundleIsRefusedNamingBothVersions() throws SQLException {
        try (Connection c = db.connect(); Statement s = c.createStatement()) {
            new CatalogMigrator().migrate(c);
            s.execute("INSERT INTO pgtrickle.pgt_schema_version (version, description, checksum, execution_ms) VALUES ('0.34.0', 'from the future', 'x', 0)");
            CatalogRefusedException e = assertThrows(CatalogRefusedException.class, () -> new CatalogMigrator().migrate(c));
            assertTrue(e.getMessage().contains("0.34.0") && e.getMessage().contains(LATEST) && e.getMessage().contains("downgrade"), e.getMessage());
        }
    }

    @Test
    void olderBundleRefusesCatalogMigratedByANewerOne() throws SQLException {
        try (Connection c = db.connect()) {
            new CatalogMigrator().migrate(c);
            List<Migration> older = Migration.shipped().subList(0, 2);
            CatalogRefusedException e = assertThrows(CatalogRefusedException.class, () -> CatalogMigrator.coreOnly(older).migrate(c));
            assertTrue(e.getMessage().contains("0.33.0") && e.getMessage().contains("0.32.0"), e.getMessage());
        }
    }

    @Test
    void failingMigrationIsRolledBackWholeAndNamed() throws SQLException {
        List<Migration> withBroken = new ArrayList<>(Migration.shipped());
        withBroken.add(Migration.of("0.33.0.90", "broken step",
                "CREATE TABLE pgtrickle.half_done (id int);\nALTER TABLE pgtrickle.no_such_table ADD COLUMN x int;\n"));
        try (Connection c = db.connect()) {
            SQLException e = assertThrows(SQLException.class, () -> CatalogMigrator.coreOnly(withBroken).migrate(c));
            assertTrue(e.getMessage().contains("0.33.0.90") && e.getMessage().contains("no_such_table"), e.getMessage());
            assertEquals(List.of(LATEST_STEP), strings(c, "SELECT max(version) FROM pgtrickle.pgt_schema_version"));
            assertEquals(List.of(), strings(c, "SELECT relname FROM pg_class WHERE relname = 'half_done'"));
            // the connection is usable and the lock released: a correct bundle still migrates
            assertEquals(List.of(), new CatalogMigrator().migrate(c).applied());
        }
    }

    @Test
    void stepWithinARelease() throws SQLException {
        List<Migration> withStep = new ArrayList<>(Migration.shipped());
        withStep.add(Migration.of("0.33.0.90", "a step", "CREATE TABLE pgtrickle.step_table (id int);"));
        try (Connection c = db.connect()) {
            CatalogMigrator.Result r = CatalogMigrator.coreOnly(withStep).migrate(c);
            assertEquals("0.33.0.90", r.migrationVersion());
            assertEquals("0.33.0", r.releaseVersion());
        }
    }

    @Test
    void foreignPgtrickleSchemaIsNotTouched() throws SQLException {
        try (Connection c = db.connect(); Statement s = c.createStatement()) {
            s.execute("CREATE SCHEMA pgtrickle");
            s.execute("CREATE TABLE pgtrickle.pgt_stream_tables (pgt_id bigint)");
            CatalogRefusedException e = assertThrows(CatalogRefusedException.class, () -> new CatalogMigrator().migrate(c));
            assertTrue(e.getMessage().contains("pgt_schema_version"), e.getMessage());
            assertNull(strings(c, "SELECT to_regclass('pgtrickle.pgt_schema_version')::text").get(0));
        }
    }

    @Test
    void changeBufferSchemaIsClosedToPublic() throws SQLException {
        try (Connection c = db.connect()) {
            new CatalogMigrator().migrate(c);
            assertEquals(List.of("false"), strings(c, "SELECT has_schema_privilege('public', 'pgtrickle_changes', 'USAGE')::text"));
        }
    }

    private static List<String> strings(Connection c, String sql) throws SQLException {
        List<String> out = new ArrayList<>();
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
            while (rs.next()) {
                out.add(rs.getString(1));
            }
        }
        return out;
    }
}
