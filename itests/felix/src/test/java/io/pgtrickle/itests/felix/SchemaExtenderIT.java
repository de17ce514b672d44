package io.pgtrickle.itests.felix;

import static io.pgtrickle.itests.felix.InFramework.SERVICE_TIMEOUT_MILLIS;
import static io.pgtrickle.itests.felix.InFramework.assertNoServiceFor;
import static io.pgtrickle.itests.felix.InFramework.awaitService;
import static io.pgtrickle.itests.felix.InFramework.exec;
import static io.pgtrickle.itests.felix.InFramework.query;
import static io.pgtrickle.itests.felix.UnitBundles.SCRIPT_TABLE;
import static io.pgtrickle.itests.felix.UnitBundles.UNIT_TABLE;
import static io.pgtrickle.itests.felix.UnitBundles.await;
import static io.pgtrickle.itests.felix.UnitBundles.awaitNoUnit;
import static io.pgtrickle.itests.felix.UnitBundles.awaitUnit;
import static io.pgtrickle.itests.felix.UnitBundles.serviceId;
import static io.pgtrickle.itests.felix.UnitBundles.unitFilter;
import static io.pgtrickle.itests.felix.UnitBundles.unitReference;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.ops4j.pax.exam.CoreOptions.options;

import io.pgtrickle.api.catalog.Catalog;
import io.pgtrickle.api.schema.SchemaUnit;
import io.pgtrickle.testing.TestDatabase;
import java.io.ByteArrayInputStream;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import javax.sql.DataSource;
import org.junit.Test;
import org.junit.runner.RunWith;
import org.ops4j.pax.exam.Configuration;
import org.ops4j.pax.exam.Option;
import org.ops4j.pax.exam.junit.PaxExam;
import org.ops4j.pax.exam.spi.reactors.ExamReactorStrategy;
import org.ops4j.pax.exam.spi.reactors.PerClass;
import org.osgi.framework.Bundle;
import org.osgi.framework.ServiceReference;
import org.osgi.framework.Version;

/**
 * The catalog bundle as the schema extender, with bundles made at test time: a unit's versioned
 * migration and repeatable code are applied and its SchemaUnit registered; a unit whose code fails
 * is FAILED with the error and gets no SchemaUnit, without disturbing another, until an update fixes
 * it; stopping a unit withdraws its SchemaUnit and leaves its database part; a unit that requires
 * another waits for it and is applied after it. Only the platform and the catalog run here: the
 * units are all the test's own.
 */
@RunWith(PaxExam.class)
@ExamReactorStrategy(PerClass.class)
public class SchemaExtenderIT {

    private static final String GAUGES = "com.example.gauges";
    private static final String BROKEN = "com.example.broken";
    private static final String NEEDY = "com.example.needy";
    private static final String ABSENT = "com.example.absent";

    @Configuration
    public Option[] configuration() {
        TestDatabase.Database db = FelixOptions.database("felix_units");
        return options(FelixOptions.platform(), FelixOptions.databaseProperties(db), FelixOptions.datasourceConfiguration(db).asOption());
    }

