package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Seeded randomized rounds over stream tables whose queries read subqueries in FROM and WITH
 * queries, which the planner inlines: joins through them, grouping over them (sums that become
 * running totals and ones recomputed per group), a WITH query read twice (a self-join), column
 * alias lists, nesting, DISTINCT and UNION ALL over them, with NULLs and duplicate join keys.
 * After every round each stream table is refreshed, must have been refreshed DIFFERENTIAL (or had
 * nothing to do), and must equal its query by value and by the text form of its rows.
 *
 * <p>Reproduce a failure with {@code -Dpgtrickle.test.seed=<seed>} (see {@link RandomizedRefreshTest}).
 */
class InlineRandomizedTest {

    private static final int ROUNDS = 20;

    private static final String[] SCHEMA = {
        "CREATE TABLE orders (id int PRIMARY KEY, cust int, qty int, amount numeric, status text)",
        // no key: duplicate ids make joins multiply rows
        "CREATE TABLE customers (id int, region text, tier int)",
        "CREATE TABLE regions (name text, zone int)",
    };

    /** Stream tables, each a name and a query. */
    private static final String[][] STREAM_TABLES = {
        {"st_sub_filter", "SELECT s.id, s.total FROM (SELECT id, amount * 2 AS total, status FROM orders WHERE status <> 'x') s"
                + " WHERE s.total > 3 OR s.total IS NULL"},
        {"st_sub_join", "SELECT s.oid, c.region, s.cust FROM (SELECT o.id AS oid, o.cust FROM orders o WHERE o.amount IS NOT NULL) s"
                + " JOIN customers c ON c.id = s.cust"},
        // TPC-H Q7's shape: grouping over a join inside a subquery; an integer sum (running totals)
        {"st_sub_group_int", "SELECT r, t, sum(q) AS total, count(*) AS n FROM (SELECT c.region AS r, c.tier AS t, o.qty AS q"
                + " FROM orders o, customers c WHERE o.cust = c.id) x GROUP BY r, t"},
        // ... and sums of expressions, min and max (groups recomputed); not max of the numeric v: of
        // 10 and 10.0 it returns whichever it meets first, so even the query itself may print either
        {"st_sub_group_expr", "SELECT x.r, sum(x.v) AS total, max(x.w) AS top, min(x.st) AS first FROM (SELECT c.region AS r,"
                + " o.amount * o.qty AS v, o.qty * 2 + 1 AS w, o.status AS st FROM orders o JOIN customers c ON o.cust = c.id) x"
                + " GROUP BY x.r"},
        {"st_cte_twice", "WITH big AS (SELECT id, cust, amount FROM orders WHERE amount > 2)"
                + " SELECT b1.id, b2.id AS other, b1.amount FROM big b1 JOIN big b2 ON b1.cust = b2.cust AND b1.id < b2.id"},
        {"st_cte_columns", "WITH c(cid, reg) AS (SELECT id, region FROM customers WHERE tier IS NOT NULL)"
                + " SELECT c.reg, count(*) AS n, sum(o.qty) AS q FROM c JOIN orders o ON o.cust = c.cid GROUP BY c.reg"},
        {"st_nested", "SELECT t.reg, t.amt, r.zone FROM (SELECT s.reg, s.amt FROM (SELECT c.region AS reg, o.amount AS amt, o.status"
                + " FROM orders o JOIN customers c ON c.id = o.cust) s WHERE s.status IS DISTINCT FROM 'closed') t, regions r"
                + " WHERE r.name = t.reg"},
        {"st_cte_chain", "WITH x AS (SELECT o.id, o.status, o.cust FROM orders o WHERE o.qty > 1),"
                + " y AS (SELECT x.status, c.region FROM x, customers c WHERE c.id = x.cust) SELECT DISTINCT y.status, y.region FROM y"},
        // subqueries in the inlined WHERE (TPC-H Q22's shape): NOT EXISTS and an uncorrelated scalar over the same table
        {"st_sub_sublinks", "SELECT s.t, count(*) AS n, sum(s.q) AS total FROM (SELECT c.tier AS t, o.qty AS q FROM orders o, customers c"
                + " WHERE c.id = o.cust AND NOT EXISTS (SELECT FROM regions r WHERE r.name = c.region)"
                + " AND o.qty > (SELECT avg(o2.qty) FROM orders o2 WHERE o2.qty > 1)) s GROUP BY s.t"},
        {"st_cte_sublink", "WITH x AS (SELECT id, cust FROM orders WHERE cust IN (SELECT id FROM customers WHERE tier = 2))"
                + " SELECT x.id, c.region FROM x JOIN customers c ON c.id = x.cust"},
        {"st_union", "SELECT s.id, s.cust FROM (SELECT id, cust FROM orders WHERE amount > 5) s"
                + " UNION ALL SELECT c.id, c.tier FROM (SELECT id, tier FROM customers) c(id, tier) WHERE c.tier = 1"},
    };

