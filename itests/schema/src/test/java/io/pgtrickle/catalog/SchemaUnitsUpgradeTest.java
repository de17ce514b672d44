package io.pgtrickle.catalog;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pgtrickle.testing.SchemaSignature;
import io.pgtrickle.testing.TestDatabase;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.postgresql.PGConnection;
import org.postgresql.PGNotification;

/**
 * Every unit at once (catalog, refresh, notify, evolution: this module's class path), the way a
 * container applies them: a fresh install and an upgrade from each released catalog, with stream
 * tables, subscriptions and rows in it, end with identical schemas (tables, functions and their
 * privileges, triggers, event triggers, ...), and the upgraded stream tables keep working.
 */
class SchemaUnitsUpgradeTest {

    private final List<TestDatabase.Database> databases = new ArrayList<>();

    @AfterEach
    void drop() {
        databases.forEach(TestDatabase.Database::drop);
    }

    private Connection connect(String prefix) throws SQLException {
        TestDatabase.Database d = TestDatabase.get().createDatabase(prefix);
        databases.add(d);
        return d.connect();
    }

    @Test
    void aFreshInstallAppliesEveryUnitOnceAndASecondRunNothing() throws SQLException {
        try (Connection c = connect("units_fresh")) {
            CatalogMigrator.Result r = new CatalogMigrator().migrate(c);
            assertEquals(List.of("io.pgtrickle.catalog", "io.pgtrickle.refresh", "io.pgtrickle.evolution", "io.pgtrickle.notify"),
                    r.units().stream().map(UnitMigrator.Result::unit).toList());
            assertEquals(List.of("io.pgtrickle.catalog|READY|0.33.0.2", "io.pgtrickle.evolution|READY|", "io.pgtrickle.notify|READY|0.33.0.2",
                            "io.pgtrickle.refresh|READY|0.36.0"),
                    strings(c, "SELECT concat_ws('|', unit, state, coalesce(schema_version, '')) FROM pgtrickle.pgt_schema_unit ORDER BY unit"));
            CatalogMigrator.Result again = new CatalogMigrator().migrate(c);
            assertEquals(List.of(), again.applied());
            assertTrue(again.units().stream().allMatch(u -> u.applied().isEmpty()), again.units().toString());
        }
    }

    /**
     * A repeatable script runs again whenever its text changes, on a database its earlier text is in
     * place on: so each must run over itself (CREATE OR REPLACE, DROP ... IF EXISTS), or the next
     * container with an edited script cannot start. Every unit's scripts are made to look edited and
     * run again; they must, and leave the schema as it was.
     */
    @Test
    void everyRepeatableScriptRunsAgainOverItself() throws SQLException {
        try (Connection c = connect("units_rerun"); Statement s = c.createStatement()) {
            new CatalogMigrator().migrate(c);
            List<String> before = SchemaSignature.of(c);
            int scripts = s.executeUpdate("UPDATE " + UnitMigrator.SCRIPT_TABLE + " SET checksum = 'edited' WHERE kind = 'R'");
            CatalogMigrator.Result again = new CatalogMigrator().migrate(c);
            assertEquals(scripts, again.units().stream().mapToInt(u -> u.applied().size()).sum(), again.units().toString());
            assertTrue(scripts >= 14, "every unit's repeatable scripts: " + scripts);
            assertEquals(before, SchemaSignature.of(c));
        }
    }

