package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Randomized, seeded model check of refreshes through the SQL API: after every
 * {@code pgtrickle.refresh_stream_table} the stream table must equal its defining query as a multiset,
 * and the refresh history must count exactly the rows that changed. Written against the API only, so
 * it holds for FULL today and must keep holding when differential refresh lands.
 *
 * <p>Reproduce a failure with {@code -Dpgtrickle.test.seed=<seed>}: the seed is printed and is part
 * of every assertion message; the DML of a round is fully determined by it (no LIMIT, ctid or
 * server-side random(), so the same statements change the same rows on every run).
 */
class RandomizedRefreshTest {

    static final String SEED_PROPERTY = "pgtrickle.test.seed";
    private static final int ROUNDS = 30;

    /**
     * Sources without primary keys, so duplicate rows exist; every column is nullable so NULL join
     * keys, NULL group keys and NULL aggregate inputs occur. Small value domains make join and group
     * collisions frequent.
     */
    static final String[] SCHEMA = {
        "CREATE TABLE t1 (id int, k int, g text, v int)",
        "CREATE TABLE t2 (k int, name text, m int)",
        "CREATE TABLE t3 (m int, label text, w int)",
    };

    /** A stream table, its query and what it reads (base tables or upstream stream tables). */
    record Spec(String name, String query, Set<String> sources) {
    }

    /** In creation order, which is dependency order: upstream stream tables come first. */
    static final List<Spec> STREAM_TABLES = List.of(
            // projection + filter
            new Spec("st_proj", "SELECT id, g, v * 2 AS v2 FROM t1 WHERE v IS NULL OR v > 3", Set.of("t1")),
            // 2-table inner join (join-key updates move rows in and out)
            new Spec("st_join2", "SELECT t1.id, t1.g, t2.name, t1.v + t2.m AS s FROM t1 JOIN t2 ON t1.k = t2.k", Set.of("t1", "t2")),
            // 3-table inner join
            new Spec("st_join3", "SELECT t1.id, t2.name, t3.label, t3.w FROM t1 JOIN t2 ON t1.k = t2.k JOIN t3 ON t3.m = t2.m",
                    Set.of("t1", "t2", "t3")),
            // GROUP BY with every aggregate and HAVING (group-key updates move rows between groups)
            new Spec("st_agg", "SELECT g, count(*) AS n, count(v) AS nv, sum(v) AS total, avg(v) AS mean, min(v) AS lo, max(v) AS hi"
                    + " FROM t1 GROUP BY g HAVING count(*) >= 2", Set.of("t1")),
            // aggregate over a 3-table join, HAVING on an aggregate that can be NULL
            new Spec("st_agg_join", "SELECT t2.name, t3.label, count(*) AS n, sum(t1.v) AS total, avg(t3.w) AS mean, min(t3.w) AS lo,"
                    + " max(t1.id) AS hi FROM t1 JOIN t2 ON t1.k = t2.k JOIN t3 ON t3.m = t2.m GROUP BY t2.name, t3.label"
                    + " HAVING sum(t1.v) IS NULL OR sum(t1.v) > 5", Set.of("t1", "t2", "t3")),
            new Spec("st_distinct", "SELECT DISTINCT k, g FROM t1", Set.of("t1")),
            // UNION ALL keeps duplicates across and within branches
            new Spec("st_union", "SELECT k AS key, name AS txt FROM t2 UNION ALL SELECT m, label FROM t3"
                    + " UNION ALL SELECT k, g FROM t1 WHERE v < 0", Set.of("t1", "t2", "t3")),
            // a stream table reading a stream table, and one more level on top of it
            new Spec("st_by_name", "SELECT name, count(*) AS n, sum(s) AS total, max(id) AS top FROM st_join2 GROUP BY name",
                    Set.of("st_join2")),
            new Spec("st_busy", "SELECT name, n FROM st_by_name WHERE n >= 3", Set.of("st_by_name")),
            // a stream table joined with a base table
            new Spec("st_mixed", "SELECT b.name, b.n, t2.m FROM st_by_name b JOIN t2 ON t2.name = b.name", Set.of("st_by_name", "t2")),
            // running totals (count and exact sums only, no HAVING): adjusted, not recomputed
            new Spec("st_totals", "SELECT t2.name, t3.label, count(*) AS n, count(t1.v) AS nv, sum(t1.v) AS total FROM t1"
                    + " JOIN t2 ON t1.k = t2.k JOIN t3 ON t3.m = t2.m GROUP BY t2.name, t3.label", Set.of("t1", "t2", "t3")),
            new Spec("st_totals_up", "SELECT n, count(*) AS labels, sum(total) AS total FROM st_totals GROUP BY n", Set.of("st_totals")));