    @Test
    public void unitsAreAppliedFailAloneRecoverByUpdateAndKeepTheirDatabasePartWhenUninstalled() throws Exception {
        DataSource ds = awaitService(Catalog.class, null, SERVICE_TIMEOUT_MILLIS).dataSource();
        List<Bundle> installed = new ArrayList<>();
        try {
            // (a) a unit with a versioned migration and a repeatable script
            byte[] gaugesJar = UnitBundles.unit(GAUGES, "1.0.0", "db", Map.of(
                    "db/schema/V0.1.0__gauges.sql", "CREATE TABLE pgtrickle.it_gauges (id int PRIMARY KEY, reading numeric NOT NULL);\n",
                    "db/code/R__10_reading.sql", "CREATE OR REPLACE FUNCTION pgtrickle.it_reading() RETURNS integer\n"
                            + "    LANGUAGE sql IMMUTABLE AS $fn$ SELECT 42 $fn$;\n"));
            Bundle gauges = UnitBundles.installAndStart(GAUGES, gaugesJar);
            installed.add(gauges);
            ServiceReference<SchemaUnit> gaugesUnit = awaitUnit(GAUGES);
            assertEquals(new Version(0, 1, 0), gaugesUnit.getProperty(SchemaUnit.VERSION_PROPERTY));
            assertEquals("1.0.0", gaugesUnit.getProperty(SchemaUnit.BUNDLE_VERSION_PROPERTY));
            SchemaUnit applied = InFramework.context().getService(gaugesUnit);
            assertEquals(GAUGES, applied.unit());
            assertEquals("0.1.0", applied.schemaVersion());
            InFramework.context().ungetService(gaugesUnit);
            assertEquals("READY|0.1.0|1.0.0|", unitRow(ds, GAUGES));
            assertEquals("V0.1.0:V:0.1.0:1.0.0,R__10_reading.sql:R::1.0.0", scripts(ds, GAUGES));
            assertEquals("pgtrickle.it_gauges", query(ds, "SELECT to_regclass('pgtrickle.it_gauges')::text"));
            assertEquals("42", query(ds, "SELECT pgtrickle.it_reading()"));

            // (b) a unit whose code fails: FAILED with the error, no SchemaUnit, its other code rolled
            // back with it; the first unit stays READY with the same SchemaUnit
            Bundle broken = UnitBundles.installAndStart(BROKEN, brokenUnit("1.0.0",
                    "CREATE OR REPLACE FUNCTION pgtrickle.it_valve_count() RETURNS bigint\n"
                            + "    LANGUAGE sql STABLE AS $fn$ SELECT count(*) FROM pgtrickle.it_missing_valves $fn$;\n"));
            installed.add(broken);
            await(BROKEN + " recorded FAILED in " + UNIT_TABLE, () -> unitRow(ds, BROKEN) != null && unitRow(ds, BROKEN).startsWith("FAILED|"));
            String message = query(ds, "SELECT message FROM " + UNIT_TABLE + " WHERE unit = '" + BROKEN + "'");
            assertTrue("the error names the missing table and the script: " + message,
                    message.contains("it_missing_valves") && message.contains("R__20_valve_count.sql"));
            assertNoServiceFor(SchemaUnit.class, unitFilter(BROKEN), 500);
            assertEquals("the broken unit's bundle itself is ACTIVE: only its database part failed", Bundle.ACTIVE, broken.getState());
            // its versioned migration went in (its own transaction), none of its code did: R scripts are one transaction
            assertEquals("pgtrickle.it_valves", query(ds, "SELECT to_regclass('pgtrickle.it_valves')::text"));
            assertEquals("false", query(ds, "SELECT (to_regprocedure('pgtrickle.it_valve_names()') IS NOT NULL)::text"));
            assertEquals("V0.1.0:V:0.1.0:1.0.0", scripts(ds, BROKEN));
            assertEquals("READY|0.1.0|1.0.0|", unitRow(ds, GAUGES));
            ServiceReference<SchemaUnit> gaugesNow = unitReference(GAUGES);
            assertNotNull("the first unit keeps its SchemaUnit", gaugesNow);
            assertEquals("the first unit's SchemaUnit is the same registration", serviceId(gaugesUnit), serviceId(gaugesNow));

            // (c) updating the failing bundle with fixed code applies it and registers its SchemaUnit
            broken.update(new ByteArrayInputStream(brokenUnit("1.0.1",
                    "CREATE OR REPLACE FUNCTION pgtrickle.it_valve_count() RETURNS bigint\n"
                            + "    LANGUAGE sql STABLE AS $fn$ SELECT count(*) FROM pgtrickle.it_valves $fn$;\n")));
            ServiceReference<SchemaUnit> brokenUnit = awaitUnit(BROKEN);
            assertEquals(new Version(0, 1, 0), brokenUnit.getProperty(SchemaUnit.VERSION_PROPERTY));
            assertEquals("1.0.1", brokenUnit.getProperty(SchemaUnit.BUNDLE_VERSION_PROPERTY));
            assertEquals("READY|0.1.0|1.0.1|", unitRow(ds, BROKEN));
            assertEquals("V0.1.0:V:0.1.0:1.0.0,R__10_valve_names.sql:R::1.0.1,R__20_valve_count.sql:R::1.0.1", scripts(ds, BROKEN));
            assertEquals("2", query(ds, "SELECT pgtrickle.it_valve_count()"));
            assertEquals("inlet,outlet", query(ds, "SELECT pgtrickle.it_valve_names()"));

            // (d) a stopped unit is still resolved: its part stays in place, and so does its SchemaUnit
            exec(ds, "INSERT INTO pgtrickle.it_gauges VALUES (1, 3.5)");
            gauges.stop();
            Thread.sleep(500);
            assertEquals("the same registration while stopped", serviceId(gaugesUnit), serviceId(unitReference(GAUGES)));
            // uninstalled, it withdraws its SchemaUnit; its table, data and function stay
            gauges.uninstall();
            installed.remove(gauges);
            awaitNoUnit(GAUGES);
            assertNotNull("the other unit keeps its SchemaUnit", unitReference(BROKEN));
            assertEquals("pgtrickle.it_gauges", query(ds, "SELECT to_regclass('pgtrickle.it_gauges')::text"));
            assertEquals("3.5", query(ds, "SELECT reading FROM pgtrickle.it_gauges WHERE id = 1"));
            assertEquals("42", query(ds, "SELECT pgtrickle.it_reading()"));
            assertEquals("V0.1.0:V:0.1.0:1.0.0,R__10_reading.sql:R::1.0.0", scripts(ds, GAUGES));
            // installed again: in place already, so nothing is applied, and its SchemaUnit comes back
            String appliedAt = query(ds, "SELECT string_agg(applied_at::text, ',' ORDER BY script) FROM " + SCRIPT_TABLE
                    + " WHERE unit = '" + GAUGES + "'");
            installed.add(UnitBundles.installAndStart(GAUGES, gaugesJar));
            ServiceReference<SchemaUnit> again = awaitUnit(GAUGES);
            assertTrue("a new registration", serviceId(again) > serviceId(gaugesUnit));
            assertEquals("nothing re-applied for an unchanged unit", appliedAt, query(ds, "SELECT string_agg(applied_at::text, ','"
                    + " ORDER BY script) FROM " + SCRIPT_TABLE + " WHERE unit = '" + GAUGES + "'"));
            assertEquals("READY|0.1.0|1.0.0|", unitRow(ds, GAUGES));
        } finally {
            for (Bundle b : installed) {
                b.uninstall();
            }
        }
    }

