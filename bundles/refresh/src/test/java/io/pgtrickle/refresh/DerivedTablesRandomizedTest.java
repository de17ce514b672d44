package io.pgtrickle.refresh;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * Seeded randomized rounds over aggregating subqueries in FROM and WITH queries that aggregate,
 * each kept as a derived table of the stream table: counts of counts over an outer join (TPC-H
 * Q13's shape), the rows holding the largest of the sums (Q15's: the derived table is read twice,
 * once under a scalar subquery), an aggregate joined back to its table, on the padded side of a
 * LEFT JOIN, DISTINCT, HAVING with min/max, two derived tables in one query, a one-row aggregate,
 * a WITH query that aggregates another WITH query, renamed columns, and WITH queries that aggregate
 * other aggregating ones (derived tables reading derived tables). Groups appear, change and
 * vanish; the source of a derived table is truncated now and then (FULL, which refills it). Every
 * stream table refreshes DIFFERENTIAL whenever a source changed and equals its query by value and
 * by text form after every round.
 *
 * <p>Reproduce a failure with {@code -Dpgtrickle.test.seed=<seed>} (see {@link RandomizedRefreshTest}).
 */
class DerivedTablesRandomizedTest {

    private static final String[] SCHEMA = {
        "CREATE TABLE c (id int PRIMARY KEY, grp int, bal numeric(8,2))",
        "CREATE TABLE o (id int PRIMARY KEY, cust int, amount numeric(8,2), note text)",
    };

    static final String[][] STREAM_TABLES = {
        {"dt_counts_of_counts", "SELECT c_orders.n, count(*) AS customers FROM (SELECT c.id, count(o.id) AS n FROM c"
                + " LEFT JOIN o ON o.cust = c.id AND o.note NOT LIKE '%special%' GROUP BY c.id) c_orders GROUP BY c_orders.n"},
        {"dt_largest_sum", "WITH rev AS (SELECT cust, sum(amount) AS total FROM o GROUP BY cust)"
                + " SELECT c.id, c.grp, rev.total FROM c, rev WHERE c.id = rev.cust AND rev.total = (SELECT max(total) FROM rev)"},
        {"dt_join_back", "SELECT c.id, c.grp, s.n, s.total FROM c JOIN (SELECT cust, count(*) AS n, sum(amount) AS total FROM o"
                + " GROUP BY cust) s ON s.cust = c.id WHERE s.n > 1"},
        {"dt_padded", "SELECT c.id, coalesce(s.total, 0) AS total FROM c LEFT JOIN (SELECT cust, sum(amount) AS total FROM o"
                + " GROUP BY cust) s ON s.cust = c.id"},
        {"dt_distinct", "SELECT d.grp, count(*) AS n FROM (SELECT DISTINCT c.grp, o.cust FROM c JOIN o ON o.cust = c.id) d GROUP BY d.grp"},
        {"dt_having_extremes", "SELECT s.cust, s.hi, s.lo FROM (SELECT cust, max(amount) AS hi, min(amount) AS lo FROM o"
                + " GROUP BY cust HAVING count(*) > 1) s WHERE s.hi > 12"},
        {"dt_two", "SELECT a.cust, a.n, b.m FROM (SELECT cust, count(*) AS n FROM o GROUP BY cust) a"
                + " JOIN (SELECT grp, count(*) AS m FROM c GROUP BY grp) b ON b.grp = a.cust % 3"},
        {"dt_one_row", "SELECT s.total, s.n, c.id FROM (SELECT sum(amount) AS total, count(*) AS n FROM o) s JOIN c ON c.id = s.n % 7"},
        {"dt_with_chain", "WITH big AS (SELECT id, cust, amount FROM o WHERE amount > 11), per AS (SELECT cust, count(*) AS n FROM big"
                + " GROUP BY cust) SELECT c.grp, sum(per.n) AS n FROM c JOIN per ON per.cust = c.id GROUP BY c.grp"},
        {"dt_renamed", "SELECT t.k, t.v FROM (SELECT grp, count(*) FROM c GROUP BY grp) t(k, v)"},
        // WITH queries that aggregate another: customers (and their total) per order count; the most orders per group
        {"dt_histogram", "WITH per AS (SELECT cust, count(*) AS n, sum(amount) AS total FROM o GROUP BY cust),"
                + " hist AS (SELECT n, count(*) AS customers, sum(total) AS total FROM per GROUP BY n)"
                + " SELECT hist.n, hist.customers, hist.total FROM hist"},
        {"dt_chain_joined", "WITH per AS (SELECT cust, count(*) AS n FROM o GROUP BY cust), big AS (SELECT c.grp, max(per.n) AS most"
                + " FROM c JOIN per ON per.cust = c.id GROUP BY c.grp) SELECT big.grp, big.most FROM big WHERE big.most > 1"},
    };

    @Test
    void everyRoundEqualsTheQueryByValueAndByText() throws Exception {
        int[] next = {30, 60}; // c's and o's next ids: their primary keys
        new RandomizedRounds("DerivedTablesRandomizedTest", SCHEMA, rnd -> {
            List<String> rows = new ArrayList<>();
            for (int i = 0; i < next[0]; i++) {
                rows.add(insertC(rnd, i));
            }
            for (int i = 0; i < next[1]; i++) {
                rows.add(insertO(rnd, i));
            }
            return rows;
        }, STREAM_TABLES, rnd -> switch (rnd.nextInt(10)) {
            case 0, 1, 2 -> insertO(rnd, next[1]++);
            case 3 -> "DELETE FROM o WHERE id % 11 = " + rnd.nextInt(11);
            // orders move between customers, and in and out of the filters
            case 4 -> "UPDATE o SET cust = " + nullable(rnd, 40) + " WHERE id % 13 = " + rnd.nextInt(13);
            case 5 -> "UPDATE o SET amount = amount + " + (rnd.nextInt(5) - 2) + ", note = " + note(rnd) + " WHERE cust = " + rnd.nextInt(40);
            case 6 -> insertC(rnd, next[0]++);
            case 7 -> "UPDATE c SET grp = " + nullable(rnd, 4) + " WHERE id % 7 = " + rnd.nextInt(7);
            case 8 -> "DELETE FROM c WHERE id = " + rnd.nextInt(next[0]);
            default -> rnd.nextInt(8) == 0 ? "TRUNCATE o" : "DELETE FROM o WHERE cust = " + rnd.nextInt(40);
        }, "o").run();
    }

    private static String nullable(Random rnd, int bound) {
        return rnd.nextInt(10) == 0 ? "NULL" : String.valueOf(rnd.nextInt(bound));
    }

    private static String note(Random rnd) {
        return switch (rnd.nextInt(4)) {
            case 0 -> "'a special request'";
            case 1 -> "NULL";
            default -> "'n" + rnd.nextInt(3) + "'";
        };
    }

    private static String insertC(Random rnd, int id) {
        return "INSERT INTO c VALUES (" + id + ", " + nullable(rnd, 4) + ", " + rnd.nextInt(100) + ".25)";
    }

    private static String insertO(Random rnd, int id) {
        return "INSERT INTO o VALUES (" + id + ", " + nullable(rnd, 40) + ", " + (10 + rnd.nextInt(5)) + "." + rnd.nextInt(10) + "0, "
                + note(rnd) + ")";
    }
}
