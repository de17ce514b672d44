package io.pgtrickle.refresh.plan;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pgtrickle.testing.MigratedDatabase;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * {@link QueryInliner} on queries as PostgreSQL normalises them (a temporary view's
 * {@code pg_get_viewdef} with only pg_catalog on the search path, as create_stream_table stores
 * them). Every inlined text must be valid SQL that returns exactly the rows of the original, with
 * the same text forms, on data with NULLs and duplicates.
 */
class QueryInlinerTest {

    private static MigratedDatabase db;

    @BeforeAll
    static void schema() throws SQLException {
        db = new MigratedDatabase("inliner", c -> { });
        db.exec("CREATE TABLE a (id int, k int, g text, v numeric)",
                "CREATE TABLE b (k int, name text, m int)",
                "CREATE TABLE c (m int, label text)",
                "INSERT INTO a SELECT i, i % 4, 'g' || (i % 3), i * 1.5 FROM generate_series(1, 12) i",
                "INSERT INTO a VALUES (3, 3, 'g0', 4.5), (13, NULL, NULL, NULL), (14, 2, 'g2', NULL)",
                "INSERT INTO b VALUES (0, 'zero', 1), (1, 'one', 1), (2, 'two', 2), (2, 'deux', NULL), (NULL, 'none', 2), (3, 'three', 3)",
                "INSERT INTO c VALUES (1, 'L1'), (2, 'L2'), (2, 'L2b'), (NULL, 'Ln')");
    }

    @AfterAll
    static void drop() {
        db.close();
    }

    /** The query as create_stream_table stores it. */
    private static String normalised(String query) throws SQLException {
        try (Connection c = db.connect(); Statement s = c.createStatement()) {
            s.execute("CREATE TEMPORARY VIEW v AS " + query);
            s.execute("SET search_path = pg_catalog");
            try (ResultSet rs = s.executeQuery("SELECT pg_get_viewdef('pg_temp.v'::regclass, true)")) {
                rs.next();
                return rs.getString(1).strip().replaceAll(";$", "");
            }
        }
    }

    /** Rows by which two queries differ, compared by text form (duplicates counted). */
    private static long difference(String x, String y) throws SQLException {
        String l = "SELECT ROW(q.*)::text FROM (" + x + ") q";
        String r = "SELECT ROW(q.*)::text FROM (" + y + ") q";
        return db.queryLong("SELECT count(*) FROM ((" + l + " EXCEPT ALL " + r + ") UNION ALL (" + r + " EXCEPT ALL " + l + ")) d");
    }

    private static int selects(String sql) {
        Matcher m = Pattern.compile("\\bSELECT\\b").matcher(sql.toUpperCase(Locale.ROOT));
        int n = 0;
        while (m.find()) {
            n++;
        }
        return n;
    }

    /** Inlines the normalised query, checks it returns the same rows (and some), returns the inlined text. */
    private static String inlined(String query) throws Exception {
        String q = normalised(query);
        String out = QueryInliner.inline(q);
        assertEquals(0, difference(q, out), "inlined: " + out);
        assertTrue(db.queryLong("SELECT count(*) FROM (" + out + ") q") > 0, "the query finds no row, so it proves nothing: " + out);
        return out;
    }

    @Test
    void aSubqueryInFromBecomesItsTablesAndConditions() throws Exception {
        String out = inlined("SELECT s.id, s.v2 FROM (SELECT id, v * 2 AS v2 FROM a WHERE v > 1) s");
        assertEquals(1, selects(out), out);
        assertFalse(out.contains(" s"), out);
        assertTrue(out.contains("a.v * 2::numeric AS v2") && out.contains("WHERE a.v > 1::numeric"), out);
    }

    @Test
    void theEnclosingWhereAndTheSubquerysAreAnded() throws Exception {
        String out = inlined("SELECT s.id FROM (SELECT id, k FROM a WHERE v > 1) s WHERE s.k = 2 OR s.k IS NULL");
        assertEquals(1, selects(out), out);
        assertTrue(out.contains("AND"), out);
    }

    @Test
    void columnAliasListsRenameTheOutputs() throws Exception {
        String out = inlined("SELECT s.x, s.y, b.name FROM (SELECT id, k FROM a) s(x, y) JOIN b ON b.k = s.y WHERE s.x > 2");
        assertEquals(1, selects(out), out);
        assertTrue(out.contains("b.k = a.k") && out.contains("a.id > 2"), out);
        out = inlined("SELECT s.x, s.k FROM (SELECT id, k FROM a) s(x)");
        assertEquals(1, selects(out), out);
    }

    @Test
    void aNameTakenInTheEnclosingQueryIsRenamed() throws Exception {
        String out = inlined("SELECT a.id, s.name, s.aid FROM a JOIN (SELECT a.id AS aid, b.name FROM a JOIN b ON a.k = b.k) s"
                + " ON s.aid = a.k");
        assertEquals(1, selects(out), out);
        assertTrue(out.contains("a_1"), out);
    }

