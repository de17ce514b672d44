package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Seeded randomized rounds over {@code ORDER BY ... LIMIT k} stream tables (TopK) on each strategy:
 * a filter and a join (ROWS), GROUP BY with sum and count (RUNNING_TOTALS), GROUP BY with min and
 * max (GROUPS), DISTINCT, UNION ALL; ascending and descending, NULLS FIRST and LAST, NULL sort keys,
 * duplicate rows, k = 1, and k larger than the result. The workload deletes rows of the stored top
 * k and moves them down (which forces the recomputation), inserts rows that cross the boundary, and
 * moves rows between groups. Every refresh must be DIFFERENTIAL (or NO_DATA), count exactly the
 * rows it changed, and leave the stream table equal to its query:
 * <ul>
 * <li>where the ORDER BY ends in a unique key, or covers every result column (then tied rows are
 * identical), the result is determined: equal by value and by text form;</li>
 * <li>otherwise ties at the boundary may be broken either way: the stream table must hold the same
 * multiset of ORDER BY keys as the query, the same rows strictly before the boundary (the k-th
 * row's keys), and only rows of the query without its LIMIT.</li>
 * </ul>
 * Both of TopK's paths must have run on the single-table stream tables (whether the refresh read
 * the source table, counted in pg_stat_xact_user_tables, tells them apart).
 *
 * <p>Reproduce a failure with {@code -Dpgtrickle.test.seed=<seed>} (see {@link RandomizedRefreshTest}).
 */
class TopKRandomizedTest {

    private static final int ROUNDS = 40;

    private static final String[] SCHEMA = {
        "CREATE TABLE items (id int PRIMARY KEY, g int, k int, score int, price numeric(8,2), name text)",
        "CREATE TABLE cats (k int, label text)",
    };

    /**
     * A stream table: its query is {@code select ORDER BY order LIMIT k}; {@code keys} are the ORDER
     * BY's result columns; {@code determined}: no ties that could leave the result undetermined;
     * {@code reads}: a single-table query whose refresh reads {@code items} only to recompute.
     */
    record TopTable(String name, String select, String order, String keys, int k, boolean determined, boolean reads) {
        String query() {
            return select + " ORDER BY " + order + " LIMIT " + k;
        }
    }

    static final List<TopTable> TABLES = List.of(
            new TopTable("top_filter", "SELECT id, score, name FROM items WHERE score IS DISTINCT FROM 3",
                    "score DESC NULLS LAST, id", "score, id", 5, true, true),
            new TopTable("top_nulls_first", "SELECT id, score FROM items WHERE g <> 1", "score NULLS FIRST, id DESC", "score, id", 4,
                    true, true),
            new TopTable("top_one", "SELECT id, price FROM items", "price, id", "price, id", 1, true, true),
            new TopTable("top_join", "SELECT i.id, c.label, i.price FROM items i JOIN cats c ON c.k = i.k",
                    "i.price DESC, c.label, i.id", "price, label, id", 6, true, false),
            new TopTable("top_totals", "SELECT g, sum(price) AS total, count(*) AS n FROM items GROUP BY g",
                    "total DESC NULLS LAST, g", "total, g", 3, true, true),
            new TopTable("top_counts", "SELECT k, count(*) AS n FROM items WHERE score > 0 GROUP BY k", "n DESC, k NULLS FIRST",
                    "n, k", 2, true, true),
            new TopTable("top_minmax", "SELECT g, min(score) AS lo, max(score) AS hi FROM items GROUP BY g",
                    "max(score) DESC NULLS FIRST, g", "hi, g", 3, true, false),
            new TopTable("top_distinct", "SELECT DISTINCT k, g FROM items", "k NULLS FIRST, g DESC", "k, g", 4, true, false),
            new TopTable("top_union", "SELECT score FROM items WHERE g = 0 UNION ALL SELECT k FROM cats", "1 DESC", "score", 5,
                    true, false),
            new TopTable("top_all", "SELECT id, name FROM items", "name, id", "name, id", 1000, true, true),
            // ties at the boundary
            new TopTable("top_tied", "SELECT id, score FROM items", "score DESC", "score", 5, false, true),
            new TopTable("top_tied_groups", "SELECT k, count(*) AS n FROM items GROUP BY k", "n DESC", "n", 2, false, true));