    /**
     * Joins of more occurrences than the planner reads by index when tables are small (DeltaPlanner.MIN_INDEXED), each
     * table twice: some terms read old states and others expand them, with changes to both copies
     * of a table. Here only, not in ConcurrentWritersTest: its writers grow the tables until such
     * self-joins are millions of rows.
     */
    static final List<Spec> WIDE_JOINS = List.of(
            new Spec("st_join6", "SELECT a.id, b.id AS id2, t2.name, t3.label, d.w FROM t1 a JOIN t2 ON a.k = t2.k"
                    + " JOIN t3 ON t3.m = t2.m JOIN t1 b ON b.k = a.k AND b.g = a.g JOIN t2 c ON c.k = b.k AND c.name = t2.name"
                    + " JOIN t3 d ON d.m = c.m AND d.w IS NOT DISTINCT FROM t3.w", Set.of("t1", "t2", "t3")),
            new Spec("st_totals5", "SELECT t2.name, count(*) AS n, sum(a.v) AS total FROM t1 a JOIN t2 ON a.k = t2.k"
                    + " JOIN t3 ON t3.m = t2.m JOIN t1 b ON b.k = a.k AND b.g = a.g JOIN t3 d ON d.m = t3.m GROUP BY t2.name",
                    Set.of("t1", "t2", "t3")),
            new Spec("st_groups5", "SELECT t3.label, min(a.v) AS lo, max(d.w) AS hi FROM t1 a JOIN t2 ON a.k = t2.k"
                    + " JOIN t3 ON t3.m = t2.m JOIN t1 b ON b.k = a.k JOIN t3 d ON d.m = t3.m GROUP BY t3.label",
                    Set.of("t1", "t2", "t3")));

    private static final List<Spec> ALL = java.util.stream.Stream.concat(STREAM_TABLES.stream(), WIDE_JOINS.stream()).toList();


    private RefreshDatabase db;
    private Connection c;

    @BeforeEach
    void setUp() throws Exception {
        db = new RefreshDatabase("refresh_randomized");
        c = db.connect();
    }

    @AfterEach
    void tearDown() throws Exception {
        if (c != null) {
            c.close();
        }
        db.close();
    }

    /** The seed of this run: {@value #SEED_PROPERTY} when set, else a fresh one. */
    static long seed(String test) {
        String fixed = System.getProperty(SEED_PROPERTY);
        long seed = fixed == null || fixed.isBlank() ? new Random().nextLong() : Long.parseLong(fixed.trim());
        System.out.println("[" + test + "] seed=" + seed + " (rerun with -D" + SEED_PROPERTY + "=" + seed + ")");
        return seed;
    }