    @Test
    void nestedSubqueriesInlineAllTheWayDown() throws Exception {
        String out = inlined("SELECT t.x, t.n FROM (SELECT s.x, b.name AS n FROM (SELECT id AS x, k FROM a WHERE v > 2) s, b"
                + " WHERE s.k = b.k AND s.x < 11) t WHERE t.n <> 'one'");
        assertEquals(1, selects(out), out);
    }

    @Test
    void aWithQueryUsedTwiceIsCopiedTwiceAndDropped() throws Exception {
        String out = inlined("WITH x AS (SELECT id, k FROM a WHERE v > 0) SELECT x1.id, x2.k FROM x x1 JOIN x x2 ON x1.k = x2.id");
        assertEquals(1, selects(out), out);
        assertFalse(out.toUpperCase(Locale.ROOT).startsWith("WITH"), out);
        assertTrue(out.contains("a_1"), out);
    }

    @Test
    void withQueriesReadingEachOtherAndColumnLists() throws Exception {
        String out = inlined("WITH x(i, kk) AS (SELECT id, k FROM a), y AS (SELECT x.i, b.name FROM x JOIN b ON b.k = x.kk)"
                + " SELECT y.i, y.name, c.label FROM y, c WHERE c.m = y.i % 3");
        assertEquals(1, selects(out), out);
    }

    @Test
    void groupingOverASubquery() throws Exception {
        // TPC-H Q7's shape: unqualified references to the only FROM item, GROUP BY over its columns
        String out = inlined("SELECT g, n, sum(v2) AS total, count(*) AS rows FROM (SELECT a.g, b.name AS n, a.v * 2 AS v2"
                + " FROM a, b WHERE a.k = b.k) shipping GROUP BY g, n");
        assertEquals(1, selects(out), out);
        assertTrue(out.contains("GROUP BY a.g, b.name") && out.contains("sum(a.v * 2::numeric)"), out);
    }

    @Test
    void aGroupKeyOverAnExpressionStillReadsLikeItsSelectItem() throws Exception {
        // TPC-H Q8's shape: GROUP BY an output that is an expression of the subquery
        String out = inlined("SELECT s.m, count(*) AS n FROM (SELECT k % 2 AS m, extract(year FROM date '2024-01-01' + id) AS y"
                + " FROM a) s GROUP BY s.m, s.y");
        assertEquals(1, selects(out), out);
        PlainSelectShape shape = shape(out);
        assertEquals(shape.items().get(0), shape.keys().get(0), out);
        // a constant would become GROUP BY 1, a position: left as it is
        String q = normalised("SELECT s.one, count(*) AS n FROM (SELECT 1 AS one, id FROM a) s GROUP BY s.one");
        assertSame(q, QueryInliner.inline(q));
    }

    @Test
    void likeAsTheDeparserPrintsIt() throws Exception {
        String out = inlined("SELECT s.g FROM (SELECT g FROM a WHERE g LIKE 'g1%' OR g ILIKE 'G2' OR g NOT LIKE 'x%') s"
                + " WHERE s.g NOT ILIKE 'g0%'");
        assertEquals(1, selects(out), out);
        assertFalse(out.contains("~"), out);
    }

    private record PlainSelectShape(java.util.List<String> items, java.util.List<String> keys) {
    }

    private static PlainSelectShape shape(String sql) throws Exception {
        DeltaPlanner.Branch b = DeltaPlanner.parse(sql, name -> new Source(name, "pgtrickle_changes.changes_1",
                java.util.List.of("id", "k", "g", "v"), java.util.List.of("integer", "integer", "text", "numeric"),
                java.util.List.of(true, true, true, true))).branches().get(0);
        return new PlainSelectShape(b.select.getSelectItems().stream().map(i -> i.getExpression().toString()).toList(),
                b.groupKeys().stream().map(Object::toString).toList());
    }

    @Test
    void subqueriesInExplicitJoinsKeepTheirPlace() throws Exception {
        String out = inlined("SELECT a.id, s.label FROM a JOIN (SELECT b.k, c.label FROM b, c WHERE b.m = c.m) s ON s.k = a.k"
                + " JOIN b b2 ON b2.k = a.k");
        assertEquals(1, selects(out), out);
        out = inlined("SELECT s.id, b.name FROM (SELECT a.id, a.k FROM a, c WHERE a.k = c.m) s JOIN b ON b.k = s.k");
        assertEquals(1, selects(out), out);
    }

    @Test
    void aSubqueryThatAggregatesStaysAndOnesBesideItInline() throws Exception {
        String q = normalised("SELECT s.g, t.n FROM (SELECT g, k FROM a) s JOIN (SELECT k, count(*) AS n FROM b GROUP BY k) t ON t.k = s.k");
        String out = QueryInliner.inline(q);
        assertEquals(0, difference(q, out));
        assertEquals(2, selects(out), out);
        assertTrue(out.contains("count(*)"), out);
    }