    @Test
    public void aUnitWaitsForTheUnitItRequiresAndIsAppliedAfterIt() throws Exception {
        DataSource ds = awaitService(Catalog.class, null, SERVICE_TIMEOUT_MILLIS).dataSource();
        List<Bundle> installed = new ArrayList<>();
        try {
            // its migration references a table of the unit it requires: applied first, it would fail
            installed.add(UnitBundles.installAndStart(NEEDY, UnitBundles.unit(NEEDY, "1.0.0", "db;requires:=\"" + ABSENT + "\"", Map.of(
                    "db/schema/V0.1.0__needy.sql", "CREATE TABLE pgtrickle.it_needy (id int PRIMARY KEY,"
                            + " absent_id int NOT NULL REFERENCES pgtrickle.it_absent (id));\n",
                    "db/code/R__10_needy.sql", "CREATE OR REPLACE FUNCTION pgtrickle.it_needy_count() RETURNS bigint\n"
                            + "    LANGUAGE sql STABLE AS $fn$ SELECT count(*) FROM pgtrickle.it_needy JOIN pgtrickle.it_absent a ON a.id = absent_id $fn$;\n"))));
            // bounded: it must not be applied (nor fail) while what it requires is missing
            assertNoServiceFor(SchemaUnit.class, unitFilter(NEEDY), 2000);
            String waiting = unitRow(ds, NEEDY);
            assertTrue("the waiting unit is PENDING, saying on what: " + waiting,
                    waiting != null && waiting.startsWith("PENDING|") && waiting.contains("waits for the database part of " + ABSENT));
            assertNull("nothing of the waiting unit applied", query(ds, "SELECT to_regclass('pgtrickle.it_needy')::text"));
            assertEquals("", scripts(ds, NEEDY));

            installed.add(UnitBundles.installAndStart(ABSENT, UnitBundles.unit(ABSENT, "2.0.0", "db", Map.of(
                    "db/schema/V1.0.0__absent.sql", "CREATE TABLE pgtrickle.it_absent (id int PRIMARY KEY);\n"
                            + "INSERT INTO pgtrickle.it_absent VALUES (1), (2);\n"))));
            ServiceReference<SchemaUnit> absent = awaitUnit(ABSENT);
            ServiceReference<SchemaUnit> needy = awaitUnit(NEEDY);
            assertEquals(new Version(1, 0, 0), absent.getProperty(SchemaUnit.VERSION_PROPERTY));
            assertEquals(new Version(0, 1, 0), needy.getProperty(SchemaUnit.VERSION_PROPERTY));
            assertTrue("the required unit is registered first", serviceId(absent) < serviceId(needy));
            assertEquals("READY|1.0.0|2.0.0|", unitRow(ds, ABSENT));
            assertEquals("READY|0.1.0|1.0.0|", unitRow(ds, NEEDY));
            assertEquals("the required unit's migration ran first", "true", query(ds, "SELECT ((SELECT applied_at FROM " + SCRIPT_TABLE
                    + " WHERE unit = '" + ABSENT + "' AND kind = 'V') < (SELECT applied_at FROM " + SCRIPT_TABLE
                    + " WHERE unit = '" + NEEDY + "' AND kind = 'V'))::text"));
            exec(ds, "INSERT INTO pgtrickle.it_needy VALUES (1, 2)");
            assertEquals("1", query(ds, "SELECT pgtrickle.it_needy_count()"));
        } finally {
            for (Bundle b : installed) {
                b.uninstall();
            }
        }
    }

