package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;

import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Seeded randomized rounds over the situations where a stream table used to be silently wrong:
 * time-dependent predicates, partitions (writes through the parent and to a partition directly,
 * ATTACH and DETACH of partitions holding rows), inheritance children, rows written under
 * {@code session_replication_role = replica}, a column collation other than the database's, values
 * that are equal but print differently, literals that look like the engine's internal names, NULLs
 * in join and group keys, self-joins with key updates, TRUNCATE and primary-key updates. After
 * every round each stream table is refreshed and must equal its query both by value and by the text
 * form of its rows (in one transaction, so that {@code now()} is the same for both).
 *
 * <p>Reproduce a failure with {@code -Dpgtrickle.test.seed=<seed>} (see {@link RandomizedRefreshTest}).
 */
class TrustRandomizedTest {

    private static final int ROUNDS = 25;

    private static final String[] SCHEMA = {
        "CREATE TABLE items (id int PRIMARY KEY, grp int, name text COLLATE \"C\", amount numeric, span interval, note text,"
                + " ts timestamptz)",
        "CREATE TABLE tags (grp int, label text)",
        "CREATE TABLE parts (id int NOT NULL, grp int, v numeric) PARTITION BY RANGE (id)",
        "CREATE TABLE parts_0 PARTITION OF parts FOR VALUES FROM (0) TO (100)",
        "CREATE TABLE parts_1 PARTITION OF parts FOR VALUES FROM (100) TO (200)",
        // filled while detached; attached and detached again by the rounds
        "CREATE TABLE parts_2 (id int NOT NULL, grp int, v numeric)",
        "CREATE TABLE base (id int, v int)",
        "CREATE TABLE base_child (extra text) INHERITS (base)",
    };

    /** Stream tables, each a name and a query. */
    private static final String[][] STREAM_TABLES = {
        {"st_collate", "SELECT id, name FROM items WHERE name > 'a'"},
        {"st_literal", "SELECT id, note, 'x__pgt_src_1' AS tag FROM items WHERE note <> 'x__pgt_src_0' AND note <> '__pgt_weight_mark'"},
        {"st_exact", "SELECT id, amount, span FROM items"},
        {"st_sum", "SELECT grp, sum(amount) AS total, count(*) AS n, sum(span) AS spans FROM items GROUP BY grp"},
        {"st_join_nulls", "SELECT i.id, t.label FROM items i JOIN tags t ON t.grp = i.grp"},
        {"st_group_nulls", "SELECT grp, count(*) AS n, max(name) AS top FROM items GROUP BY grp"},
        {"st_self", "SELECT a.id, b.id AS peer FROM items a JOIN items b ON a.grp = b.grp AND a.id < b.id"},
        {"st_time", "SELECT id FROM items WHERE ts > now() - interval '300 milliseconds'"},
        {"st_parts", "SELECT grp, sum(v) AS total, count(*) AS n FROM parts GROUP BY grp"},
        {"st_parts_rows", "SELECT id, v FROM parts WHERE v IS NULL OR v > 0"},
        {"st_inherit", "SELECT id, v FROM base"},
    };

    private static final String[] NAMES = {"a", "b", "B", "Z", "ä", "aa", null};
    private static final String[] AMOUNTS = {"1", "1.0", "1.000", "2.50", "2.5", "-0", "0.00", null};
    private static final String[] SPANS = {"'1 day'", "'24 hours'", "'1440 minutes'", "'2 hours'", "NULL"};
    private static final String[] NOTES = {"'x__pgt_src_0'", "'__pgt_weight_mark'", "'x__pgt_src_9'", "'a$1'", "'plain'", "NULL"};

    private RefreshDatabase db;
    private Connection c;
    private boolean attached;

    @BeforeEach
    void setUp() throws Exception {
        db = new RefreshDatabase("trust_randomized");
        c = db.connect();
    }

    @AfterEach
    void tearDown() throws Exception {
        c.close();
        db.close();
    }

