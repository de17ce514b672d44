package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;

import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Seeded randomized rounds over running totals: aggregates without GROUP BY (one row, also over no
 * rows), avg kept as sum and count, sums of expressions whose values have several scales (a CASE of
 * a product and 0), integer sums of every width, result columns computed from aggregates, and HAVING
 * thresholds that groups cross both ways. Every stream table must keep running totals (a state
 * table), refresh DIFFERENTIAL whenever a source changed (FULL after a TRUNCATE), and equal its
 * query by value and by text form after every round.
 *
 * <p>Reproduce a failure with {@code -Dpgtrickle.test.seed=<seed>} (see {@link RandomizedRefreshTest}).
 */
class RunningTotalsRandomizedTest {

    private static final int ROUNDS = 30;

    private static final String[] SCHEMA = {
        "CREATE TABLE facts (id int, g int, k int, q smallint, big bigint, amt numeric(10,2), rate numeric(6,3))",
        "CREATE TABLE dims (k int, name text, w numeric(8,1))",
        // found by its key: facts' changes are summed through it unconsolidated (UniqueJoins)
        "CREATE TABLE kdims (k int PRIMARY KEY, name text, w numeric(8,1))",
    };

    static final String[][] STREAM_TABLES = {
        {"rt_global", "SELECT count(*) AS n, sum(amt) AS s, avg(amt) AS a, count(rate) AS nr, sum(rate) AS sr, avg(rate) AS ar FROM facts"},
        {"rt_global_empty", "SELECT count(*) AS n, sum(q) AS s, avg(rate) AS a FROM facts WHERE g = 1"},
        {"rt_widths", "SELECT sum(q) AS sq, sum(big) AS sb, avg(q) AS aq, avg(big) AS ab, sum(id) AS si, sum(q * k) AS sqk FROM facts"},
        {"rt_scales", "SELECT g, sum(CASE WHEN k > 2 THEN amt * rate ELSE 0 END) AS mixed, avg(amt * (1 - rate)) AS m2,"
                + " sum(coalesce(rate, amt)) AS either FROM facts GROUP BY g"},
        {"rt_ratio", "SELECT d.name, 100.00 * sum(CASE WHEN f.k = 1 THEN f.amt ELSE 0 END) / nullif(sum(f.amt), 0) AS pct,"
                + " sum(f.amt) / 7.0 AS per_week, count(*) + 1 AS n1, sum(CASE WHEN d.name LIKE 'd1%' THEN f.amt END) AS d1"
                + " FROM facts f JOIN dims d ON d.k = f.k GROUP BY d.name"},
        {"rt_having", "SELECT g, count(*) AS n, sum(amt) AS s FROM facts GROUP BY g HAVING sum(amt) > 10 AND count(*) >= 2"},
        {"rt_join_global", "SELECT sum(f.amt * d.w) AS x, avg(d.w) AS aw FROM facts f JOIN dims d ON d.k = f.k WHERE f.g IS NOT NULL"},
        {"rt_global_having", "SELECT count(*) AS n FROM facts HAVING count(*) > 12"},
        {"rt_keyed", "SELECT d.name, sum(f.amt) AS s, count(*) AS n, avg(f.rate * d.w) AS arw FROM facts f JOIN kdims d ON d.k = f.k"
                + " GROUP BY d.name"},
    };

    private static final String[] AMOUNTS = {"NULL", "1.00", "2.5", "-3.25", "0", "100.10", "7"};
    private static final String[] RATES = {"NULL", "0.125", "1", "0.5", "2.25"};

    private RefreshDatabase db;
    private Connection c;

    @BeforeEach
    void setUp() throws Exception {
        db = new RefreshDatabase("running_totals");
        c = db.connect();
    }

    @AfterEach
    void tearDown() throws Exception {
        c.close();
        db.close();
    }

    /** A delta_sql whose first source's changes (__pgt_d0) are consolidated before the terms read them. */
    private static final String CONSOLIDATED_D0 = consolidated(0);

    /** The CTE of the changes (the statement's check of a source it leaves out consolidates them too). */
    private static String consolidated(int d) {
        return "(?s).*__pgt_d" + d + " AS MATERIALIZED \\([^\\n]*HAVING sum\\(x.__pgt_w\\) <> 0\\),\\n.*";
    }

