package io.pgtrickle.refresh;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * Seeded randomized rounds over UNION, INTERSECT and EXCEPT, with and without ALL, on tables full
 * of duplicate rows and NULLs (a set operation treats two NULLs as the same row): EXCEPT ALL with
 * duplicates on both sides (the peers' bug), INTERSECT ALL taking the smaller count, nested
 * operations, branches that join or filter with a subquery, a self-difference, and branches of
 * different types (an integer and a numeric column meet as numeric).
 * Every stream table refreshes DIFFERENTIAL whenever a source changed (FULL after a TRUNCATE) and
 * equals its query by value and by text form after every round.
 *
 * <p>Reproduce a failure with {@code -Dpgtrickle.test.seed=<seed>} (see {@link RandomizedRefreshTest}).
 */
class SetOperationsRandomizedTest {

    private static final String[] SCHEMA = {
        "CREATE TABLE x (a int, b int)",
        "CREATE TABLE y (a int, b int)",
        "CREATE TABLE z (a numeric, b int)",
    };


    static final String[][] STREAM_TABLES = {
        {"so_union", "SELECT a, b FROM x UNION SELECT a, b FROM y"},
        {"so_intersect", "SELECT a, b FROM x INTERSECT SELECT a, b FROM y"},
        {"so_intersect_all", "SELECT a, b FROM x INTERSECT ALL SELECT a, b FROM y"},
        {"so_except", "SELECT a, b FROM x EXCEPT SELECT a, b FROM y"},
        {"so_except_all", "SELECT a, b FROM x EXCEPT ALL SELECT a, b FROM y"},
        {"so_except_all_filtered", "SELECT a FROM x WHERE b > 1 EXCEPT ALL SELECT a FROM y WHERE b < 4"},
        {"so_nested", "(SELECT a FROM x UNION ALL SELECT b FROM y) EXCEPT ALL SELECT a FROM y"},
        {"so_three", "SELECT a FROM x UNION SELECT a FROM y EXCEPT SELECT b FROM x"},
        {"so_join", "SELECT x.a, y.b FROM x JOIN y ON y.a = x.b INTERSECT ALL SELECT a, b FROM x"},
        {"so_exists", "SELECT a, b FROM x WHERE EXISTS (SELECT FROM y WHERE y.a = x.a) EXCEPT SELECT b, a FROM y"},
        {"so_types", "SELECT a FROM x UNION SELECT a FROM z"},
        {"so_types_all", "SELECT a, b FROM z EXCEPT ALL SELECT b, a FROM x"},
        // INTERSECT ALL under a UNION ALL, and INTERSECT binding tighter than EXCEPT
        {"so_under_union_all", "(SELECT a FROM x INTERSECT ALL SELECT a FROM y) UNION ALL SELECT b FROM x"},
        {"so_precedence", "SELECT a FROM x EXCEPT ALL SELECT a FROM y INTERSECT ALL SELECT b FROM y"},
    };

    @Test
    void everyRoundEqualsTheQueryByValueAndByText() throws Exception {
        new RandomizedRounds("SetOperationsRandomizedTest", SCHEMA, rnd -> {
            List<String> rows = new ArrayList<>();
            for (int i = 0; i < 25; i++) {
                rows.add(insert(rnd, "x"));
                rows.add(insert(rnd, "y"));
            }
            for (int i = 0; i < 8; i++) {
                rows.add(insert(rnd, "z"));
            }
            return rows;
        }, STREAM_TABLES, SetOperationsRandomizedTest::randomStatement, "z").run();
    }

    /** Few distinct values: the same row several times in each table. */
    private static String value(Random rnd) {
        return rnd.nextInt(7) == 0 ? "NULL" : String.valueOf(rnd.nextInt(4));
    }

    private static String insert(Random rnd, String table) {
        // (z's numeric values are whole: 1 and 1.0 would be one row of a set operation, printed as
        // whichever PostgreSQL meets first, so the query's own text would not be determined)
        return "INSERT INTO " + table + " VALUES (" + value(rnd) + ", " + value(rnd) + ")";
    }

    private static String randomStatement(Random rnd) {
        String table = rnd.nextInt(5) == 0 ? "z" : rnd.nextBoolean() ? "x" : "y";
        return switch (rnd.nextInt(7)) {
            case 0, 1 -> insert(rnd, table);
            case 2 -> "DELETE FROM " + table + " WHERE a = " + rnd.nextInt(4) + " AND b IS NOT DISTINCT FROM " + value(rnd);
            // one copy of a duplicated row goes: the count changes, the row stays
            case 3 -> "DELETE FROM " + table + " WHERE ctid = (SELECT min(ctid) FROM " + table + " WHERE b = " + rnd.nextInt(4) + ")";
            case 4 -> "UPDATE " + table + " SET b = " + value(rnd) + " WHERE a IS NOT DISTINCT FROM " + value(rnd);
            case 5 -> "INSERT INTO " + table + " SELECT a, b FROM " + table + " WHERE b = " + rnd.nextInt(4);
            default -> rnd.nextInt(10) == 0 ? "TRUNCATE z" : "UPDATE " + table + " SET a = " + value(rnd) + " WHERE b = " + rnd.nextInt(4);
        };
    }
}
