package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertAll;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.SQLException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

/**
 * The shared corpus of the two judges of "can this query be refreshed differentially": the catalog's
 * {@code pgtrickle.differential_blocker} (which decides at create time, from PostgreSQL's query tree)
 * and the engine's planner (which later derives the statement from the normalised text). Every query
 * the first accepts, the second must plan, and the planned refresh must be DIFFERENTIAL and correct;
 * every query it refuses carries a reason that names the construct.
 */
class DifferentialShapesTest {

    /**
     * Query to null (differential) or a fragment of the reason it is refreshed FULL; the reason of a
     * query the catalog accepts and the planner then refuses (FULL from its first plan, with the
     * planner's reason in explain_refresh_mode) starts with {@link #PLANNER}.
     */
    static final Map<String, String> CORPUS = new LinkedHashMap<>();

    static final String PLANNER = "planner: ";

    static {
        CORPUS.put("SELECT id, v FROM a WHERE v > 1", null);
        CORPUS.put("SELECT id, v * 2 AS v2, g || '!' AS g2 FROM a", null);
        // PostgreSQL prints LIKE and ILIKE as the operators ~~ and ~~*
        CORPUS.put("SELECT id, g FROM a WHERE g LIKE 'g%' AND g NOT ILIKE 'G2%'", null);
        CORPUS.put("SELECT id, v FROM a ORDER BY v", null);
        CORPUS.put("SELECT a.id, b.name FROM a JOIN b ON a.k = b.k", null);
        CORPUS.put("SELECT a.id, b.name FROM a, b WHERE a.k = b.k AND b.name <> 'x'", null);
        CORPUS.put("SELECT a.id, b.name FROM a CROSS JOIN b", null);
        CORPUS.put("SELECT a.id, b.name FROM a JOIN b USING (k)", null);
        CORPUS.put("SELECT x.id, y.g FROM a x JOIN a y ON x.k = y.id", null);
        CORPUS.put("SELECT a.id, c.label FROM a JOIN b ON a.k = b.k JOIN c ON c.m = b.m", null);
        CORPUS.put("SELECT g, count(*) AS n, count(v) AS nv, sum(v) AS s, avg(v) AS m, min(v) AS lo, max(v) AS hi FROM a GROUP BY g", null);
        CORPUS.put("SELECT g, count(*) AS n FROM a GROUP BY g HAVING sum(v) > 1", null);
        CORPUS.put("SELECT upper(g) AS ug, count(*) AS n FROM a GROUP BY upper(g)", null);
        CORPUS.put("SELECT g, string_agg(id::text, ',' ORDER BY id) AS ids, count(DISTINCT k) AS ks FROM a GROUP BY g", null);
        CORPUS.put("SELECT b.name, sum(a.v) AS s FROM a JOIN b ON a.k = b.k GROUP BY b.name", null);
        CORPUS.put("SELECT DISTINCT g, k FROM a", null);
        CORPUS.put("SELECT id, g FROM a WHERE g LIKE 'g1%' OR g NOT LIKE '%2' OR g ILIKE 'G0' OR g NOT ILIKE 'x%'", null);
        CORPUS.put("SELECT id FROM a UNION ALL SELECT k FROM b UNION ALL SELECT m FROM c WHERE m > 1", null);
        // subqueries in FROM and WITH queries that are plain SELECTs: inlined
        CORPUS.put("SELECT s.id FROM (SELECT id FROM a) s", null);
        CORPUS.put("SELECT s.id, s.v2 FROM (SELECT id, v * 2 AS v2 FROM a WHERE v > 1) s WHERE s.v2 < 20", null);
        CORPUS.put("SELECT s.x, b.name FROM (SELECT id, k FROM a) s(x, y) JOIN b ON b.k = s.y", null);
        CORPUS.put("SELECT a.id, s.label FROM a JOIN (SELECT b.k, c.label FROM b, c WHERE b.m = c.m) s ON s.k = a.k", null);
        CORPUS.put("SELECT t.id FROM (SELECT s.id FROM (SELECT id, v FROM a) s WHERE s.v > 3) t", null);
        CORPUS.put("SELECT s.g, count(*) AS n, sum(s.v) AS sv FROM (SELECT a.g, a.v, b.name FROM a JOIN b ON a.k = b.k) s GROUP BY s.g", null);
        CORPUS.put("SELECT s.id FROM (SELECT id FROM a WHERE v > 4) s UNION ALL SELECT k FROM b", null);
        CORPUS.put("SELECT s.g, count(*) AS n FROM (SELECT g FROM a WHERE NOT EXISTS (SELECT FROM b WHERE b.k = a.k)) s GROUP BY s.g", null);
        CORPUS.put("WITH x AS MATERIALIZED (SELECT id FROM a) SELECT id FROM x", null);
        CORPUS.put("WITH x AS (SELECT id FROM a) SELECT b.k FROM b", null);
        CORPUS.put("WITH x AS (SELECT id, k FROM a WHERE v > 2) SELECT x1.id, x2.k FROM x x1 JOIN x x2 ON x1.k = x2.id", null);
        CORPUS.put("WITH x AS (SELECT id, g FROM a), y AS (SELECT x.id, x.g FROM x WHERE x.id > 2) SELECT DISTINCT y.g FROM y", null);
        // a source column without equality: its changes cannot be netted out first, the plan still works
        CORPUS.put("SELECT aj.id, b.name FROM aj JOIN b ON b.k = aj.id", null);

        // outer joins: matched and padded branches
        CORPUS.put("SELECT a.id, b.name FROM a LEFT JOIN b ON a.k = b.k", null);
        CORPUS.put("SELECT a.id, b.name FROM a FULL JOIN b ON a.k = b.k", null);
        CORPUS.put("SELECT a.id, b.name FROM a RIGHT JOIN b ON a.k = b.k AND a.v > 2", null);
        CORPUS.put("SELECT a.id, b.name, c.label FROM a LEFT JOIN b ON a.k = b.k LEFT JOIN c ON c.m = b.m WHERE c.label IS NULL", null);
        CORPUS.put("SELECT a.id, coalesce(b.name, 'none') AS name FROM a LEFT JOIN b ON a.k = b.k ORDER BY a.id LIMIT 4", null);
        CORPUS.put("SELECT a.g, count(b.name) AS n FROM a LEFT JOIN b ON a.k = b.k GROUP BY a.g", null);
        CORPUS.put("SELECT DISTINCT b.name FROM a RIGHT JOIN b ON a.k = b.k", null);
        CORPUS.put("SELECT count(b.name) AS n FROM a LEFT JOIN b ON a.k = b.k", "over an outer join without GROUP BY");
        CORPUS.put("SELECT a.id, b.name FROM a JOIN c ON c.m = a.k RIGHT JOIN b ON a.k = b.k", PLANNER + "RIGHT or FULL join after other joins");
        CORPUS.put("SELECT a.id, b.name FROM a LEFT JOIN b USING (k)", PLANNER + "outer join with USING");
        CORPUS.put("SELECT k, id, name FROM a NATURAL JOIN b", "NATURAL JOIN");
        CORPUS.put("SELECT id FROM a WHERE k IN (SELECT k FROM b)", null);
        CORPUS.put("SELECT id FROM a WHERE EXISTS (SELECT FROM b WHERE b.k = a.k)", null);
        CORPUS.put("SELECT id FROM a WHERE NOT EXISTS (SELECT FROM b WHERE b.k = a.k AND b.m > 1) AND v > 2", null);
        CORPUS.put("SELECT id FROM a WHERE k NOT IN (SELECT m FROM b)", null);
        CORPUS.put("SELECT id FROM a WHERE v > (SELECT avg(m) FROM b WHERE b.k = a.k)", null);
        CORPUS.put("SELECT id FROM a WHERE v >= (SELECT count(*) FROM c)", null);
        CORPUS.put("SELECT g, count(*) AS n FROM a WHERE EXISTS (SELECT FROM b JOIN c ON c.m = b.m WHERE b.k = a.k) GROUP BY g", null);
        CORPUS.put("SELECT id FROM a WHERE EXISTS (SELECT FROM b WHERE b.k = a.k) OR v > 3", "subquer");
        CORPUS.put("SELECT g, sum(k) AS s FROM a GROUP BY g HAVING sum(k) > (SELECT count(*) FROM b)", null);
        CORPUS.put("SELECT g, sum(k) AS s FROM a GROUP BY g HAVING sum(k) > (SELECT count(*) FROM b WHERE b.k = sum(a.k))", "HAVING");
        CORPUS.put("SELECT id, (SELECT max(m) FROM b) AS top FROM a", "subqueries");
        // aggregating subqueries in FROM and WITH queries of the query itself: derived tables
        CORPUS.put("SELECT s.g FROM (SELECT g, count(*) AS n FROM a GROUP BY g) s", null);
        CORPUS.put("SELECT s.g FROM (SELECT DISTINCT g FROM a) s", null);
        CORPUS.put("SELECT a.id, s.n FROM a LEFT JOIN (SELECT k, count(*) AS n FROM b GROUP BY k HAVING count(*) > 1) s ON s.k = a.k", null);
        CORPUS.put("SELECT t.x, t.y FROM (SELECT g, sum(v) FROM a GROUP BY g) t(x, y) WHERE t.y > 3", null);
        CORPUS.put("SELECT t.g FROM (SELECT s.g FROM (SELECT g, count(*) AS n FROM a GROUP BY g) s WHERE s.n > 1) t",
                "a subquery of the query has a subquery in FROM that aggregates");
        CORPUS.put("SELECT id FROM a WHERE k IN (SELECT s.k FROM (SELECT k, count(*) AS n FROM b GROUP BY k) s)",
                "a subquery of the query has a subquery in FROM that aggregates");
        CORPUS.put("WITH x AS (SELECT g, count(*) AS n FROM a GROUP BY g), y AS (SELECT n, count(*) AS m FROM x GROUP BY n)"
                + " SELECT y.n, y.m FROM y", null);
        CORPUS.put("SELECT s.n FROM (SELECT max(v) AS n FROM a) s", PLANNER + "kept as a derived table");
        CORPUS.put("SELECT s.id FROM (SELECT id FROM a ORDER BY id LIMIT 3) s", "subquery in FROM that uses LIMIT");
        CORPUS.put("SELECT s.id FROM (SELECT id FROM a UNION ALL SELECT k FROM b) s", "subquery in FROM that uses UNION");
        CORPUS.put("WITH x AS (SELECT g, count(*) AS n FROM a GROUP BY g) SELECT x.g, x.n FROM x", null);
        CORPUS.put("WITH x AS (SELECT g, sum(v) AS s FROM a GROUP BY g) SELECT b.name, x.s FROM b, x"
                + " WHERE x.g = b.name AND x.s = (SELECT max(s) FROM x)", null);
        CORPUS.put("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT a.id FROM a, r WHERE r.n = a.id",
                "WITH RECURSIVE");
        CORPUS.put("SELECT a.id, l.x FROM a, LATERAL (SELECT a.id + b.k AS x FROM b) l", "LATERAL");
        CORPUS.put("SELECT a.id, s.name FROM a LEFT JOIN (SELECT k, name FROM b) s ON s.k = a.k", "outer join");
        // the catalog accepts it, the planner does not inline a subquery joined with USING: FULL
        CORPUS.put("SELECT a.id, s.name FROM a JOIN (SELECT k, name FROM b) s USING (k)", PLANNER + "subquery in FROM");
        CORPUS.put("SELECT count(*) AS n FROM a", null);
        CORPUS.put("SELECT count(*) AS n, sum(k) AS s, avg(k) AS m, 100.0 * sum(k) / count(*) AS pct FROM a WHERE id > 2", null);
        CORPUS.put("SELECT g, sum(k) AS s FROM a GROUP BY g HAVING avg(k) > 1", null);
        // unconstrained numeric: a running sum would keep the largest scale it ever saw
        CORPUS.put("SELECT sum(v) AS s FROM a", "without GROUP BY");
        CORPUS.put("SELECT max(k) AS top FROM a", "without GROUP BY");
        CORPUS.put("SELECT g, count(*) AS n FROM a GROUP BY g, k", "not in the select list");
        CORPUS.put("SELECT id, row_number() OVER (ORDER BY id) AS r FROM a", "without PARTITION BY");
        // window functions: the partitions the changes touch, recomputed
        CORPUS.put("SELECT id, g, row_number() OVER (PARTITION BY g ORDER BY id) AS r FROM a", null);
        CORPUS.put("SELECT a.id, b.name, sum(a.k) OVER (PARTITION BY b.name ORDER BY a.id) AS s FROM a JOIN b ON a.k = b.k", null);
        CORPUS.put("SELECT g, id, count(*) OVER (PARTITION BY g) AS n, rank() OVER (PARTITION BY g, k ORDER BY v) AS r FROM a", null);
        CORPUS.put("SELECT id, sum(v) OVER (PARTITION BY k) AS s FROM a", PLANNER + "is not in the select list");
        CORPUS.put("SELECT g, count(*) AS n, rank() OVER (PARTITION BY g ORDER BY count(*)) AS r FROM a GROUP BY g",
                "window functions over GROUP BY");
        // DISTINCT ON: the keys the changes touch, recomputed
        CORPUS.put("SELECT DISTINCT ON (g) g, id FROM a ORDER BY g, id", null);
        CORPUS.put("SELECT DISTINCT ON (a.g) a.g, b.name FROM a JOIN b ON a.k = b.k ORDER BY a.g, a.v DESC, a.id, b.name", null);
        CORPUS.put("SELECT DISTINCT ON (g) g, id FROM a ORDER BY g, id LIMIT 2", "ORDER BY ... LIMIT over DISTINCT ON");
        CORPUS.put("SELECT DISTINCT ON (g) g, count(*) AS n FROM a GROUP BY g, k ORDER BY g, k", "DISTINCT ON over GROUP BY");
        CORPUS.put("SELECT s.g FROM (SELECT DISTINCT ON (g) g, id FROM a ORDER BY g, id) s", "a subquery uses DISTINCT ON");
        CORPUS.put("SELECT DISTINCT ON (k) id FROM a ORDER BY k, id", PLANNER + "DISTINCT ON expression");
        // set operations: the rows the changes touch, recomputed
        CORPUS.put("SELECT id FROM a UNION SELECT k FROM b", null);
        CORPUS.put("SELECT id FROM a INTERSECT ALL SELECT k FROM b", null);
        CORPUS.put("SELECT k, g FROM a EXCEPT SELECT b.k, b.name FROM b WHERE b.m > 1", null);
        CORPUS.put("(SELECT k FROM a UNION ALL SELECT m FROM c) EXCEPT ALL SELECT k FROM b", null);
        CORPUS.put("SELECT id FROM a UNION SELECT k FROM b ORDER BY 1 LIMIT 3", PLANNER + "ORDER BY ... LIMIT over UNION");
        CORPUS.put("SELECT k FROM a UNION SELECT k FROM b GROUP BY k", "branch of UNION, INTERSECT or EXCEPT aggregates");
        CORPUS.put("SELECT id FROM a UNION ALL SELECT k FROM b GROUP BY k", "UNION ALL branch");
        CORPUS.put("SELECT g, count(*) AS n FROM a GROUP BY ROLLUP (g)", "GROUPING SETS");
        // ORDER BY ... LIMIT: the first k rows (TopK), over each strategy; ORDER BY ends in a key, so
        // the query's own result is determined and the comparison below is exact
        CORPUS.put("SELECT id, v FROM a ORDER BY v, id LIMIT 3", null);
        CORPUS.put("SELECT a.id, b.name FROM a JOIN b ON a.k = b.k ORDER BY b.name DESC NULLS LAST, a.id LIMIT 4", null);
        CORPUS.put("SELECT g, count(*) AS n, min(v) AS lo FROM a GROUP BY g ORDER BY min(v) DESC NULLS FIRST, g LIMIT 2", null);
        CORPUS.put("SELECT g, count(*) AS n, sum(k) AS s FROM a GROUP BY g ORDER BY 3 DESC, g LIMIT 2", null);
        CORPUS.put("SELECT g, count(*) AS n FROM a GROUP BY g ORDER BY g LIMIT 50", null);
        CORPUS.put("SELECT id FROM a UNION ALL SELECT k FROM b ORDER BY 1 LIMIT 5", null);
        CORPUS.put("SELECT id, v FROM a ORDER BY v, id LIMIT 0", null);
        CORPUS.put("SELECT id, v FROM a ORDER BY v, id LIMIT 3 OFFSET 1", "OFFSET");
        CORPUS.put("SELECT id, v FROM a ORDER BY v FETCH FIRST 3 ROWS WITH TIES", "WITH TIES");
        CORPUS.put("SELECT id, random() AS r FROM a", "volatile");
        CORPUS.put("SELECT id, j FROM aj", "hash function");
        CORPUS.put("SELECT ctid::text AS t FROM a", "system columns");
        CORPUS.put("SELECT id FROM a_view", "not captured");
        CORPUS.put("SELECT id, twice FROM gen", "generated columns");
        CORPUS.put("SELECT i FROM generate_series(1, 3) i", "no table");
        CORPUS.put("SELECT a.id, s.i FROM a, generate_series(1, 2) s(i)", "non-table FROM item");
        CORPUS.put("SELECT id, unnest(ARRAY[1, 2]) AS u FROM a", "set-returning");
    }