    private static final String[] REGIONS = {"'north'", "'south'", "'east'", "NULL"};
    private static final String[] STATUSES = {"'open'", "'closed'", "'x'", "NULL"};
    private static final String[] AMOUNTS = {"1", "2.5", "2.50", "4", "7.25", "10", "NULL"};

    private RefreshDatabase db;
    private Connection c;

    @BeforeEach
    void setUp() throws Exception {
        db = new RefreshDatabase("inline_randomized");
        c = db.connect();
    }

    @AfterEach
    void tearDown() throws Exception {
        c.close();
        db.close();
    }

    @Test
    void everyRoundIsDifferentialAndEqualsTheQueryByValueAndByText() throws Exception {
        long seed = RandomizedRefreshTest.seed("InlineRandomizedTest");
        Random rnd = new Random(seed);
        try (Statement s = c.createStatement()) {
            for (String ddl : SCHEMA) {
                s.execute(ddl);
            }
            for (int i = 0; i < 40; i++) {
                s.execute(insertOrder(rnd, i));
            }
            for (int i = 0; i < 12; i++) {
                s.execute(insertCustomer(rnd));
            }
            s.execute("INSERT INTO regions VALUES ('north', 1), ('south', 2), ('east', 3), ('east', 4), (NULL, 5)");
        }
        for (String[] st : STREAM_TABLES) {
            db.createDifferential(st[0], st[1]);
        }
        System.out.println("[InlineRandomizedTest] with running totals: " + db.queryString(
                "SELECT string_agg(pgt_name, ', ' ORDER BY pgt_name) FROM pgtrickle.pgt_stream_tables WHERE state_table IS NOT NULL"));
        Set<String> differential = new HashSet<>();
        compareAll("seed=" + seed + " initial", differential);

        for (int round = 1; round <= ROUNDS; round++) {
            List<String> log = new ArrayList<>();
            try (Statement s = c.createStatement()) {
                int statements = 1 + rnd.nextInt(6);
                for (int k = 0; k < statements; k++) {
                    String sql = randomStatement(rnd);
                    log.add(sql);
                    s.execute(sql);
                }
            }
            compareAll("seed=" + seed + " round=" + round + " statements=" + log, differential);
        }
        for (String[] st : STREAM_TABLES) {
            assertTrue(differential.contains(st[0]), "seed=" + seed + ": " + st[0] + " never refreshed DIFFERENTIAL with changes");
        }
    }

    private static String insertOrder(Random rnd, int id) {
        return "INSERT INTO orders VALUES (" + id + ", " + (rnd.nextInt(6) == 0 ? "NULL" : String.valueOf(rnd.nextInt(8))) + ", "
                + (rnd.nextInt(8) == 0 ? "NULL" : String.valueOf(rnd.nextInt(5))) + ", " + AMOUNTS[rnd.nextInt(AMOUNTS.length)] + ", "
                + STATUSES[rnd.nextInt(STATUSES.length)] + ")";
    }

