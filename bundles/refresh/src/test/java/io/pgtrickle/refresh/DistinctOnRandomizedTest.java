package io.pgtrickle.refresh;

import org.junit.jupiter.api.Test;

/**
 * Seeded randomized rounds over {@code SELECT DISTINCT ON (keys) ... ORDER BY keys, ...}, on
 * {@link WindowsRandomizedTest}'s tables and writes (rows move between keys, NULL keys, ties in pay
 * broken by id): the highest paid per department, the first per (department, grade) among a
 * filter, the lowest paid per region over a join and over a LEFT JOIN (the NULL region of padded
 * rows a key of its own), a key that is an expression, and one whose ORDER BY reads a column the
 * select list does not have. Each ORDER BY ends in the unique id, so the query's own result is
 * determined. Every stream table refreshes DIFFERENTIAL whenever a source changed (FULL after a
 * TRUNCATE) and equals its query by value and by text form after every round.
 *
 * <p>Reproduce a failure with {@code -Dpgtrickle.test.seed=<seed>} (see {@link RandomizedRefreshTest}).
 */
class DistinctOnRandomizedTest {

    static final String[][] STREAM_TABLES = {
        {"don_top_paid", "SELECT DISTINCT ON (dept) dept, id, pay FROM e ORDER BY dept, pay DESC, id"},
        {"don_two_keys", "SELECT DISTINCT ON (dept, grade) dept, grade, id FROM e WHERE pay > 12 ORDER BY dept, grade, id DESC"},
        {"don_join", "SELECT DISTINCT ON (d.region) d.region, e.id, e.pay FROM e JOIN d ON d.dept = e.dept ORDER BY d.region, e.pay, e.id"},
        {"don_left_join", "SELECT DISTINCT ON (e.dept) e.dept, d.region, e.id FROM e LEFT JOIN d ON d.dept = e.dept"
                + " ORDER BY e.dept, e.id, d.region"},
        {"don_expression", "SELECT DISTINCT ON (dept % 2) dept % 2 AS parity, id FROM e ORDER BY dept % 2, id"},
        {"don_hidden_order", "SELECT DISTINCT ON (grade) grade, dept FROM e ORDER BY grade, pay, id"},
    };

    @Test
    void everyRoundEqualsTheQueryByValueAndByText() throws Exception {
        WindowsRandomizedTest.rounds("DistinctOnRandomizedTest", STREAM_TABLES).run();
    }
}