    @Test
    void everyRefreshEqualsItsQueryAndCountsExactlyWhatChanged() throws Exception {
        long seed = seed("RandomizedRefreshTest");
        long started = System.nanoTime();
        Random rnd = new Random(seed);
        try (Statement s = c.createStatement()) {
            for (String ddl : SCHEMA) {
                s.execute(ddl);
            }
            for (String sql : initialData(rnd)) {
                s.execute(sql);
            }
        }
        // in dependency order: upstream stream tables first
        for (Spec st : ALL) {
            db.createDifferential(st.name(), st.query());
        }
        Map<String, Map<String, Integer>> known = new HashMap<>();
        for (Spec st : ALL) {
            String ctx = "seed=" + seed + " initial population of " + st.name();
            assertEqualsQuery(st.name(), ctx);
            known.put(st.name(), contents(st.name()));
        }

        long fullRefreshes = 0;
        long differential = 0;
        long noData = 0;
        long rowsChanged = 0;
        for (int round = 1; round <= ROUNDS; round++) {
            Round r = runRandomDml(rnd);
            String roundCtx = "seed=" + seed + " round=" + round + " (" + r.kind + ", statements: " + r.log + ")";

            // rows whose refresh changed anything this round: a downstream stream table must see them
            Map<String, Long> changedRows = new HashMap<>();
            for (Spec st : ALL) {
                String ctx = roundCtx + " stream table " + st.name();
                Map<String, Integer> before = contents(st.name());
                // nothing but a refresh writes a stream table: it still holds what the last one left
                assertEquals(known.get(st.name()), before, ctx + ": stream table changed between refreshes");

                long pgtId = db.pgtId(st.name());
                long lastId = queryLong("SELECT coalesce(max(refresh_id), 0) FROM pgtrickle.pgt_refresh_history WHERE pgt_id = ?", pgtId);
                exec("SELECT pgtrickle.refresh_stream_table('" + st.name() + "')");
                List<RefreshDatabase.History> history = db.historySince(pgtId, lastId);
                assertEquals(1, history.size(), ctx + ": exactly one history row per refresh, got " + history);
                RefreshDatabase.History h = history.get(0);

                Map<String, Integer> after = contents(st.name());
                assertEqualsQuery(st.name(), ctx);

                // the counts, computed independently as the multiset difference of the contents
                long inserted = 0;
                long deleted = 0;
                Set<String> keys = new HashSet<>(before.keySet());
                keys.addAll(after.keySet());
                for (String key : keys) {
                    int d = after.getOrDefault(key, 0) - before.getOrDefault(key, 0);
                    if (d > 0) {
                        inserted += d;
                    } else {
                        deleted -= d;
                    }
                }
                String hctx = ctx + ": history " + h + " vs actual +" + inserted + " -" + deleted;
                assertEquals("COMPLETED", h.status(), hctx);
                assertEquals("MANUAL", h.initiatedBy(), hctx);
                assertEquals(inserted, h.inserted(), hctx + ": rows_inserted");
                assertEquals(deleted, h.deleted(), hctx + ": rows_deleted");

                // The documented NO_DATA rule: no change in any source since the last refresh. A
                // source changed iff a committed statement affected a row of it (UPDATEs to the same
                // values included) or, for a stream-table source, its refresh this round changed rows.
                boolean sourceChanged = st.sources().stream()
                        .anyMatch(src -> r.changed.contains(src) || changedRows.getOrDefault(src, 0L) > 0);
                // a TRUNCATE of a source leaves no rows to diff: that refresh recomputes in full
                boolean truncated = st.sources().stream().anyMatch(r.truncated::contains);
                assertEquals(!sourceChanged ? "NO_DATA" : truncated ? "FULL" : "DIFFERENTIAL", h.action(), hctx + ": action (sources " + st.sources()
                        + ", changed tables " + r.changed + ", changed stream tables " + changedRows + ")");

                changedRows.put(st.name(), inserted + deleted);
                known.put(st.name(), after);
                rowsChanged += inserted + deleted;
                if ("NO_DATA".equals(h.action())) {
                    noData++;
                } else if ("FULL".equals(h.action())) {
                    fullRefreshes++;
                } else {
                    differential++;
                }
            }
            // nothing changed the sources since: every stream table, upstream and downstream, still matches
            for (Spec st : ALL) {
                assertEqualsQuery(st.name(), roundCtx + " end of round, stream table " + st.name());
            }
        }
        System.out.printf("[RandomizedRefreshTest] seed=%d: %d rounds, %d stream tables, %d DIFFERENTIAL + %d FULL + %d NO_DATA"
                + " refreshes, %d stream-table rows changed, %d ms%n", seed, ROUNDS, ALL.size(), differential, fullRefreshes,
                noData, rowsChanged, (System.nanoTime() - started) / 1_000_000);
        assertTrue(differential > 0 && rowsChanged > 0, "seed=" + seed + ": the workload changed nothing, so it proved nothing");
    }

    // ---------------------------------------------------------------- the random workload

    /** One round's DML: what ran, how, and which tables it changed (committed only). */
    private static final class Round {
        String kind;
        final List<String> log = new ArrayList<>();
        final Set<String> changed = new HashSet<>();
        final Set<String> truncated = new HashSet<>();
    }

    private Round runRandomDml(Random rnd) throws SQLException {
        Round r = new Round();
        int p = rnd.nextInt(100);
        if (p < 10) {
            r.kind = "idle";
            return r;
        }
        r.kind = p < 20 ? "rolled back" : p < 55 ? "one transaction" : "autocommit";
        boolean tx = !"autocommit".equals(r.kind);
        int n = 1 + rnd.nextInt(6);
        Set<String> touched = new HashSet<>();
        Set<String> truncatedHere = new HashSet<>();
        c.setAutoCommit(!tx);
        try (Statement s = c.createStatement()) {
            for (int i = 0; i < n; i++) {
                Dml dml = randomDml(rnd, tableSize("t1"));
                int rows = s.executeUpdate(dml.sql());
                r.log.add(dml.sql() + " [" + rows + "]");
                if (rows > 0 || dml.sql().startsWith("TRUNCATE")) {
                    touched.add(dml.table());
                }
                if (dml.sql().startsWith("TRUNCATE")) {
                    truncatedHere.add(dml.table());
                }
            }
            if (tx) {
                if ("rolled back".equals(r.kind)) {
                    c.rollback();
                    touched.clear();
                    truncatedHere.clear();
                } else {
                    c.commit();
                }
            }
        } finally {
            c.setAutoCommit(true);
        }
        r.changed.addAll(touched);
        r.truncated.addAll(truncatedHere);
        return r;
    }