    @Test
    void whatCannotBeInlinedComesBackByteForByte() throws Exception {
        for (String query : new String[] {
            "SELECT id, v FROM a WHERE v > 1",
            "SELECT a.id, b.name FROM a JOIN b ON a.k = b.k",
            "SELECT g, count(*) AS n FROM a GROUP BY g",
            "SELECT s.g FROM (SELECT g, count(*) AS n FROM a GROUP BY g) s",
            "SELECT s.g FROM (SELECT DISTINCT g FROM a) s",
            "SELECT s.id FROM (SELECT id FROM a ORDER BY id LIMIT 3) s",
            "SELECT s.id FROM (SELECT id FROM a UNION ALL SELECT k FROM b) s",
            "SELECT s.id FROM (SELECT id, row_number() OVER (ORDER BY id) AS r FROM a) s",
            "SELECT s.u FROM (SELECT unnest(ARRAY[id, k]) AS u FROM a) s",
            "SELECT s.r FROM (SELECT random() AS r FROM a) s",
            "SELECT a.id, s.name FROM a LEFT JOIN (SELECT k, name FROM b) s ON s.k = a.k",
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT r.n FROM r",
            "WITH x AS (SELECT g, count(*) AS n FROM a GROUP BY g) SELECT x.g, x.n FROM x",
            "SELECT id FROM a WHERE k IN (SELECT k FROM b)",
            "SELECT l.x FROM a, LATERAL (SELECT a.id + b.k AS x FROM b) l",
            "SELECT v FROM a WHERE date '2024-01-01' - interval '90' day < date '2025-01-01'",
        }) {
            String q = normalised(query);
            assertSame(q, QueryInliner.inline(q), query);
        }
    }

    @Test
    void aSublinkReferenceToTheSubqueryIsRewrittenToo() throws Exception {
        String q = normalised("SELECT s.id FROM (SELECT id, k FROM a) s, b WHERE b.k = s.k"
                + " AND EXISTS (SELECT 1 FROM c WHERE c.m = s.k)");
        String out = QueryInliner.inline(q);
        assertNotEquals(q, out);
        assertEquals(0, difference(q, out), out);
        assertEquals(2, selects(out), out);
    }

    @Test
    void subqueriesInTheInlinedWhereMoveWithIt() throws Exception {
        // TPC-H Q22's shape: NOT EXISTS correlated to the subquery's table, and an uncorrelated scalar
        // subquery reading the same table again
        String out = inlined("SELECT s.g, count(*) AS n, sum(s.v) AS total FROM (SELECT substr(g, 1, 1) AS g, v FROM a"
                + " WHERE NOT EXISTS (SELECT FROM b WHERE b.m = a.k) AND v > (SELECT avg(v) FROM a WHERE v > 0)) s GROUP BY s.g");
        assertEquals(3, selects(out), out);
        assertFalse(out.contains(") s"), out);
        // beside another item, and under a join of the enclosing query
        out = inlined("SELECT s.id, c.label FROM (SELECT id, k FROM a WHERE k IN (SELECT m FROM b WHERE b.name <> 'two')) s, c"
                + " WHERE c.m = s.k");
        assertEquals(2, selects(out), out);
    }

    @Test
    void subqueriesInAnInlinedWhereThatWouldLandInAnOnOrNeedARenameStay() throws Exception {
        // its WHERE would become the join's ON, where subqueries are not maintained
        String q = normalised("SELECT c.label, s.id FROM c JOIN (SELECT id, k FROM a WHERE EXISTS (SELECT FROM b WHERE b.k = a.k)) s"
                + " ON s.k = c.m");
        assertSame(q, QueryInliner.inline(q), q);
        // its table's name is taken outside (PostgreSQL's normalised text never does that: it names
        // the inner one a_1), and the subquery's references would keep the old name
        q = "SELECT a.g, s.id FROM a, (SELECT a.id FROM a WHERE EXISTS (SELECT 1 FROM b WHERE b.k = a.k)) s WHERE s.id = a.id";
        assertSame(q, QueryInliner.inline(q), q);
    }

    @Test
    void theInlinedQueryStillPlansDifferentially() throws Exception {
        // what DeltaPlanner.parse reads: one branch, tables only
        String out = inlined("WITH x AS (SELECT id, k, v FROM a WHERE v IS NOT NULL)"
                + " SELECT x.k, sum(x.v) AS s FROM (SELECT x.k, x.v FROM x) x GROUP BY x.k");
        DeltaPlanner.Parsed parsed = DeltaPlanner.parse(out, name -> new Source(name, "pgtrickle_changes.changes_1",
                java.util.List.of("id", "k", "g", "v"), java.util.List.of("integer", "integer", "text", "numeric"),
                java.util.List.of(true, true, true, true)));
        assertEquals(1, parsed.branches().size());
        assertEquals(1, parsed.branches().get(0).occurrences.size(), out);
    }
}
