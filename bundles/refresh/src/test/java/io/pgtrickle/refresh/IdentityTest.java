package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * A differential refresh nets changes by identity, the identity FULL uses (a row's text form), not
 * by {@code =}: {@code 1.0 = 1.000} and {@code '1 day' = '24 hours'}, yet a user reading the stream
 * table sees the difference. An UPDATE between such values is a delete and an insert, and a running
 * numeric total prints with the scale a recomputation gives.
 */
class IdentityTest {

    private RefreshDatabase db;

    @BeforeEach
    void setUp() throws Exception {
        db = new RefreshDatabase("identity");
        db.exec("CREATE TABLE r7 (id int PRIMARY KEY, grp int, amount numeric, span interval, doc jsonb, f float8)",
                "INSERT INTO r7 VALUES (1, 1, 1.0, '1 day', '{\"a\": 1.0}', 0), (2, 1, 2.50, '2 hours', '{\"a\": 2}', 1),"
                        + " (3, 2, 7, '1 day', '{\"a\": 3}', 2)");
    }

    @AfterEach
    void tearDown() {
        db.close();
    }

    private void create(String name, String query) throws Exception {
        db.exec("SELECT pgtrickle.create_stream_table('" + name + "', $q$" + query + "$q$, 'calculated')");
        db.plan(name);
        assertEquals("DIFFERENTIAL", db.queryString("SELECT effective_mode FROM pgtrickle.explain_refresh_mode(?)", name), name);
    }

    private void refreshAll(List<String> names, String what) throws Exception {
        for (String st : names) {
            db.exec("SELECT pgtrickle.refresh_stream_table('" + st + "')");
            assertEquals(0, db.difference(st), what + ": " + st + " by value");
            assertEquals(0, db.textDifference(st), what + ": " + st + " by text");
        }
    }

    @Test
    void equalValuesThatPrintDifferentlyReachTheStreamTable() throws Exception {
        create("rows_of", "SELECT id, amount, span, doc, f FROM r7");
        create("join_of", "SELECT a.id, b.amount, b.span FROM r7 a JOIN r7 b ON a.grp = b.grp");
        create("sums_of", "SELECT grp, sum(amount) AS total, count(*) AS n FROM r7 GROUP BY grp");
        create("spans_of", "SELECT grp, sum(span) AS total, max(amount) AS top FROM r7 GROUP BY grp");
        List<String> all = List.of("rows_of", "join_of", "sums_of", "spans_of");

        db.exec("UPDATE r7 SET amount = 1.000 WHERE amount = 1.0");
        refreshAll(all, "1.0 -> 1.000");
        assertEquals("1.000", db.queryString("SELECT amount::text FROM rows_of WHERE id = 1"));

        db.exec("UPDATE r7 SET span = '24 hours' WHERE span = '1 day'");
        refreshAll(all, "'1 day' -> '24 hours'");

        db.exec("UPDATE r7 SET doc = '{\"a\": 1.00}', f = '-0' WHERE id = 1");
        refreshAll(all, "jsonb 1.0 -> 1.00, float 0 -> -0");

        // the row with the largest scale goes: a recomputed sum prints 2.50, a running one 2.500
        db.exec("DELETE FROM r7 WHERE id = 1");
        refreshAll(all, "delete of the widest scale");
        assertEquals("2.50", db.queryString("SELECT total::text FROM sums_of WHERE grp = 1"));
    }

    @Test
    void aFixedScaleNumericKeepsItsRunningTotals() throws Exception {
        db.exec("CREATE TABLE priced (id int PRIMARY KEY, grp int, price numeric(12,2))",
                "INSERT INTO priced VALUES (1, 1, 1.5), (2, 1, 2.25), (3, 2, 4)");
        db.exec("SELECT pgtrickle.create_stream_table('price_sums', 'SELECT grp, sum(price) AS total FROM priced GROUP BY grp', 'calculated')");
        db.plan("price_sums");
        // every value of numeric(12,2) has scale 2: adjusting the total prints as recomputing it would
        assertEquals(1, db.queryLong("SELECT count(*) FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'price_sums' AND state_table IS NOT NULL"));
        db.exec("UPDATE priced SET price = 1.500 WHERE id = 1", "DELETE FROM priced WHERE id = 2");
        refreshAll(List.of("price_sums"), "fixed scale");
        assertEquals("1.50", db.queryString("SELECT total::text FROM price_sums WHERE grp = 1"));
    }
}
