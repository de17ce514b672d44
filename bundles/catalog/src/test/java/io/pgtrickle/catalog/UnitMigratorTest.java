package io.pgtrickle.catalog;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pgtrickle.testing.TestDatabase;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * One unit's database part against a real database: versioned migrations once, repeatable code
 * whenever its text changes, never put back by an older bundle, and a failure that stays with its
 * unit. The units here are made up; the real ones are applied by every bundle's own tests.
 */
class UnitMigratorTest {

    private TestDatabase.Database db;
    private Connection c;
    private UnitScripts core;

    @BeforeEach
    void migrateCore() throws SQLException {
        db = TestDatabase.get().createDatabase("units");
        c = db.connect();
        core = new UnitScripts(UnitScripts.CORE, "0.33.0", List.of(), Migration.shipped(), List.of());
        new CatalogMigrator(List.of(core)).migrate(c);
    }

    @AfterEach
    void drop() throws SQLException {
        c.close();
        db.drop();
    }

    private static UnitScripts unit(String version, Map<String, String> schema, Map<String, String> code) {
        List<UnitScripts.Repeatable> repeatables = new ArrayList<>();
        code.entrySet().stream().sorted(Map.Entry.comparingByKey()).forEach(e -> repeatables.add(UnitScripts.Repeatable.of(e.getKey(), e.getValue())));
        return new UnitScripts("com.example.gauges", version, List.of(), UnitScripts.migrations("com.example.gauges", schema), repeatables);
    }

    private UnitMigrator.Result apply(UnitScripts unit) throws SQLException {
        return new CatalogMigrator(List.of(core, unit)).migrateUnit(c, unit);
    }

    private static final String TABLE = "CREATE TABLE pgtrickle.gauges (id int PRIMARY KEY, v int);\n";

    private static String reading(int answer) {
        return "CREATE OR REPLACE FUNCTION pgtrickle.gauge_reading() RETURNS int LANGUAGE sql AS $$ SELECT " + answer + " $$;\n";
    }

    @Test
    void versionedOnceThenRepeatableWheneverItsTextChanges() throws SQLException {
        UnitMigrator.Result first = apply(unit("1.0.0", Map.of("V1.0.0__gauges.sql", TABLE), Map.of("R__10_reading.sql", reading(1))));
        assertEquals(List.of("V1.0.0", "R__10_reading.sql"), first.applied());
        assertEquals("1.0.0", first.schemaVersion());
        assertEquals("1", string("SELECT pgtrickle.gauge_reading()"));
        assertEquals("READY|1.0.0|1.0.0", string("SELECT concat_ws('|', state, schema_version, bundle_version) FROM pgtrickle.pgt_schema_unit WHERE unit = 'com.example.gauges'"));

        assertEquals(List.of(), apply(unit("1.0.0", Map.of("V1.0.0__gauges.sql", TABLE), Map.of("R__10_reading.sql", reading(1)))).applied(),
                "nothing changed, nothing runs");

        exec("INSERT INTO pgtrickle.gauges VALUES (1, 10)");
        UnitMigrator.Result edited = apply(unit("1.0.1", Map.of("V1.0.0__gauges.sql", TABLE), Map.of("R__10_reading.sql", reading(2))));
        assertEquals(List.of("R__10_reading.sql"), edited.applied(), "only the changed code runs again; the table keeps its rows");
        assertEquals("2", string("SELECT pgtrickle.gauge_reading()"));
        assertEquals("10", string("SELECT v FROM pgtrickle.gauges"));
        assertEquals("1.0.1", string("SELECT applied_by FROM pgtrickle.pgt_schema_script WHERE script = 'R__10_reading.sql'"));
    }

    @Test
    void anOlderBundleKeepsTheCodeANewerOneApplied() throws SQLException {
        apply(unit("1.1.0", Map.of(), Map.of("R__10_reading.sql", reading(11))));
        UnitMigrator.Result older = apply(unit("1.0.0", Map.of(), Map.of("R__10_reading.sql", reading(10))));
        assertEquals(List.of(), older.applied());
        assertEquals(List.of("R__10_reading.sql (applied by 1.1.0)"), older.skipped());
        assertEquals("11", string("SELECT pgtrickle.gauge_reading()"));
        assertTrue(string("SELECT message FROM pgtrickle.pgt_schema_unit WHERE unit = 'com.example.gauges'").contains("kept newer code"));
    }