    private RefreshDatabase db;
    private Connection c;
    private int nextId;

    @BeforeEach
    void setUp() throws Exception {
        db = new RefreshDatabase("topk");
        c = db.connect();
    }

    @AfterEach
    void tearDown() throws Exception {
        c.close();
        db.close();
    }

    @Test
    void everyRoundEqualsTheQuery() throws Exception {
        long seed = RandomizedRefreshTest.seed("TopKRandomizedTest");
        Random rnd = new Random(seed);
        try (Statement s = c.createStatement()) {
            for (String ddl : SCHEMA) {
                s.execute(ddl);
            }
            for (int i = 0; i < 30; i++) {
                s.execute(insertItem(rnd));
            }
            for (int k = 0; k < 5; k++) {
                s.execute("INSERT INTO cats VALUES (" + k + ", 'c" + rnd.nextInt(3) + "')");
            }
            s.execute("INSERT INTO cats VALUES (1, 'c1'), (NULL, 'none')");
        }
        for (TopTable t : TABLES) {
            db.createDifferential(t.name(), t.query());
        }
        Map<String, int[]> paths = new LinkedHashMap<>(); // per table: refreshes that recomputed, that did not
        compareAll(rnd, "seed=" + seed + " initial", paths);
        paths.clear();

        for (int round = 1; round <= ROUNDS; round++) {
            List<String> log = new ArrayList<>();
            try (Statement s = c.createStatement()) {
                int statements = 1 + rnd.nextInt(4);
                for (int i = 0; i < statements; i++) {
                    String sql = randomStatement(s, rnd);
                    log.add(sql);
                    s.execute(sql);
                }
            }
            compareAll(rnd, "seed=" + seed + " round=" + round + " statements=" + log, paths);
        }
        System.out.println("[TopKRandomizedTest] seed=" + seed + " refreshes that recomputed / kept the candidates: "
                + paths.entrySet().stream().map(e -> e.getKey() + " " + e.getValue()[0] + "/" + e.getValue()[1]).toList());
        for (TopTable t : TABLES) {
            if (t.reads() && !t.name().equals("top_all")) {
                int[] p = paths.getOrDefault(t.name(), new int[2]);
                assertTrue(p[0] > 0 && p[1] > 0, "seed=" + seed + ": " + t.name() + " took both paths (recomputed " + p[0]
                        + ", kept the candidates " + p[1] + ")");
            }
        }
    }

    private String insertItem(Random rnd) {
        int id = nextId++;
        return "INSERT INTO items VALUES (" + id + ", " + maybeNull(rnd, 7, rnd.nextInt(3)) + ", " + maybeNull(rnd, 8, rnd.nextInt(5))
                + ", " + maybeNull(rnd, 6, rnd.nextInt(12) - 2) + ", " + (rnd.nextInt(9) == 0 ? "NULL" : rnd.nextInt(50) + "." + rnd.nextInt(10))
                + ", " + (rnd.nextInt(9) == 0 ? "NULL" : "'n" + rnd.nextInt(15) + "'") + ")";
    }

    private static String maybeNull(Random rnd, int oneIn, int value) {
        return rnd.nextInt(oneIn) == 0 ? "NULL" : String.valueOf(value);
    }

    /** A row id of a stored top k (deleting or moving it can force the recomputation), or a random id. */
    private int topId(Statement s, Random rnd) throws SQLException {
        String[] withIds = {"top_filter", "top_nulls_first", "top_one", "top_join", "top_tied"};
        List<Integer> ids = new ArrayList<>();
        try (ResultSet rs = s.executeQuery("SELECT id FROM " + withIds[rnd.nextInt(withIds.length)] + " ORDER BY id")) {
            while (rs.next()) {
                ids.add(rs.getInt(1));
            }
        }
        return ids.isEmpty() ? rnd.nextInt(Math.max(nextId, 1)) : ids.get(rnd.nextInt(ids.size()));
    }

