package io.pgtrickle.refresh;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * Seeded randomized rounds over window functions with PARTITION BY: ranking (row_number, rank,
 * dense_rank, ntile), running and whole-partition aggregates, frames (ROWS BETWEEN, RANGE with
 * peers), lag/lead/first_value, several windows sharing part of their partition key, a window over
 * a join (the peers' bug), over a filtered subquery, over a LEFT JOIN, and NULL partition keys.
 * Rows move between partitions (an UPDATE of the key touches the old and the new one). Each
 * window's ORDER BY ends in the unique id, so the query's own result is determined. Every stream
 * table refreshes DIFFERENTIAL whenever a source changed (FULL after a TRUNCATE) and equals its
 * query by value and by text form after every round.
 *
 * <p>Reproduce a failure with {@code -Dpgtrickle.test.seed=<seed>} (see {@link RandomizedRefreshTest}).
 */
class WindowsRandomizedTest {

    static final String[] SCHEMA = {
        "CREATE TABLE e (id int PRIMARY KEY, dept int, grade int, pay numeric(8,2))",
        "CREATE TABLE d (dept int, region text)",
    };

    static final String[][] STREAM_TABLES = {
        {"w_rank", "SELECT id, dept, row_number() OVER (PARTITION BY dept ORDER BY pay, id) AS rn,"
                + " rank() OVER (PARTITION BY dept ORDER BY pay) AS rk, dense_rank() OVER (PARTITION BY dept ORDER BY pay) AS drk FROM e"},
        {"w_running", "SELECT id, dept, sum(pay) OVER (PARTITION BY dept ORDER BY id) AS running,"
                + " count(*) OVER (PARTITION BY dept) AS n, avg(pay) OVER (PARTITION BY dept) AS mean FROM e"},
        {"w_frames", "SELECT id, dept, sum(pay) OVER (PARTITION BY dept ORDER BY id ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING) AS around,"
                + " max(pay) OVER (PARTITION BY dept ORDER BY grade RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS best FROM e"},
        {"w_offsets", "SELECT id, dept, lag(pay) OVER (PARTITION BY dept ORDER BY id) AS prev, lead(id, 2) OVER (PARTITION BY dept ORDER BY id) AS next2,"
                + " first_value(id) OVER (PARTITION BY dept ORDER BY pay DESC, id) AS top, ntile(2) OVER (PARTITION BY dept ORDER BY id) AS half FROM e"},
        {"w_shared_key", "SELECT id, dept, grade, count(*) OVER (PARTITION BY dept, grade) AS same,"
                + " row_number() OVER (PARTITION BY dept ORDER BY grade, id) AS pos FROM e"},
        {"w_join", "SELECT e.id, d.region, rank() OVER (PARTITION BY d.region ORDER BY e.pay, e.id) AS rk,"
                + " sum(e.pay) OVER (PARTITION BY d.region) AS total FROM e JOIN d ON d.dept = e.dept"},
        {"w_subquery", "SELECT s.id, s.dept, row_number() OVER (PARTITION BY s.dept ORDER BY s.id DESC) AS rn"
                + " FROM (SELECT id, dept FROM e WHERE grade > 1) s"},
        {"w_left_join", "SELECT e.id, d.region, count(*) OVER (PARTITION BY d.region) AS n FROM e LEFT JOIN d ON d.dept = e.dept"},
        {"w_expression_key", "SELECT id, dept % 2 AS parity, row_number() OVER (PARTITION BY dept % 2 ORDER BY id) AS rn FROM e"},
    };

    @Test
    void everyRoundEqualsTheQueryByValueAndByText() throws Exception {
        rounds("WindowsRandomizedTest", STREAM_TABLES).run();
    }

    /**
     * The suite's rounds over other stream tables of e and d (DistinctOnRandomizedTest): 40 rows of
     * e and 5 of d, then inserts, deletes and updates that move rows between partitions (keys).
     */
    static RandomizedRounds rounds(String name, String[][] streamTables) {
        int[] next = {40}; // e's next id: its primary key
        return new RandomizedRounds(name, SCHEMA, rnd -> {
            List<String> rows = new ArrayList<>();
            for (int i = 0; i < next[0]; i++) {
                rows.add(insertE(rnd, i));
            }
            for (int i = 0; i < 5; i++) {
                rows.add(insertD(rnd));
            }
            return rows;
        }, streamTables, rnd -> switch (rnd.nextInt(9)) {
            case 0, 1 -> insertE(rnd, next[0]++);
            case 2 -> "DELETE FROM e WHERE id % 7 = " + rnd.nextInt(7);
            // rows move between partitions
            case 3 -> "UPDATE e SET dept = " + nullable(rnd, 5) + " WHERE id % 9 = " + rnd.nextInt(9);
            case 4 -> "UPDATE e SET pay = pay + " + (rnd.nextInt(5) - 2) + " WHERE dept = " + rnd.nextInt(5);
            case 5 -> "UPDATE e SET grade = " + rnd.nextInt(4) + " WHERE id = " + rnd.nextInt(next[0]);
            case 6 -> insertD(rnd);
            case 7 -> "UPDATE d SET region = " + region(rnd) + " WHERE dept = " + rnd.nextInt(5);
            default -> rnd.nextInt(6) == 0 ? "TRUNCATE d" : "DELETE FROM d WHERE dept = " + rnd.nextInt(5);
        }, "d");
    }

    private static String nullable(Random rnd, int bound) {
        return rnd.nextInt(8) == 0 ? "NULL" : String.valueOf(rnd.nextInt(bound));
    }

    private static String region(Random rnd) {
        return rnd.nextInt(6) == 0 ? "NULL" : "'r" + rnd.nextInt(3) + "'";
    }

    private static String insertE(Random rnd, int id) {
        return "INSERT INTO e VALUES (" + id + ", " + nullable(rnd, 5) + ", " + rnd.nextInt(4) + ", " + (10 + rnd.nextInt(10)) + ".50)";
    }

    private static String insertD(Random rnd) {
        return "INSERT INTO d VALUES (" + nullable(rnd, 5) + ", " + region(rnd) + ")";
    }
}