    record Dml(String table, String sql) {
    }

    private static String intOrNull(Random rnd, int from, int to, int nullPercent) {
        return rnd.nextInt(100) < nullPercent ? "NULL" : Integer.toString(from + rnd.nextInt(to - from + 1));
    }

    private static String textOrNull(Random rnd, String prefix, int values, int nullPercent) {
        return rnd.nextInt(100) < nullPercent ? "NULL" : "'" + prefix + (1 + rnd.nextInt(values)) + "'";
    }

    static String t1Row(Random rnd) {
        return "(" + intOrNull(rnd, 1, 25, 0) + ", " + intOrNull(rnd, 1, 8, 10) + ", " + textOrNull(rnd, "g", 5, 10) + ", "
                + intOrNull(rnd, -5, 20, 15) + ")";
    }

    static String t2Row(Random rnd) {
        return "(" + intOrNull(rnd, 1, 8, 10) + ", " + textOrNull(rnd, "n", 5, 10) + ", " + intOrNull(rnd, 1, 5, 10) + ")";
    }

    static String t3Row(Random rnd) {
        return "(" + intOrNull(rnd, 1, 5, 10) + ", " + textOrNull(rnd, "l", 4, 10) + ", " + intOrNull(rnd, 0, 9, 15) + ")";
    }

    static List<String> initialData(Random rnd) {
        List<String> sql = new ArrayList<>();
        for (int i = 0; i < 30; i++) {
            sql.add("INSERT INTO t1 VALUES " + t1Row(rnd));
        }
        for (int i = 0; i < 8; i++) {
            sql.add("INSERT INTO t2 VALUES " + t2Row(rnd));
        }
        for (int i = 0; i < 6; i++) {
            sql.add("INSERT INTO t3 VALUES " + t3Row(rnd));
        }
        sql.add("INSERT INTO t1 SELECT * FROM t1 WHERE id <= 5"); // exact duplicate rows from the start
        return sql;
    }