    private String randomStatement(Statement s, Random rnd) throws SQLException {
        return switch (rnd.nextInt(14)) {
            case 0, 1 -> insertItem(rnd);
            // crosses the boundary from outside: a high score, a low price
            case 2 -> "INSERT INTO items VALUES (" + nextId++ + ", " + rnd.nextInt(3) + ", " + rnd.nextInt(5) + ", " + (8 + rnd.nextInt(6))
                    + ", 0." + rnd.nextInt(10) + ", 'a" + rnd.nextInt(5) + "')";
            // inside the top k
            case 3, 4 -> "DELETE FROM items WHERE id = " + topId(s, rnd);
            case 5 -> "UPDATE items SET score = score - " + (1 + rnd.nextInt(6)) + ", price = price + " + rnd.nextInt(30) + " WHERE id = "
                    + topId(s, rnd);
            case 6 -> "UPDATE items SET score = " + maybeNull(rnd, 4, rnd.nextInt(12) - 2) + " WHERE id % 7 = " + rnd.nextInt(7);
            case 7 -> "UPDATE items SET price = " + (rnd.nextInt(6) == 0 ? "NULL" : rnd.nextInt(60) + ".5") + " WHERE id % 5 = "
                    + rnd.nextInt(5);
            // rows move between groups, in and out of filters
            case 8 -> "UPDATE items SET g = " + maybeNull(rnd, 5, rnd.nextInt(3)) + " WHERE id % 4 = " + rnd.nextInt(4);
            case 9 -> "UPDATE items SET k = " + maybeNull(rnd, 6, rnd.nextInt(5)) + " WHERE id % 6 = " + rnd.nextInt(6);
            case 10 -> "DELETE FROM items WHERE g = " + rnd.nextInt(3) + " AND id % 2 = " + rnd.nextInt(2);
            case 11 -> "UPDATE cats SET label = 'c" + rnd.nextInt(4) + "' WHERE k = " + rnd.nextInt(5);
            case 12 -> rnd.nextInt(3) == 0 ? "INSERT INTO cats VALUES (" + rnd.nextInt(6) + ", 'c" + rnd.nextInt(3) + "')"
                    : "UPDATE items SET name = " + (rnd.nextInt(5) == 0 ? "NULL" : "'a" + rnd.nextInt(20) + "'") + " WHERE id % 3 = "
                            + rnd.nextInt(3);
            // everything goes, then comes back in later rounds
            default -> rnd.nextInt(8) == 0 ? "DELETE FROM items" : insertItem(rnd);
        };
    }