    @Test
    void aFailingScriptLeavesItsUnitFailedWithTheErrorAndThePreviousCodeInPlace() throws SQLException {
        apply(unit("1.0.0", Map.of(), Map.of("R__10_reading.sql", reading(1), "R__20_more.sql", "SELECT 1;\n")));
        UnitScripts broken = unit("1.0.1", Map.of(), Map.of("R__10_reading.sql", reading(2),
                "R__20_more.sql", "CREATE OR REPLACE FUNCTION pgtrickle.gauge_more() RETURNS int LANGUAGE sql AS $$ SELECT v FROM pgtrickle.no_such_table $$;\n"));
        SQLException e = assertThrows(SQLException.class, () -> apply(broken));
        assertTrue(e.getMessage().contains("R__20_more.sql") && e.getMessage().contains("no_such_table"), e.getMessage());
        assertEquals("1", string("SELECT pgtrickle.gauge_reading()"), "the unit's code changes together or not at all");
        assertEquals("FAILED", string("SELECT state FROM pgtrickle.pgt_schema_unit WHERE unit = 'com.example.gauges'"));
        assertTrue(string("SELECT message FROM pgtrickle.pgt_schema_unit WHERE unit = 'com.example.gauges'").contains("no_such_table"));

        // the fixed bundle simply runs: the failed text was never recorded as applied
        UnitMigrator.Result fixed = apply(unit("1.0.2", Map.of(), Map.of("R__10_reading.sql", reading(2), "R__20_more.sql", "SELECT 2;\n")));
        assertEquals(List.of("R__10_reading.sql", "R__20_more.sql"), fixed.applied());
        assertEquals("READY", string("SELECT state FROM pgtrickle.pgt_schema_unit WHERE unit = 'com.example.gauges'"));
        assertEquals("READY", string("SELECT state FROM pgtrickle.pgt_schema_unit WHERE unit = 'io.pgtrickle.catalog'"));
    }

    @Test
    void anEditedVersionedMigrationAndANewerDatabaseAreRefused() throws SQLException {
        apply(unit("1.0.0", Map.of("V1.0.0__gauges.sql", TABLE), Map.of()));
        CatalogRefusedException edited = assertThrows(CatalogRefusedException.class,
                () -> apply(unit("1.0.0", Map.of("V1.0.0__gauges.sql", TABLE + "-- edited\n"), Map.of())));
        assertTrue(edited.getMessage().contains("1.0.0") && edited.getMessage().contains("changed"), edited.getMessage());

        apply(unit("1.1.0", Map.of("V1.0.0__gauges.sql", TABLE, "V1.1.0__more.sql", "ALTER TABLE pgtrickle.gauges ADD COLUMN w int;\n"), Map.of()));
        CatalogRefusedException newer = assertThrows(CatalogRefusedException.class,
                () -> apply(unit("1.0.0", Map.of("V1.0.0__gauges.sql", TABLE), Map.of())));
        assertTrue(newer.getMessage().contains("1.1.0") && newer.getMessage().contains("downgrade"), newer.getMessage());
        assertEquals("FAILED", string("SELECT state FROM pgtrickle.pgt_schema_unit WHERE unit = 'com.example.gauges'"));
    }

    @Test
    void aUnitWaitsForTheCoreCatalogItNeeds() throws SQLException {
        TestDatabase.Database empty = TestDatabase.get().createDatabase("units_empty");
        try (Connection e = empty.connect()) {
            UnitScripts gauges = unit("1.0.0", Map.of("V1.0.0__gauges.sql", TABLE), Map.of());
            SQLException refused = assertThrows(SQLException.class, () -> new CatalogMigrator(List.of(core, gauges)).migrateUnit(e, gauges));
            assertTrue(refused.getMessage().contains("0.33.0.2") || refused.getMessage().contains("pgt_schema_version"), refused.getMessage());
        } finally {
            empty.drop();
        }
    }

    @Test
    void scriptsOfAVersionJoinInNameOrderAndBadNamesAreRefused() {
        List<Migration> m = UnitScripts.migrations("u", Map.of("V1.0.0__2_b.sql", "b;\n", "V1.0.0__1_a.sql", "a;\n", "V0.9.0__x.sql", "x;\n"));
        assertEquals(List.of("0.9.0", "1.0.0"), m.stream().map(x -> x.version().toString()).toList());
        assertEquals("a;\nb;\n", m.get(1).sql());
        assertThrows(IllegalArgumentException.class, () -> UnitScripts.migrations("u", Map.of("V1__x.sql", "")));
        assertThrows(IllegalArgumentException.class, () -> UnitScripts.load("u", "1.0.0", "db", folder -> folder.equals("code") ? Map.of("functions.sql", "") : Map.of()));
        assertEquals(List.of("io.pgtrickle.refresh", "b"), UnitScripts.requires("db;requires:=\"io.pgtrickle.refresh, b\""));
        assertEquals("db", UnitScripts.root("db;requires:=\"io.pgtrickle.refresh\""));
        assertThrows(IllegalArgumentException.class, () -> UnitScripts.root("../etc"));
    }

    private String string(String sql) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
            rs.next();
            return rs.getString(1);
        }
    }

    private void exec(String sql) throws SQLException {
        try (Statement s = c.createStatement()) {
            s.execute(sql);
        }
    }
}