    /**
     * One random statement: inserts (new and exact duplicates), updates of values, join keys and
     * group keys (to and from NULL), deletes. Predicates only, so the statement is deterministic.
     * {@code t1Size} keeps t1 bounded: a large t1 gets deletes rather than inserts.
     */
    static Dml randomDml(Random rnd, long t1Size) {
        int t = rnd.nextInt(100);
        int op = rnd.nextInt(100);
        if (t < 55) {
            if (t1Size > 90 && op < 40) {
                op = 85;
            }
            if (op < 20) {
                StringBuilder rows = new StringBuilder(t1Row(rnd));
                for (int i = rnd.nextInt(3); i > 0; i--) {
                    rows.append(", ").append(t1Row(rnd));
                }
                return new Dml("t1", "INSERT INTO t1 VALUES " + rows);
            } else if (op < 30) {
                return new Dml("t1", "INSERT INTO t1 SELECT * FROM t1 WHERE id = " + (1 + rnd.nextInt(25)));
            } else if (op < 45) {
                return new Dml("t1", "UPDATE t1 SET v = " + intOrNull(rnd, -5, 20, 20) + " WHERE id = " + (1 + rnd.nextInt(25)));
            } else if (op < 55) {
                return new Dml("t1", "UPDATE t1 SET k = " + intOrNull(rnd, 1, 8, 15) + " WHERE id = " + (1 + rnd.nextInt(25)));
            } else if (op < 65) {
                return new Dml("t1", "UPDATE t1 SET g = " + textOrNull(rnd, "g", 5, 15) + " WHERE id = " + (1 + rnd.nextInt(25)));
            } else if (op < 72) {
                return new Dml("t1", "UPDATE t1 SET v = v + 1 WHERE g IS NOT DISTINCT FROM " + textOrNull(rnd, "g", 5, 20));
            } else if (op < 78) {
                // an update that changes nothing still rewrites the rows
                return new Dml("t1", "UPDATE t1 SET v = v WHERE k = " + (1 + rnd.nextInt(8)));
            } else {
                return new Dml("t1", "DELETE FROM t1 WHERE id = " + (1 + rnd.nextInt(25)));
            }
        } else if (t < 80) {
            if (op < 25) {
                return new Dml("t2", "INSERT INTO t2 VALUES " + t2Row(rnd));
            } else if (op < 32) {
                return new Dml("t2", "INSERT INTO t2 SELECT * FROM t2 WHERE k = " + (1 + rnd.nextInt(8)));
            } else if (op < 50) {
                return new Dml("t2", "UPDATE t2 SET k = " + intOrNull(rnd, 1, 8, 15) + " WHERE name IS NOT DISTINCT FROM "
                        + textOrNull(rnd, "n", 5, 10));
            } else if (op < 65) {
                return new Dml("t2", "UPDATE t2 SET name = " + textOrNull(rnd, "n", 5, 15) + " WHERE k = " + (1 + rnd.nextInt(8)));
            } else if (op < 80) {
                return new Dml("t2", "UPDATE t2 SET m = " + intOrNull(rnd, 1, 5, 15) + " WHERE k = " + (1 + rnd.nextInt(8)));
            } else {
                return new Dml("t2", "DELETE FROM t2 WHERE k = " + (1 + rnd.nextInt(8)) + " AND m IS NOT DISTINCT FROM " + intOrNull(rnd, 1, 5, 20));
            }
        } else {
            if (op < 25) {
                return new Dml("t3", "INSERT INTO t3 VALUES " + t3Row(rnd) + ", " + t3Row(rnd));
            } else if (op < 45) {
                return new Dml("t3", "UPDATE t3 SET m = " + intOrNull(rnd, 1, 5, 15) + " WHERE label IS NOT DISTINCT FROM "
                        + textOrNull(rnd, "l", 4, 10));
            } else if (op < 65) {
                return new Dml("t3", "UPDATE t3 SET w = " + intOrNull(rnd, 0, 9, 20) + ", label = " + textOrNull(rnd, "l", 4, 10)
                        + " WHERE m = " + (1 + rnd.nextInt(5)));
            } else if (op < 90) {
                return new Dml("t3", "DELETE FROM t3 WHERE m = " + (1 + rnd.nextInt(5)) + " AND w IS NOT DISTINCT FROM " + intOrNull(rnd, 0, 9, 20));
            } else if (op < 94) {
                // every captured event kind, including TRUNCATE
                return new Dml("t3", "TRUNCATE t3");
            } else {
                return new Dml("t3", "DELETE FROM t3 WHERE w IS NULL");
            }
        }
    }

    // ---------------------------------------------------------------- checks

    /** The stream table as a multiset of rows in their text form (the row identity refreshes use). */
    private Map<String, Integer> contents(String table) throws SQLException {
        Map<String, Integer> rows = new LinkedHashMap<>();
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT x::text FROM " + table + " x")) {
            while (rs.next()) {
                rows.merge(rs.getString(1), 1, Integer::sum);
            }
        }
        return rows;
    }

    private void assertEqualsQuery(String table, String ctx) throws SQLException {
        List<String> diff = difference(c, table);
        if (!diff.isEmpty()) {
            fail(ctx + ": stream table differs from its query (as multisets): " + diff);
        }
    }

    /**
     * The rows by which a stream table and its defining query differ, both ways with EXCEPT ALL in
     * one statement, so both sides are read in one snapshot even while others write. Empty: equal.
     */
    static List<String> difference(Connection c, String table) throws SQLException {
        String query;
        try (PreparedStatement ps = c.prepareStatement("SELECT defining_query FROM pgtrickle.pgt_stream_tables"
                + " WHERE pgt_id = (pgtrickle.find_stream_table(?)).pgt_id")) {
            ps.setString(1, table);
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                query = rs.getString(1);
            }
        }
        List<String> out = new ArrayList<>();
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(
                "SELECT 'extra ' || x::text FROM (TABLE " + table + " EXCEPT ALL (" + query + ")) x"
                        + " UNION ALL SELECT 'missing ' || y::text FROM ((" + query + ") EXCEPT ALL TABLE " + table + ") y")) {
            while (rs.next()) {
                out.add(rs.getString(1));
            }
        }
        return out;
    }

    private long tableSize(String table) throws SQLException {
        return queryLong("SELECT count(*) FROM " + table);
    }

    private long queryLong(String sql, Object... params) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            for (int i = 0; i < params.length; i++) {
                ps.setObject(i + 1, params[i]);
            }
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                return rs.getLong(1);
            }
        }
    }

    private void exec(String sql) throws SQLException {
        try (Statement s = c.createStatement()) {
            s.execute(sql);
        }
    }
}