    private static String insertCustomer(Random rnd) {
        return "INSERT INTO customers VALUES (" + (rnd.nextInt(7) == 0 ? "NULL" : String.valueOf(rnd.nextInt(8))) + ", "
                + REGIONS[rnd.nextInt(REGIONS.length)] + ", " + (rnd.nextInt(5) == 0 ? "NULL" : String.valueOf(rnd.nextInt(3))) + ")";
    }

    private static String randomStatement(Random rnd) {
        return switch (rnd.nextInt(12)) {
            case 0, 1 -> insertOrder(rnd, 40 + rnd.nextInt(100000)) + " ON CONFLICT DO NOTHING";
            case 2 -> "UPDATE orders SET amount = " + AMOUNTS[rnd.nextInt(AMOUNTS.length)] + " WHERE id % 5 = " + rnd.nextInt(5);
            case 3 -> "UPDATE orders SET status = " + STATUSES[rnd.nextInt(STATUSES.length)] + ", qty = qty + 1 WHERE id % 4 = "
                    + rnd.nextInt(4);
            // join keys move: rows leave one group (or match) and enter another
            case 4 -> "UPDATE orders SET cust = " + (rnd.nextInt(5) == 0 ? "NULL" : String.valueOf(rnd.nextInt(8))) + " WHERE id % 6 = "
                    + rnd.nextInt(6);
            case 5 -> "DELETE FROM orders WHERE id % 9 = " + rnd.nextInt(9);
            case 6 -> insertCustomer(rnd);
            case 7 -> "UPDATE customers SET region = " + REGIONS[rnd.nextInt(REGIONS.length)] + " WHERE id = " + rnd.nextInt(8);
            case 8 -> "UPDATE customers SET tier = " + (rnd.nextInt(4) == 0 ? "NULL" : String.valueOf(rnd.nextInt(3)))
                    + ", id = " + rnd.nextInt(8) + " WHERE id IS NOT DISTINCT FROM " + (rnd.nextInt(7) == 0 ? "NULL" : rnd.nextInt(8));
            case 9 -> "DELETE FROM customers WHERE ctid = (SELECT min(ctid) FROM customers WHERE id = " + rnd.nextInt(8) + ")";
            case 10 -> rnd.nextBoolean() ? "INSERT INTO regions VALUES (" + REGIONS[rnd.nextInt(REGIONS.length)] + ", " + rnd.nextInt(9) + ")"
                    : "DELETE FROM regions WHERE zone = " + rnd.nextInt(9);
            // a row that appears and disappears again in the same window
            default -> "WITH i AS (INSERT INTO orders VALUES (" + (200000 + rnd.nextInt(1000)) + ", 1, 2, 3, 'open')"
                    + " ON CONFLICT DO NOTHING RETURNING id) DELETE FROM orders WHERE id IN (SELECT id FROM i) AND "
                    + rnd.nextBoolean();
        };
    }

    private void compareAll(String ctx, Set<String> differential) throws SQLException {
        for (String[] st : STREAM_TABLES) {
            db.exec("SELECT pgtrickle.refresh_stream_table('" + st[0] + "')");
            RefreshDatabase.History last = db.lastRefresh(st[0]);
            assertTrue(last != null && last.status().equals("COMPLETED") && Set.of("DIFFERENTIAL", "NO_DATA").contains(last.action()),
                    ctx + ": " + st[0] + " refreshed " + last + ", explain_refresh_mode "
                            + db.queryString("SELECT row(m.*)::text FROM pgtrickle.explain_refresh_mode(?) m", st[0]));
            if (last.action().equals("DIFFERENTIAL")) {
                differential.add(st[0]);
            }
            db.assertEqualsItsQuery(st[0], ctx);
        }
    }
}
