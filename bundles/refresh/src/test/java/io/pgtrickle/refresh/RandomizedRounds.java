package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;

import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.function.Function;

/**
 * The rounds of a seeded randomized suite over one family of constructs: a schema and its first
 * rows, stream tables created DIFFERENTIAL, then rounds of random statements, after each of which
 * every stream table is refreshed and must have refreshed DIFFERENTIAL (FULL after a TRUNCATE of a
 * table it reads, NO_DATA when none changed) and equal its query by value and by text form.
 *
 * @param name        the suite, as printed with its seed
 * @param schema      the tables' DDL
 * @param fill        the first rows: INSERT statements from the seeded random source
 * @param streamTables name and query of each stream table
 * @param statement   one random write of a round
 * @param truncated   the one table the statements may TRUNCATE (a word of the queries that read it), or null
 */
record RandomizedRounds(String name, String[] schema, Function<Random, List<String>> fill, String[][] streamTables,
        Function<Random, String> statement, String truncated) {

    static final int ROUNDS = 30;

    /** Runs the suite in a database of its own. Reproduce a failure with {@code -Dpgtrickle.test.seed=<seed>}. */
    void run() throws Exception {
        long seed = RandomizedRefreshTest.seed(name);
        Random rnd = new Random(seed);
        try (RefreshDatabase db = new RefreshDatabase(name.toLowerCase(java.util.Locale.ROOT));
                Connection c = db.connect(); Statement s = c.createStatement()) {
            for (String ddl : schema) {
                s.execute(ddl);
            }
            for (String insert : fill.apply(rnd)) {
                s.execute(insert);
            }
            for (String[] st : streamTables) {
                db.createDifferential(st[0], st[1]);
            }
            compareAll(db, "seed=" + seed + " initial", false);
            for (int round = 1; round <= ROUNDS; round++) {
                List<String> log = new ArrayList<>();
                boolean truncatedNow = false;
                int statements = 1 + rnd.nextInt(5);
                for (int k = 0; k < statements; k++) {
                    String sql = statement.apply(rnd);
                    truncatedNow |= sql.startsWith("TRUNCATE");
                    log.add(sql);
                    s.execute(sql);
                }
                compareAll(db, "seed=" + seed + " round=" + round + " statements=" + log, truncatedNow);
            }
        }
    }

    private void compareAll(RefreshDatabase db, String ctx, boolean truncatedNow) throws SQLException {
        for (String[] st : streamTables) {
            db.exec("SELECT pgtrickle.refresh_stream_table('" + st[0] + "')");
            RefreshDatabase.History done = db.lastRefresh(st[0]);
            assertNotNull(done, ctx + " " + st[0]);
            assertEquals("COMPLETED", done.status(), ctx + " " + st[0]);
            if (!ctx.endsWith("initial") && !done.action().equals("NO_DATA")) {
                boolean readsTruncated = truncatedNow && truncated != null && st[1].matches("(?s).*\\b" + truncated + "\\b.*");
                assertEquals(readsTruncated ? "FULL" : "DIFFERENTIAL", done.action(), ctx + " " + st[0]);
            }
            db.assertEqualsItsQuery(st[0], ctx);
        }
    }
}