    @Test
    void theChangesOfATableAloneAreSummedUnconsolidated() throws Exception {
        db.exec("CREATE TABLE sc (id int, g int, v numeric(10,2), r numeric(6,3))", "CREATE TABLE sd (g int, name text)",
                "INSERT INTO sc SELECT i, i % 3, i, i / 8.0 FROM generate_series(1, 30) i", "INSERT INTO sd VALUES (0, 'a'), (1, 'b'), (2, 'c')");
        // sums of products of several scales: the result's scale is kept with the totals
        db.createDifferential("sc_alone", "SELECT g, sum(v) AS s, sum(CASE WHEN id > 3 THEN v * r ELSE 0 END) AS vr, count(*) AS n FROM sc GROUP BY g");
        db.createDifferential("sc_joined", "SELECT d.name, sum(c.v) AS s FROM sc c JOIN sd d ON d.g = c.g GROUP BY d.name");
        // sc's keys found in se, se's in sr: a chain of unique keys from sc, none back to it
        db.exec("CREATE TABLE se (g int PRIMARY KEY, name text, r int)", "CREATE TABLE sr (r int, label text, UNIQUE (r))",
                "INSERT INTO se VALUES (0, 'a', 0), (1, 'b', 1), (2, 'c', 0)", "INSERT INTO sr VALUES (0, 'x'), (1, 'y')");
        db.createDifferential("sc_keyed", "SELECT r.label, sum(c.v) AS s, count(*) AS n FROM sc c JOIN se e ON e.g = c.g"
                + " JOIN sr r ON r.r = e.r GROUP BY r.label");
        assertEquals(false, delta("sc_alone").matches(CONSOLIDATED_D0), "one table: its deletes and inserts cancel in the sums");
        assertEquals(true, delta("sc_joined").matches(CONSOLIDATED_D0), "joined: consolidated first");
        assertEquals("false true true", delta("sc_keyed").matches(CONSOLIDATED_D0) + " " + delta("sc_keyed").matches(consolidated(1))
                + " " + delta("sc_keyed").matches(consolidated(2)), "sc's changes find one row of se and of sr; theirs many of sc");
        db.exec("SELECT pgtrickle.refresh_stream_table('sc_alone')", "SELECT pgtrickle.refresh_stream_table('sc_joined')",
                "SELECT pgtrickle.refresh_stream_table('sc_keyed')");
        // back and forth in one window, and equal values that print differently
        db.exec("UPDATE sc SET v = v + 1 WHERE id <= 10", "UPDATE sc SET v = v - 1 WHERE id <= 10", "UPDATE sc SET id = 3 WHERE id = 4",
                "DELETE FROM sc WHERE id = 5", "INSERT INTO sc VALUES (5, 2, 5.0, 0.5), (31, 7, 1, NULL)",
                "UPDATE se SET r = 1 - r WHERE g = 1", "UPDATE se SET r = 1 - r WHERE g = 1", "UPDATE sr SET label = 'z' WHERE r = 0");
        for (String st : new String[] {"sc_alone", "sc_joined", "sc_keyed"}) {
            db.exec("SELECT pgtrickle.refresh_stream_table('" + st + "')");
            assertEquals("DIFFERENTIAL", db.lastRefresh(st).action(), st);
            db.assertEqualsItsQuery(st, "after updates that cancel, and a product's scale gone from a group");
        }
    }

    @Test
    void everyRoundEqualsTheQueryByValueAndByText() throws Exception {
        long seed = RandomizedRefreshTest.seed("RunningTotalsRandomizedTest");
        Random rnd = new Random(seed);
        try (Statement s = c.createStatement()) {
            for (String ddl : SCHEMA) {
                s.execute(ddl);
            }
            for (int i = 0; i < 20; i++) {
                s.execute(insertFact(rnd, i));
            }
            for (int k = 0; k < 4; k++) {
                s.execute("INSERT INTO dims VALUES (" + k + ", 'd" + (k % 3) + "', " + (k == 3 ? "NULL" : k + ".5") + ")");
                s.execute("INSERT INTO kdims VALUES (" + k + ", 'd" + (k % 3) + "', " + (k == 3 ? "NULL" : k + ".5") + ")");
            }
        }
        for (String[] st : STREAM_TABLES) {
            db.createDifferential(st[0], st[1]);
            assertNotNull(db.queryString("SELECT state_table FROM pgtrickle.pgt_stream_tables WHERE pgt_id = ?", db.pgtId(st[0])),
                    st[0] + " keeps running totals");
        }
        // sum, avg and count of one argument keep one sum and one count (amt, rate)
        assertEquals("2 2", db.queryString("SELECT count(*) FILTER (WHERE attname ~ '^s[0-9]+$') || ' ' || count(*) FILTER (WHERE attname ~ '^c[0-9]+$')"
                + " FROM pg_attribute WHERE attnum > 0 AND NOT attisdropped"
                + " AND attrelid = (SELECT state_table FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'rt_global')::regclass"));
        assertEquals(false, db.queryString("SELECT delta_sql FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'rt_keyed'")
                .matches(CONSOLIDATED_D0), "facts' changes are summed unconsolidated through kdims' key");
        compareAll("seed=" + seed + " initial", false);

        for (int round = 1; round <= ROUNDS; round++) {
            List<String> log = new ArrayList<>();
            boolean truncated = false;
            try (Statement s = c.createStatement()) {
                int statements = 1 + rnd.nextInt(5);
                for (int k = 0; k < statements; k++) {
                    String sql = randomStatement(rnd);
                    truncated |= sql.startsWith("TRUNCATE");
                    log.add(sql);
                    s.execute(sql);
                }
            }
            compareAll("seed=" + seed + " round=" + round + " statements=" + log, truncated);
        }
    }