    /**
     * Moving the functions into their bundles changed no SQL signature: every function the released
     * catalog had keeps its arguments, result, volatility, security, settings and privileges, but for
     * two deliberate changes: get_refresh_history gained a last column, fallback_reason (0.34.0), and
     * due_stream_tables an argument, probe (default true: the scheduler skips probing when nothing can be pending),
     * and prepares its probe once per session (so it is VOLATILE, with plan_cache_mode set). The
     * new ones are the two trigger functions through which units meet, the two the refresh unit
     * calls before a differential statement (change statistics, AUTO's cost rule), the FULL refresh
     * with its work_mem (full_refresh) and its statements that write nothing (full_refresh_sql with read_only, and
     * full_refresh_keyed_sql, the rows paired by a unique index's key; identity_columns, the form each column is compared in; source_row_estimate, the sources' rows the rules weigh changes against), the create-time judge's view of inlined subqueries
     * (inline_blocker, inlined_queries), a refresh's one-statement probe (pending_changes), and
     * derived tables (0.35.0): set_refresh_plan takes them as a last argument, five functions
     * capture, maintain, refill, grant and drop them, oldest_frontier tells how far back their
     * own frontiers reach, and in_progress_too records a refresh's own transaction in a frontier;
     * staleness, which pgt_status, /metrics and the live page's list share (0 while nothing is pending);
     * AUTO's measured rule (measured_choice, measured_full_wins, next_timing); and the scheduler's wake,
     * which waits for a commit in the database (await_snapshot_change); change buffers every consumer has
     * passed in full are emptied with TRUNCATE after the refresh commits (change_horizon,
     * truncate_consumed_change_buffers, and tracked_change_buffer, the buffer as the tracking records it); and whether a differential statement reads a source, so needs
     * statistics of the changes (delta_reads_sources); and the unique index a differential refresh finds a stream table's
     * rows by (row_key).
     */
    @Test
    void theSqlSurfaceIsTheReleasedOnePlusItsDeliberateChanges() throws SQLException {
        String surface = "SELECT format('%s -> %s volatility=%s definer=%s config=%s acl=%s', p.oid::regprocedure, pg_get_function_result(p.oid),"
                + " p.provolatile, p.prosecdef, p.proconfig, p.proacl) FROM pg_proc p WHERE p.pronamespace = 'pgtrickle'::regnamespace ORDER BY 1";
        try (Connection released = connect("units_released"); Connection units = connect("units_all")) {
            CatalogMigrator.withUnits().migrate(released);
            new CatalogMigrator().migrate(units);
            List<String> before = strings(released, surface);
            List<String> after = strings(units, surface);
            List<String> added = new ArrayList<>(after);
            added.removeAll(before);
            List<String> lost = new ArrayList<>(before);
            lost.removeAll(after);
            String history = "pgtrickle.get_refresh_history(text,integer) -> TABLE(refresh_id bigint, data_timestamp timestamp with time zone,"
                    + " start_time timestamp with time zone, end_time timestamp with time zone, action text, status text, rows_inserted bigint,"
                    + " rows_deleted bigint, duration_ms double precision, error_message text";
            String due = "pgtrickle.due_stream_tables(%s) -> TABLE(pgt_id bigint, name text, overdue interval)";
            assertEquals(List.of(String.format(due, ""), history + ")", "pgtrickle.set_refresh_plan(bigint,text,text,text,text,text) -> boolean"),
                    lost.stream().map(a -> a.substring(0, a.indexOf(" volatility"))).toList(), "released functions changed");
            assertEquals(List.of("pgtrickle.announce_refresh_event() -> trigger",
                            "pgtrickle.await_snapshot_change(text,integer,integer) -> text",
                            "pgtrickle.capture_derived_changes() -> trigger",
                            "pgtrickle.change_horizon(regclass) -> xid8",
                            "pgtrickle.cost_verdict_floor(jsonb) -> bigint",
                            "pgtrickle.delta_reads_sources(pgtrickle.pgt_stream_tables) -> boolean",
                            "pgtrickle.differential_cost_fallback(pgtrickle.pgt_stream_tables,pg_snapshot,bigint,jsonb,text[],boolean) -> record",
                            "pgtrickle.drop_derived_tables() -> trigger",
                            "pgtrickle.drop_orphaned_shadow() -> trigger",
                            String.format(due, "boolean"),
                            "pgtrickle.execute_statement(text,pg_snapshot) -> text[]",
                            "pgtrickle.full_refresh(pgtrickle.pgt_stream_tables,bigint) -> text[]",
                            "pgtrickle.full_refresh_keyed_sql(pgtrickle.pgt_stream_tables) -> text",
                            "pgtrickle.full_refresh_sql(pgtrickle.pgt_stream_tables,boolean) -> text",
                            history + ", fallback_reason text)",
                            "pgtrickle.grant_plan_tables(pgtrickle.pgt_stream_tables) -> void",
                            "pgtrickle.identity_columns(oid) -> TABLE(attname name, attnum smallint, n bigint, type text, attcollation oid,"
                                    + " by_value boolean, ident text)",
                            "pgtrickle.in_progress_too(pg_snapshot,xid8) -> pg_snapshot",
                            "pgtrickle.inline_blocker(text) -> text",
                            "pgtrickle.inlined_queries(text) -> TABLE(via text, own text)",
                            "pgtrickle.live_legs(text,text[]) -> text",
                            "pgtrickle.live_statement(text) -> text",
                            "pgtrickle.maintain_derived(pgtrickle.pgt_stream_tables) -> text[]",
                            "pgtrickle.measured_choice(jsonb,bigint) -> record",
                            "pgtrickle.measured_full_wins(jsonb,bigint,double precision) -> boolean",
                            "pgtrickle.next_timing(jsonb,text,double precision,bigint,boolean) -> jsonb",
                            "pgtrickle.oldest_frontier(jsonb) -> pg_snapshot",
                            "pgtrickle.pending_changes(bigint,pg_snapshot,bigint) -> record",
                            "pgtrickle.recompute_reason(text,boolean) -> text",
                            "pgtrickle.refill_ctes(text,text,jsonb,text) -> text",
                            "pgtrickle.refresh_change_statistics(pg_snapshot,jsonb,bigint) -> jsonb",
                            "pgtrickle.relevant_buffers(bigint,text[],jsonb,pg_snapshot,pg_snapshot) -> text[]",
                            "pgtrickle.row_key(oid) -> smallint[]",
                            "pgtrickle.set_refresh_plan(bigint,text,text,text,text,text,jsonb) -> boolean",
                            "pgtrickle.source_row_estimate(bigint) -> double precision",
                            "pgtrickle.staleness(pgtrickle.pgt_stream_tables) -> interval",
                            "pgtrickle.tracked_change_buffer(regclass) -> regclass",
                            "pgtrickle.truncate_consumed_change_buffers() -> integer"),
                    added.stream().map(a -> a.substring(0, a.indexOf(" volatility"))).toList());
            // due_stream_tables prepares its probe once per session: VOLATILE (PREPARE is refused in a
            // STABLE function), its statements planned generically; security and privileges kept
            assertEquals(lost.get(0).substring(lost.get(0).indexOf(" volatility")).replace("volatility=s", "volatility=v")
                            .replace("config= ", "config={plan_cache_mode=force_generic_plan} "),
                    attributes(added, "pgtrickle.due_stream_tables("),
                    "due_stream_tables keeps its security and privileges");
            assertEquals(lost.get(1).substring(lost.get(1).indexOf(" volatility")), attributes(added, "pgtrickle.get_refresh_history("),
                    "get_refresh_history keeps its volatility, security, settings and privileges");
            assertEquals(lost.get(2).substring(lost.get(2).indexOf(" volatility")), attributes(added, "pgtrickle.set_refresh_plan("),
                    "set_refresh_plan keeps its volatility, security, settings and privileges");
        }
    }

