package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pgtrickle.testing.MigratedDatabaseTest;
import java.sql.Connection;
import java.sql.SQLException;
import java.sql.SQLWarning;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * What a query's result depends on besides its sources. A query that reads the clock or the session,
 * or calls volatile functions, returns other rows from unchanged sources: it is refreshed at every
 * refresh (never NO_DATA), with the reason in explain_refresh_mode, and recomputed, unless it only
 * compares rows with the transaction's clock in WHERE (TemporalFiltersTest). Settings that change results are those of the session that set the query,
 * applied by every refresh whoever runs it.
 */
class ResultDependenceTest extends MigratedDatabaseTest {

    ResultDependenceTest() {
        super("dependence");
    }

    private String lastAction(String st) throws SQLException {
        return string("SELECT action FROM pgtrickle.get_refresh_history('" + st + "', 1)");
    }

    @Test
    void aRowLeavesATimeWindowWithoutAnyWrite() throws Exception {
        exec("CREATE TABLE r1 (id int PRIMARY KEY, ts timestamptz)");
        exec("INSERT INTO r1 VALUES (1, clock_timestamp() + interval '400 milliseconds'), (2, now() - interval '1 hour')");
        exec("SELECT pgtrickle.create_stream_table('upcoming', 'SELECT id FROM r1 WHERE ts > now()')");
        assertEquals(List.of("1"), strings("SELECT id::text FROM upcoming"));
        // a comparison with the transaction's clock in WHERE is maintained differentially (TemporalFiltersTest)
        assertEquals("AUTO|DIFFERENTIAL|the query reads the current time (now())",
                string("SELECT concat_ws('|', configured_mode, effective_mode, downgrade_reason, recompute_reason)"
                        + " FROM pgtrickle.explain_refresh_mode('upcoming')"));
        c.setAutoCommit(false);
        io.pgtrickle.refresh.plan.RefreshPlanner.planIfNeeded(c, Long.parseLong(string("SELECT (pgtrickle.find_stream_table('upcoming')).pgt_id")));
        c.commit();
        c.setAutoCommit(true);
        exec("SELECT pgtrickle.refresh_stream_table('upcoming')");
        assertEquals("FULL", lastAction("upcoming"), "the first refresh of the plan fills its clock");
        exec("SELECT pg_sleep(0.5)");
        exec("SELECT pgtrickle.refresh_stream_table('upcoming')");
        assertEquals("DIFFERENTIAL", lastAction("upcoming"), "no source changed, yet the result did: the clock moved");
        assertEquals(List.of(), strings("SELECT id::text FROM upcoming"));
    }

    @Test
    void aCalculatedScheduleRecomputesATimeDependentQueryEverySecond() throws Exception {
        exec("CREATE TABLE r1 (id int PRIMARY KEY, ts timestamptz)");
        exec("SELECT pgtrickle.create_stream_table('recent', $q$SELECT id FROM r1 WHERE ts > now() - interval '1 minute'$q$, 'calculated')");
        exec("SELECT pgtrickle.create_stream_table('plain', 'SELECT id FROM r1', 'calculated')");
        assertEquals(List.of(), strings("SELECT name FROM pgtrickle.due_stream_tables()"), "both were just filled");
        exec("SELECT pg_sleep(1.1)");
        // no source changed: only the one whose result moves with the clock is due
        assertEquals(List.of("public.recent"), strings("SELECT name FROM pgtrickle.due_stream_tables()"));
    }

    @ParameterizedTest
    @ValueSource(strings = {"ts < clock_timestamp()", "ts < statement_timestamp()", "age(ts::timestamp) < interval '1 day'",
        "id = random()", "current_user = 'nobody'", "current_setting('application_name') = ''"})
    void aResultThatMovesWithoutItsSourcesIsRecomputedEveryTime(String predicate) throws Exception {
        exec("CREATE TABLE r1 (id int PRIMARY KEY, ts timestamptz)");
        exec("INSERT INTO r1 VALUES (1, now())");
        for (String mode : List.of("AUTO", "FULL")) {
            String st = "moving_" + mode.toLowerCase();
            exec("SELECT pgtrickle.create_stream_table('" + st + "', $q$SELECT id FROM r1 WHERE " + predicate + "$q$, refresh_mode => '" + mode + "')");
            assertEquals("FULL", string("SELECT effective_mode FROM pgtrickle.explain_refresh_mode('" + st + "')"), predicate);
            assertTrue(string("SELECT recompute_reason FROM pgtrickle.explain_refresh_mode('" + st + "')") != null, predicate);
            exec("SELECT pgtrickle.refresh_stream_table('" + st + "')");
            assertEquals("FULL", lastAction(st), predicate + " in " + mode + ": recomputed, not skipped");
        }
        assertFails("SELECT pgtrickle.create_stream_table('moving_diff', $q$SELECT id FROM r1 WHERE " + predicate + "$q$,"
                + " refresh_mode => 'DIFFERENTIAL')", "DIFFERENTIAL refresh cannot maintain this query", "0A000");
    }

    @Test
    void aResultOfTheSourcesAloneIsStillSkippedWhenNothingChanged() throws Exception {
        exec("CREATE TABLE r1 (id int PRIMARY KEY, ts timestamptz)");
        exec("INSERT INTO r1 VALUES (1, now())");
        // time zone arithmetic and formatting depend on settings, which every refresh pins
        exec("SELECT pgtrickle.create_stream_table('shaped', $q$SELECT id, to_char(ts, 'YYYY') AS y, ts + interval '1 day' AS next"
                + " FROM r1 WHERE ts > '2000-01-01'::timestamptz$q$)");
        assertNull(string("SELECT recompute_reason FROM pgtrickle.explain_refresh_mode('shaped')"));
        exec("SELECT pgtrickle.refresh_stream_table('shaped')");
        assertEquals("NO_DATA", lastAction("shaped"));
    }