    private String delta(String streamTable) throws SQLException {
        return db.queryString("SELECT delta_sql FROM pgtrickle.pgt_stream_tables WHERE pgt_name = ?", streamTable);
    }

    private static String insertFact(Random rnd, int id) {
        return "INSERT INTO facts VALUES (" + id + ", " + (rnd.nextInt(6) == 0 ? "NULL" : String.valueOf(rnd.nextInt(3))) + ", "
                + (rnd.nextInt(8) == 0 ? "NULL" : String.valueOf(rnd.nextInt(5))) + ", " + (rnd.nextInt(7) - 2) + ", "
                + (rnd.nextInt(5) == 0 ? "NULL" : String.valueOf(9_000_000_000_000_000L / (1 + rnd.nextInt(1000)))) + ", "
                + AMOUNTS[rnd.nextInt(AMOUNTS.length)] + ", " + RATES[rnd.nextInt(RATES.length)] + ")";
    }

    private static String randomStatement(Random rnd) {
        return switch (rnd.nextInt(14)) {
            case 0, 1, 2 -> insertFact(rnd, rnd.nextInt(60));
            case 3 -> "UPDATE facts SET amt = " + AMOUNTS[rnd.nextInt(AMOUNTS.length)] + " WHERE id % 4 = " + rnd.nextInt(4);
            case 4 -> "UPDATE facts SET rate = " + RATES[rnd.nextInt(RATES.length)] + " WHERE id % 5 = " + rnd.nextInt(5);
            // group and join keys move rows between groups, in and out of the filters
            case 5 -> "UPDATE facts SET g = " + (rnd.nextInt(4) == 0 ? "NULL" : String.valueOf(rnd.nextInt(3))) + " WHERE id % 3 = "
                    + rnd.nextInt(3);
            case 6 -> "UPDATE facts SET k = " + rnd.nextInt(5) + " WHERE id % 6 = " + rnd.nextInt(6);
            case 7 -> "DELETE FROM facts WHERE id % 5 = " + rnd.nextInt(5);
            case 8 -> rnd.nextInt(5) == 0 ? "DELETE FROM facts" : "DELETE FROM facts WHERE g = " + rnd.nextInt(3);
            case 9 -> "UPDATE dims SET w = " + (rnd.nextInt(4) == 0 ? "NULL" : rnd.nextInt(9) + "." + rnd.nextInt(10)) + " WHERE k = "
                    + rnd.nextInt(4);
            case 10 -> "UPDATE dims SET name = 'd" + rnd.nextInt(3) + "' WHERE k = " + rnd.nextInt(4);
            case 11 -> "UPDATE kdims SET w = " + (rnd.nextInt(4) == 0 ? "NULL" : rnd.nextInt(9) + "." + rnd.nextInt(10))
                    + (rnd.nextBoolean() ? ", name = 'd" + rnd.nextInt(3) + "'" : "") + " WHERE k % 10 = " + rnd.nextInt(4);
            // a key moves: the facts of the old one lose their row, those of the new one find it
            case 12 -> "UPDATE kdims SET k = CASE WHEN k < 10 THEN k + 10 ELSE k - 10 END WHERE k % 10 = " + rnd.nextInt(4);
            default -> rnd.nextInt(6) == 0 ? "TRUNCATE facts" : "UPDATE facts SET q = q + 1, big = big - 7 WHERE id % 2 = " + rnd.nextInt(2);
        };
    }

    private void compareAll(String ctx, boolean truncated) throws SQLException {
        for (String[] st : STREAM_TABLES) {
            db.exec("SELECT pgtrickle.refresh_stream_table('" + st[0] + "')");
            RefreshDatabase.History done = db.lastRefresh(st[0]);
            assertNotNull(done, ctx + " " + st[0]);
            assertEquals("COMPLETED", done.status(), ctx + " " + st[0]);
            if (!ctx.endsWith("initial") && !done.action().equals("NO_DATA")) {
                assertEquals(truncated ? "FULL" : "DIFFERENTIAL", done.action(), ctx + " " + st[0]);
            }
            db.assertEqualsItsQuery(st[0], ctx);
        }
    }
}