    @Test
    void everyRoundEqualsTheQueryByValueAndByText() throws Exception {
        long seed = RandomizedRefreshTest.seed("TrustRandomizedTest");
        Random rnd = new Random(seed);
        try (Statement s = c.createStatement()) {
            for (String ddl : SCHEMA) {
                s.execute(ddl);
            }
            for (int i = 0; i < 30; i++) {
                s.execute(insertItem(rnd, i));
            }
            for (int g = 0; g < 4; g++) {
                s.execute("INSERT INTO tags VALUES (" + (g == 3 ? "NULL" : g) + ", 'tag" + g + "')");
            }
            for (int i = 0; i < 20; i++) {
                s.execute("INSERT INTO parts VALUES (" + rnd.nextInt(200) + ", " + rnd.nextInt(3) + ", " + (rnd.nextInt(9) - 2) + ")");
                s.execute("INSERT INTO parts_2 VALUES (" + (200 + rnd.nextInt(100)) + ", " + rnd.nextInt(3) + ", " + rnd.nextInt(5) + ")");
                s.execute("INSERT INTO base VALUES (" + i + ", " + rnd.nextInt(5) + ")");
                s.execute("INSERT INTO base_child VALUES (" + (100 + i) + ", " + rnd.nextInt(5) + ", 'x')");
            }
            for (String[] st : STREAM_TABLES) {
                s.execute("SELECT pgtrickle.create_stream_table('" + st[0] + "', $q$" + st[1] + "$q$, 'calculated')");
            }
        }
        for (String[] st : STREAM_TABLES) {
            db.plan(st[0]);
            String mode = db.queryString("SELECT effective_mode || '|' || coalesce(recompute_reason, '')"
                    + " FROM pgtrickle.explain_refresh_mode(?)", st[0]);
            // st_time's result moves with the clock (never NO_DATA), maintained differentially all the same (TemporalFilters)
            assertEquals(st[0].equals("st_time") ? "DIFFERENTIAL|the query reads the current time (now())" : "DIFFERENTIAL|", mode, st[0]);
        }
        compareAll("seed=" + seed + " initial");

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
            compareAll("seed=" + seed + " round=" + round + " statements=" + log);
        }
    }

    private String insertItem(Random rnd, int id) {
        return "INSERT INTO items VALUES (" + id + ", " + (rnd.nextInt(5) == 0 ? "NULL" : String.valueOf(rnd.nextInt(3))) + ", "
                + literal(NAMES[rnd.nextInt(NAMES.length)]) + ", " + AMOUNTS[rnd.nextInt(AMOUNTS.length)] + ", "
                + SPANS[rnd.nextInt(SPANS.length)] + ", " + NOTES[rnd.nextInt(NOTES.length)] + ", now() - interval '"
                + rnd.nextInt(600) + " milliseconds')";
    }

    private static String literal(String v) {
        return v == null ? "NULL" : "'" + v + "'";
    }

    private String randomStatement(Random rnd) {
        int id = rnd.nextInt(40);
        return switch (rnd.nextInt(16)) {
            case 0, 1 -> insertItem(rnd, 40 + rnd.nextInt(100000)) + " ON CONFLICT DO NOTHING";
            case 2 -> "UPDATE items SET amount = " + AMOUNTS[rnd.nextInt(AMOUNTS.length)] + " WHERE amount IS NOT DISTINCT FROM "
                    + AMOUNTS[rnd.nextInt(AMOUNTS.length)];
            case 3 -> "UPDATE items SET span = " + SPANS[rnd.nextInt(SPANS.length)] + " WHERE id % 3 = " + rnd.nextInt(3);
            case 4 -> "UPDATE items SET name = " + literal(NAMES[rnd.nextInt(NAMES.length)]) + ", note = "
                    + NOTES[rnd.nextInt(NOTES.length)] + " WHERE id % 4 = " + rnd.nextInt(4);
            // key updates: the primary key, and the group / join / self-join key
            case 5 -> "UPDATE items SET id = id + 100000 WHERE id = " + id;
            case 6 -> "UPDATE items SET grp = " + (rnd.nextInt(4) == 0 ? "NULL" : String.valueOf(rnd.nextInt(3))) + " WHERE id % 5 = "
                    + rnd.nextInt(5);
            case 7 -> "DELETE FROM items WHERE id % 7 = " + rnd.nextInt(7);
            case 8 -> rnd.nextInt(4) == 0 ? "TRUNCATE tags" : "INSERT INTO tags VALUES (" + (rnd.nextInt(4) == 0 ? "NULL" : rnd.nextInt(3))
                    + ", 'tag" + rnd.nextInt(9) + "')";
            case 9 -> "UPDATE items SET ts = now() - interval '" + rnd.nextInt(600) + " milliseconds' WHERE id % 3 = " + rnd.nextInt(3);
            // partitions: through the parent, directly to a partition, moving a row across partitions
            case 10 -> "INSERT INTO parts VALUES (" + rnd.nextInt(200) + ", " + rnd.nextInt(3) + ", " + (rnd.nextInt(9) - 2) + ")";
            case 11 -> "UPDATE parts_" + rnd.nextInt(2) + " SET v = v + 1 WHERE id % 4 = " + rnd.nextInt(4);
            case 12 -> rnd.nextBoolean() ? "UPDATE parts SET id = 199 - id WHERE id < 200 AND id % 9 = " + rnd.nextInt(9)
                    : "DELETE FROM parts_0 WHERE id % 5 = " + rnd.nextInt(5);
            case 13 -> {
                attached = !attached;
                yield attached ? "ALTER TABLE parts ATTACH PARTITION parts_2 FOR VALUES FROM (200) TO (300)"
                        : "ALTER TABLE parts DETACH PARTITION parts_2";
            }
            // inheritance: the parent and its child
            case 14 -> rnd.nextBoolean() ? "INSERT INTO base_child VALUES (" + (200 + rnd.nextInt(50)) + ", " + rnd.nextInt(5) + ", 'y')"
                    : "UPDATE base SET v = v + 1 WHERE id % 3 = " + rnd.nextInt(3);
            // rows applied as a logical replication worker applies them
            default -> "DO $$ BEGIN SET LOCAL session_replication_role = replica; UPDATE items SET amount = amount + 1 WHERE id = "
                    + id + "; INSERT INTO parts_1 VALUES (" + (100 + rnd.nextInt(100)) + ", 1, 3); END $$";
        };
    }

    private void compareAll(String ctx) throws SQLException {
        for (String[] st : STREAM_TABLES) {
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                s.execute("SELECT pgtrickle.refresh_stream_table('" + st[0] + "')");
                String status = one(s, "SELECT status FROM pgtrickle.get_refresh_history('" + st[0] + "', 1)");
                assertNotNull(status, ctx + " " + st[0]);
                assertEquals("COMPLETED", status, ctx + " " + st[0]);
                String byValue = "SELECT count(*) FROM ((TABLE " + st[0] + " EXCEPT ALL (" + st[1] + ")) UNION ALL ((" + st[1]
                        + ") EXCEPT ALL TABLE " + st[0] + ")) d";
                String stored = "SELECT ROW(t.*)::text FROM " + st[0] + " t";
                String fresh = "SELECT ROW(q.*)::text FROM (" + st[1] + ") q";
                String byText = "SELECT count(*) FROM ((" + stored + " EXCEPT ALL " + fresh + ") UNION ALL (" + fresh + " EXCEPT ALL "
                        + stored + ")) d";
                assertEquals("0", one(s, byValue), ctx + ": " + st[0] + " differs from its query by value");
                assertEquals("0", one(s, byText), ctx + ": " + st[0] + " differs from its query by text");
            } finally {
                c.commit();
                c.setAutoCommit(true);
            }
        }
    }

    private static String one(Statement s, String sql) throws SQLException {
        try (ResultSet rs = s.executeQuery(sql)) {
            return rs.next() ? rs.getString(1) : null;
        }
    }
}