    private void compareAll(Random rnd, String ctx, Map<String, int[]> paths) throws SQLException {
        for (TopTable t : TABLES) {
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                Map<String, Integer> before = rows(s, "SELECT ROW(t.*)::text FROM " + t.name() + " t");
                long scans = scans(s);
                long last = Long.parseLong(one(s, "SELECT coalesce(max(refresh_id), 0) FROM pgtrickle.pgt_refresh_history WHERE pgt_id = "
                        + db.pgtId(t.name())));
                s.execute("SELECT pgtrickle.refresh_stream_table('" + t.name() + "')");
                boolean recomputed = scans(s) > scans;
                String done = one(s, "SELECT status || ' ' || action || ' ' || rows_inserted || ' ' || rows_deleted"
                        + " FROM pgtrickle.pgt_refresh_history WHERE pgt_id = " + db.pgtId(t.name()) + " AND refresh_id > " + last);
                assertNotNull(done, ctx + " " + t.name());
                String[] h = done.split(" ");
                if (!ctx.endsWith("initial")) {
                    assertTrue(done.startsWith("COMPLETED DIFFERENTIAL") || done.startsWith("COMPLETED NO_DATA"), ctx + " " + t.name() + ": " + done);
                    if (done.startsWith("COMPLETED DIFFERENTIAL")) {
                        paths.computeIfAbsent(t.name(), x -> new int[2])[recomputed ? 0 : 1]++;
                    }
                }
                Map<String, Integer> after = rows(s, "SELECT ROW(t.*)::text FROM " + t.name() + " t");
                long inserted = 0;
                long deleted = 0;
                for (Map.Entry<String, Integer> e : after.entrySet()) {
                    inserted += Math.max(0, e.getValue() - before.getOrDefault(e.getKey(), 0));
                }
                for (Map.Entry<String, Integer> e : before.entrySet()) {
                    deleted += Math.max(0, e.getValue() - after.getOrDefault(e.getKey(), 0));
                }
                assertEquals(inserted + " " + deleted, h[2] + " " + h[3], ctx + ": " + t.name() + " history counts (inserted deleted)");
                String wrong = t.determined() ? determined(s, t) : tied(s, t);
                assertEquals(null, wrong, ctx + ": " + t.name() + " " + wrong + "\n stored " + list(s, "SELECT ROW(t.*)::text FROM "
                        + t.name() + " t") + "\n query  " + list(s, "SELECT ROW(q.*)::text FROM (" + t.query() + ") q"));
            } finally {
                c.commit();
                c.setAutoCommit(true);
            }
        }
    }

    /** Why the stream table differs from its determined query, by value or by text; null if it does not. */
    private static String determined(Statement s, TopTable t) throws SQLException {
        String byValue = "SELECT count(*) FROM ((TABLE " + t.name() + " EXCEPT ALL (" + t.query() + ")) UNION ALL ((" + t.query()
                + ") EXCEPT ALL TABLE " + t.name() + ")) d";
        if (!one(s, byValue).equals("0")) {
            return "differs from its query by value";
        }
        return differ(s, "SELECT ROW(t.*)::text FROM " + t.name() + " t", "SELECT ROW(q.*)::text FROM (" + t.query() + ") q")
                ? "differs from its query by text" : null;
    }

    /** Why the stream table is not a top k of its query with ties; null if it is one. */
    private static String tied(Statement s, TopTable t) throws SQLException {
        String keys = "ROW(" + t.keys() + ")::text";
        if (differ(s, "SELECT " + keys + " FROM " + t.name(), "SELECT " + keys + " FROM (" + t.query() + ") q")) {
            return "holds other ORDER BY keys than the query";
        }
        // the keys of the k-th row; rows with other keys sort strictly before it
        String boundary = "(SELECT " + keys + " FROM (" + t.select() + ") q ORDER BY " + t.order() + " OFFSET " + (t.k() - 1) + " LIMIT 1)";
        String before = " WHERE " + keys + " IS DISTINCT FROM " + boundary;
        if (differ(s, "SELECT ROW(t.*)::text FROM (TABLE " + t.name() + ") t" + before,
                "SELECT ROW(t.*)::text FROM (" + t.query() + ") t" + before)) {
            return "holds other rows than the query before the boundary";
        }
        String extra = "SELECT count(*) FROM (SELECT ROW(t.*)::text FROM " + t.name() + " t EXCEPT ALL SELECT ROW(q.*)::text FROM ("
                + t.select() + ") q) d";
        return one(s, extra).equals("0") ? null : "holds rows the query does not have";
    }

    private static boolean differ(Statement s, String a, String b) throws SQLException {
        return !one(s, "SELECT count(*) FROM ((" + a + " EXCEPT ALL " + b + ") UNION ALL (" + b + " EXCEPT ALL " + a + ")) d").equals("0");
    }

    /** Sequential and index scans of items in this transaction. */
    private static long scans(Statement s) throws SQLException {
        return Long.parseLong(one(s, "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables"
                + " WHERE relid = 'items'::regclass"));
    }

    private static Map<String, Integer> rows(Statement s, String sql) throws SQLException {
        Map<String, Integer> out = new HashMap<>();
        try (ResultSet rs = s.executeQuery(sql)) {
            while (rs.next()) {
                out.merge(rs.getString(1), 1, Integer::sum);
            }
        }
        return out;
    }

    private static String list(Statement s, String sql) throws SQLException {
        return one(s, "SELECT string_agg(x, ' ' ORDER BY x) FROM (" + sql + ") d(x)");
    }

    private static String one(Statement s, String sql) throws SQLException {
        try (ResultSet rs = s.executeQuery(sql)) {
            return rs.next() ? rs.getString(1) : null;
        }
    }
}