    /** The second unit: a table, a function that works, and {@code valveCount}, whose text the test decides. */
    private static byte[] brokenUnit(String version, String valveCount) {
        return UnitBundles.unit(BROKEN, version, "db", Map.of(
                "db/schema/V0.1.0__valves.sql", "CREATE TABLE pgtrickle.it_valves (name text PRIMARY KEY);\n"
                        + "INSERT INTO pgtrickle.it_valves VALUES ('inlet'), ('outlet');\n",
                "db/code/R__10_valve_names.sql", "CREATE OR REPLACE FUNCTION pgtrickle.it_valve_names() RETURNS text\n"
                        + "    LANGUAGE sql STABLE AS $fn$ SELECT string_agg(name, ',' ORDER BY name) FROM pgtrickle.it_valves $fn$;\n",
                "db/code/R__20_valve_count.sql", valveCount));
    }

    /** state|schema_version|bundle_version|message-or-empty of a unit; null when it has no row. */
    private static String unitRow(DataSource ds, String unit) throws SQLException {
        return query(ds, "SELECT state || '|' || coalesce(schema_version, '') || '|' || bundle_version || '|'"
                + " || CASE WHEN state = 'FAILED' THEN '...' ELSE coalesce(message, '') END FROM " + UNIT_TABLE + " WHERE unit = '" + unit + "'");
    }

    /** script:kind:version:applied_by of each script recorded for a unit, by script name; empty when none. */
    private static String scripts(DataSource ds, String unit) throws SQLException {
        return query(ds, "SELECT coalesce(string_agg(script || ':' || kind || ':' || coalesce(version, '') || ':' || applied_by, ','"
                + " ORDER BY kind DESC, script), '') FROM " + SCRIPT_TABLE + " WHERE unit = '" + unit + "'");
    }
}