    @Test
    void everyRefreshRunsUnderTheSettingsOfTheSessionThatSetTheQuery() throws Exception {
        String query = "SELECT id, ts::text AS shown, ts::date AS day, span::text AS took, written::date AS parsed,"
                + " extract(hour FROM ts) AS hour FROM events";
        exec("CREATE TABLE events (id int PRIMARY KEY, ts timestamptz, span interval, written text)");
        exec("INSERT INTO events VALUES (1, '2026-03-01 23:30:00+00', '25 hours', '01/02/2026')");
        exec("SET TimeZone = 'Asia/Tokyo'");
        // pgjdbc insists on ISO output; the field order (DMY) still changes how text becomes a date
        exec("SET DateStyle = 'ISO, DMY'");
        exec("SET IntervalStyle = 'sql_standard'");
        exec("SELECT pgtrickle.create_stream_table('shown', $q$" + query + "$q$)");
        assertEquals(strings("SELECT ROW(q.*)::text FROM (" + query + ") q ORDER BY 1"), strings("SELECT ROW(s.*)::text FROM shown s ORDER BY 1"));

        try (Connection other = db.connect(); Statement s = other.createStatement()) {
            s.execute("SET TimeZone = 'UTC'");
            s.execute("SET DateStyle = 'ISO, MDY'");
            s.execute("INSERT INTO events VALUES (2, '2026-06-30 18:00:00+00', '1 day 2 hours', '03/04/2026')");
            s.execute("SELECT pgtrickle.refresh_stream_table('shown')");
            // the refreshing session's own settings are back once the refresh returns
            try (var rs = s.executeQuery("SELECT concat_ws('|', current_setting('TimeZone'), current_setting('DateStyle'),"
                    + " current_setting('IntervalStyle'))")) {
                rs.next();
                assertEquals("UTC|ISO, MDY|postgres", rs.getString(1));
            }
        }
        List<String> both = strings("SELECT ROW(q.*)::text FROM (" + query + ") q ORDER BY 1");
        assertEquals(both, strings("SELECT ROW(s.*)::text FROM shown s ORDER BY 1"), "rows as the creating session computes them");
        assertEquals("(1,\"2026-03-02 08:30:00+09\",2026-03-02,25:00:00,2026-02-01,8)", both.get(0));
        assertEquals("(2,\"2026-07-01 03:00:00+09\",2026-07-01,\"1 2:00:00\",2026-04-03,3)", both.get(1));
        assertEquals("Asia/Tokyo", string("SELECT query_settings ->> 'TimeZone' FROM pgtrickle.pgt_stream_tables"));
    }

    @ParameterizedTest
    @ValueSource(strings = {
        "pg_trickle.history_retention_days|ninety|SELECT pgtrickle.history_retention_days()|90",
        "pg_trickle.notify_coalesce_ms|-5|SELECT pgtrickle.notify_coalesce_ms(0)|250",
        "pg_trickle.shadow_swap_lock_timeout_ms|1s|SELECT pgtrickle.setting_number('pg_trickle.shadow_swap_lock_timeout_ms', 50)|50",
        "pg_trickle.shadow_convergence_timeout|soon|SELECT pgtrickle.shadow_convergence_timeout()|1 hour"})
    void everyInvalidSettingWarnsOnceNamingTheDefault(String setting) throws Exception {
        String[] p = setting.split("\\|");
        exec("SET " + p[0] + " = '" + p[1] + "'");
        List<String> warnings = new ArrayList<>();
        try (Statement s = c.createStatement()) {
            for (int i = 0; i < 3; i++) {
                s.execute(p[2]);
                for (SQLWarning w = s.getWarnings(); w != null; w = w.getNextWarning()) {
                    warnings.add(w.getMessage());
                }
                s.clearWarnings();
            }
        }
        assertEquals(1, warnings.size(), warnings.toString());
        assertTrue(warnings.get(0).contains(p[0]) && warnings.get(0).contains(p[1]) && warnings.get(0).contains("using the default " + p[3]),
                warnings.get(0));
    }

    @Test
    void anInvalidChangeRatioIsIgnoredWithOneWarning() throws Exception {
        exec("CREATE TABLE r1 (id int PRIMARY KEY, v int)");
        exec("INSERT INTO r1 SELECT g, g FROM generate_series(1, 10) g");
        exec("SELECT pgtrickle.create_stream_table('plain', 'SELECT id, v FROM r1')");
        // the planner's plan, as the engine would store it, so AUTO judges the change ratio
        exec("UPDATE pgtrickle.pgt_stream_tables SET refresh_mode = 'DIFFERENTIAL'");
        exec("SET pg_trickle.differential_max_change_ratio = 'half'");
        List<String> warnings = new ArrayList<>();
        try (Statement s = c.createStatement()) {
            for (int i = 0; i < 3; i++) {
                s.execute("UPDATE r1 SET v = v + 1");
                s.execute("SELECT pgtrickle.refresh_stream_table('plain')");
                for (SQLWarning w = s.getWarnings(); w != null; w = w.getNextWarning()) {
                    warnings.add(w.getMessage());
                }
                s.clearWarnings();
            }
        }
        assertEquals(1, warnings.size(), warnings.toString());
        assertTrue(warnings.get(0).contains("pg_trickle.differential_max_change_ratio") && warnings.get(0).contains("half")
                && warnings.get(0).contains("0.5"), warnings.get(0));
        assertEquals("0", string("SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE status <> 'COMPLETED'"));
    }
}