    /** What follows the signature of the one function of {@code functions} named {@code name}. */
    private static String attributes(List<String> functions, String name) {
        String f = functions.stream().filter(a -> a.startsWith(name)).findFirst().orElseThrow();
        return f.substring(f.indexOf(" volatility"));
    }

    @Test
    void upgradeFrom0310() throws Exception {
        upgradeMatchesAFreshInstall("0.31.0");
    }

    @Test
    void upgradeFrom0320() throws Exception {
        upgradeMatchesAFreshInstall("0.32.0");
    }

    @Test
    void upgradeFrom0330() throws Exception {
        upgradeMatchesAFreshInstall("0.33.0");
    }

    @Test
    void upgradeFrom03301() throws Exception {
        upgradeMatchesAFreshInstall("0.33.0.1");
    }

    private void upgradeMatchesAFreshInstall(String from) throws Exception {
        try (Connection upgraded = connect("units_from"); Connection fresh = connect("units_fresh");
             Statement s = upgraded.createStatement()) {
            new CatalogMigrator().migrate(upgraded, MigrationVersion.parse(from));
            s.execute("CREATE TABLE public.orders (id int PRIMARY KEY, amount int)");
            s.execute("INSERT INTO public.orders VALUES (1, 10), (2, 3)");
            boolean api = MigrationVersion.parse(from).compareTo(MigrationVersion.parse("0.33.0")) >= 0;
            if (api) {
                // a stream table and a subscription made by the released catalog's own functions
                s.execute("SELECT pgtrickle.create_stream_table('public.big_orders', 'SELECT id, amount FROM public.orders WHERE amount > 5',"
                        + " schedule => 'calculated')");
                s.execute("SELECT pgtrickle.subscribe('big_orders', 'orders_changed')");
            } else {
                s.execute("CREATE TABLE public.order_totals (total numeric)");
                s.execute("INSERT INTO pgtrickle.pgt_stream_tables (pgt_relid, pgt_name, pgt_schema, defining_query, schedule, status, is_populated)"
                        + " VALUES ('public.order_totals'::regclass, 'order_totals', 'public', 'SELECT sum(amount) AS total FROM orders', '1s', 'ACTIVE', true)");
            }
            List<String> rows = strings(upgraded, "SELECT row(pgt_id, pgt_name, defining_query)::text FROM pgtrickle.pgt_stream_tables ORDER BY 1");

            new CatalogMigrator().migrate(upgraded);
            new CatalogMigrator().migrate(fresh);
            if (api) {
                // the same stream table and subscription made on the fresh install: its capture must match the upgraded one's
                try (Statement f = fresh.createStatement()) {
                    f.execute("CREATE TABLE public.orders (id int PRIMARY KEY, amount int)");
                    f.execute("SELECT pgtrickle.create_stream_table('public.big_orders', 'SELECT id, amount FROM public.orders WHERE amount > 5',"
                            + " schedule => 'calculated')");
                    f.execute("SELECT pgtrickle.subscribe('big_orders', 'orders_changed')");
                }
            }
            List<String> onlyFresh = new ArrayList<>(SchemaSignature.of(fresh));
            List<String> onlyUpgraded = new ArrayList<>(SchemaSignature.of(upgraded));
            List<String> common = new ArrayList<>(onlyFresh);
            common.retainAll(onlyUpgraded);
            onlyFresh.removeAll(common);
            onlyUpgraded.removeAll(common);
            assertEquals(onlyFresh, onlyUpgraded, "upgraded from " + from + " and fresh differ");
            assertEquals(rows, strings(upgraded, "SELECT row(pgt_id, pgt_name, defining_query)::text FROM pgtrickle.pgt_stream_tables ORDER BY 1"));

            if (api) {
                // the stream table made before the upgrade keeps being maintained, and now announced by the notify unit
                try (Connection listener = TestDatabase.get().connect(databaseOf(upgraded)); Statement l = listener.createStatement()) {
                    l.execute("LISTEN orders_changed");
                    s.execute("SET pg_trickle.notify_coalesce_ms = 0");
                    s.execute("INSERT INTO public.orders VALUES (3, 30)");
                    s.execute("SELECT pgtrickle.refresh_stream_table('big_orders')");
                    assertEquals(List.of("1", "3"), strings(upgraded, "SELECT id FROM public.big_orders ORDER BY id"));
                    l.execute("SELECT 1");
                    PGNotification[] got = listener.unwrap(PGConnection.class).getNotifications(5_000);
                    assertTrue(got != null && got.length == 1, "the upgraded subscription is announced once");
                    assertTrue(got[0].getParameter().contains("big_orders"), got[0].getParameter());
                }
            }
        }
    }

    private static String databaseOf(Connection c) throws SQLException {
        return strings(c, "SELECT current_database()").get(0);
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