    private static RefreshDatabase db;

    @BeforeAll
    static void schema() throws SQLException {
        db = new RefreshDatabase("refresh_shapes");
        db.exec("CREATE TABLE a (id int PRIMARY KEY, k int, g text, v numeric)",
                "CREATE TABLE aj (id int, j json)",
                "INSERT INTO aj SELECT i, '{}' FROM generate_series(0, 3) i",
                "CREATE TABLE b (k int, name text, m int)",
                "CREATE TABLE c (m int, label text)",
                "CREATE TABLE gen (id int, twice int GENERATED ALWAYS AS (id * 2) STORED)",
                "CREATE VIEW a_view AS SELECT id FROM a",
                "INSERT INTO a SELECT i, i % 4, 'g' || (i % 3), i FROM generate_series(1, 12) i",
                "INSERT INTO b VALUES (0, 'zero', 1), (1, 'one', 1), (2, 'two', 2), (2, 'deux', NULL), (NULL, 'none', 2)",
                "INSERT INTO c VALUES (1, 'L1'), (2, 'L2'), (2, 'L2b')",
                "INSERT INTO gen VALUES (1), (2)");
    }

    @AfterAll
    static void drop() throws Exception {
        db.close();
    }

    @Test
    void theCatalogAndThePlannerAgreeOnEveryShape() throws SQLException {
        List<Executable> checks = new ArrayList<>();
        int n = 0;
        for (Map.Entry<String, String> e : CORPUS.entrySet()) {
            String name = "shape_" + n++;
            String query = e.getKey();
            db.exec("SELECT pgtrickle.create_stream_table('" + name + "', $q$" + query + "$q$, 'calculated')");
            String classified = db.queryString("SELECT effective_mode || '|' || coalesce(downgrade_reason, '')"
                    + " FROM pgtrickle.explain_refresh_mode(?)", name);
            if (e.getValue() != null && e.getValue().startsWith(PLANNER)) {
                checks.add(() -> assertEquals("DIFFERENTIAL|", classified, query));
                db.plan(name);
                String planned = db.queryString("SELECT effective_mode || '|' || coalesce(downgrade_reason, '')"
                        + " FROM pgtrickle.explain_refresh_mode(?)", name);
                String reason = e.getValue().substring(PLANNER.length());
                checks.add(() -> assertTrue(planned.startsWith("FULL|") && planned.contains(reason), query + " -> " + planned));
            } else if (e.getValue() == null) {
                checks.add(() -> assertEquals("DIFFERENTIAL|", classified, query));
                db.plan(name);
                String planned = db.queryString("SELECT effective_mode || '|' || coalesce(downgrade_reason, '')"
                        + " FROM pgtrickle.explain_refresh_mode(?)", name);
                checks.add(() -> assertEquals("DIFFERENTIAL|", planned, "the planner refused what the catalog accepted: " + query));
            } else {
                // refused at create time, or else by the planner
                db.plan(name);
                String planned = db.queryString("SELECT effective_mode || '|' || coalesce(downgrade_reason, '')"
                        + " FROM pgtrickle.explain_refresh_mode(?)", name);
                checks.add(() -> assertTrue(planned.startsWith("FULL|") && planned.contains(e.getValue()),
                        query + " -> " + classified + " (planned: " + planned + ")"));
            }
        }
        assertAll(checks);

        // one round of changes: every differential shape refreshes DIFFERENTIAL and equals its query
        db.exec("UPDATE a SET v = v + 1, k = k + 1 WHERE id % 3 = 0",
                "DELETE FROM a WHERE id = 5",
                "INSERT INTO a VALUES (20, 2, 'g9', NULL), (21, NULL, NULL, 3)",
                "UPDATE aj SET id = id + 1 WHERE id = 2",
                "UPDATE b SET m = 2 WHERE name = 'one'",
                "INSERT INTO c VALUES (1, 'L1')");
        n = 0;
        for (Map.Entry<String, String> e : CORPUS.entrySet()) {
            String name = "shape_" + n++;
            db.exec("SELECT pgtrickle.refresh_stream_table('" + name + "')");
            String action = db.queryString("SELECT action FROM pgtrickle.pgt_refresh_history"
                    + " WHERE pgt_id = ? ORDER BY refresh_id DESC LIMIT 1", db.pgtId(name));
            // compared as text: json has no equality operator
            long differ = e.getKey().contains("random()") ? 0 : db.queryLong("SELECT count(*) FROM ((SELECT __st::text FROM "
                    + name + " __st EXCEPT ALL SELECT __q::text FROM (" + e.getKey() + ") __q) UNION ALL (SELECT __q::text FROM ("
                    + e.getKey() + ") __q EXCEPT ALL SELECT __st::text FROM " + name + " __st)) d");
            String query = e.getKey();
            if (e.getValue() == null) {
                checks.add(() -> assertEquals("DIFFERENTIAL", action, query));
            }
            checks.add(() -> assertEquals(0, differ, query + ": rows differing from the query after a " + action + " refresh"));
        }
        assertAll(checks);
        assertNotNull(db.queryString("SELECT delta_sql FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'shape_0'"));
    }
}
