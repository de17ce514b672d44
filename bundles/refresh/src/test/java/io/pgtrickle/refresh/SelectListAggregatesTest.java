package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.SQLException;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * A scalar subquery in the select list that aggregates one table by key equalities (the engine's
 * SelectListAggregates) reads a derived table of the aggregate per key, LEFT JOINed on the keys:
 * maintained differentially, where it left the whole query recomputed. Seeded rounds of writes to
 * both sides, each refresh compared with the query by value and by text.
 *
 * <p>Reproduce a failure with {@code -Dpgtrickle.test.seed=<seed>} (see {@link RandomizedRefreshTest}).
 */
class SelectListAggregatesTest {

    private static final String[][] STREAM = {
        {"post_comments", "SELECT p.id, p.title, (SELECT count(*) FROM comments c WHERE c.post_id = p.id AND c.visible) AS comments FROM posts p"},
        // two of them, NULL over no rows
        {"post_scores", "SELECT p.id, (SELECT sum(c.score) FROM comments c WHERE c.post_id = p.id) AS total,"
                + " (SELECT max(c.score) FROM comments c WHERE c.post_id = p.id) AS best FROM posts p WHERE p.id % 3 <> 0"},
        // beside a comma join, an average, the key on the left
        {"author_means", "SELECT p.id, u.name, (SELECT avg(c.score) FROM comments c WHERE p.id = c.post_id) AS mean"
                + " FROM posts p, users u WHERE u.id = p.author"},
        // two keys, a nullable one: a NULL key counts nothing
        {"by_author", "SELECT p.id, p.ref, (SELECT count(c.score) FROM comments c WHERE c.post_id = p.ref AND c.author = p.author) AS own"
                + " FROM posts p"},
        // unaliased: the column keeps the subquery's name
        {"unaliased", "SELECT p.id, (SELECT count(*) FROM comments c WHERE c.post_id = p.id) FROM posts p"},
        // lookups by a unique key: the table itself LEFT JOINed (NULL without a match), beside an aggregate
        {"lookups", "SELECT p.id, (SELECT u.name FROM users u WHERE u.id = p.author) AS author_name,"
                + " (SELECT q.title FROM posts q WHERE q.id = p.ref AND q.author <> 3), (SELECT count(*) FROM comments c WHERE c.post_id = p.id) AS n"
                + " FROM posts p"},
        // a lookup alone: no derived table
        {"author_names", "SELECT p.id, p.title, (SELECT u.name FROM users u WHERE u.id = p.author) AS author_name FROM posts p WHERE p.id > 5"},
    };

    private RefreshDatabase db;

    @BeforeEach
    void setUp() throws SQLException {
        db = new RefreshDatabase("refresh_select_list");
        db.exec("CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL)",
                "CREATE TABLE posts (id int PRIMARY KEY, author int NOT NULL, ref int, title text NOT NULL)",
                "CREATE TABLE comments (id int PRIMARY KEY, post_id int, author int, visible boolean NOT NULL, score numeric(8,2))",
                "INSERT INTO users SELECT i, 'u' || i FROM generate_series(1, 20) i",
                "INSERT INTO posts SELECT i, 1 + i % 20, CASE WHEN i % 5 = 0 THEN NULL ELSE 1 + i % 97 END, 'p' || i FROM generate_series(1, 300) i",
                "INSERT INTO comments SELECT i, 1 + i % 290, 1 + i % 20, i % 4 <> 0, CASE WHEN i % 11 = 0 THEN NULL ELSE (i % 500) / 4.0 END"
                        + " FROM generate_series(1, 3000) i",
                "ANALYZE users", "ANALYZE posts", "ANALYZE comments");
    }

    @AfterEach
    void tearDown() {
        db.close();
    }

    @Test
    void anAggregatingSubqueryOfTheSelectListIsADerivedTableLeftJoined() throws Exception {
        for (String[] st : STREAM) {
            db.createDifferential(st[0], st[1]);
            if (!st[0].equals("author_names")) {
                assertNotNull(db.derived(st[0]), st[0] + ": the subquery's aggregate per key is a derived table");
            }
            db.assertEqualsItsQuery(st[0], "after the first fill");
        }
        assertEquals("count", db.queryString("SELECT attname FROM pg_attribute WHERE attrelid = 'unaliased'::regclass AND attnum = 2"));
        assertEquals("title", db.queryString("SELECT attname FROM pg_attribute WHERE attrelid = 'lookups'::regclass AND attnum = 3"));
        long seed = RandomizedRefreshTest.seed("SelectListAggregatesTest");
        Random rnd = new Random(seed);
        int next = 10000;
        for (int round = 1; round <= 15; round++) {
            List<String> log = new ArrayList<>();
            for (int k = 0; k < 1 + rnd.nextInt(5); k++) {
                log.add(switch (rnd.nextInt(8)) {
                    case 0 -> "INSERT INTO comments VALUES (" + next++ + ", " + (1 + rnd.nextInt(320)) + ", " + (1 + rnd.nextInt(20)) + ", "
                            + rnd.nextBoolean() + ", " + (rnd.nextInt(4) == 0 ? "NULL" : rnd.nextInt(200) / 4.0) + ")";
                    case 1 -> "DELETE FROM comments WHERE post_id = " + (1 + rnd.nextInt(300));
                    case 2 -> "UPDATE comments SET visible = NOT visible, score = score + 1.5 WHERE id % 97 = " + rnd.nextInt(97);
                    case 3 -> "UPDATE comments SET post_id = " + (1 + rnd.nextInt(320)) + " WHERE id % 101 = " + rnd.nextInt(101);
                    case 4 -> "INSERT INTO posts VALUES (" + next++ + ", " + (1 + rnd.nextInt(21)) + ", " + (1 + rnd.nextInt(100)) + ", 'n')";
                    case 5 -> "DELETE FROM posts WHERE id % 53 = " + rnd.nextInt(53);
                    case 6 -> "UPDATE posts SET ref = CASE WHEN ref IS NULL THEN " + (1 + rnd.nextInt(97)) + " END, author = 1 + (author + 1) % 20"
                            + " WHERE id % 41 = " + rnd.nextInt(41);
                    default -> "UPDATE users SET name = name || 'x' WHERE id = " + (1 + rnd.nextInt(20));
                });
            }
            db.exec(log.toArray(String[]::new));
            for (String[] st : STREAM) {
                db.exec("SELECT pgtrickle.refresh_stream_table('" + st[0] + "')");
                // NO_DATA when the round wrote nothing the stream table reads
                String action = db.lastRefresh(st[0]).action();
                assertTrue(action.equals("DIFFERENTIAL") || action.equals("NO_DATA"), st[0] + " seed=" + seed + " round=" + round + ": " + action);
                db.assertEqualsItsQuery(st[0], "seed=" + seed + " round=" + round + " " + log);
            }
        }
        int k = 0;
        for (String[] st : STREAM) {
            db.refreshFullThenDifferential(st[0]);
            db.exec("DELETE FROM comments WHERE id % 7 = " + k, "UPDATE users SET name = name || 'z' WHERE id % 7 = " + k++);
            db.exec("SELECT pgtrickle.refresh_stream_table('" + st[0] + "')");
            assertEquals("DIFFERENTIAL", db.lastRefresh(st[0]).action(), st[0]);
            db.assertEqualsItsQuery(st[0], "after a FULL refresh");
        }
    }

    @Test
    void aChangeOfTheSubquerysTableReadsNeitherTable() throws Exception {
        db.createDifferential(STREAM[0][0], STREAM[0][1]);
        db.exec("SELECT pgtrickle.refresh_stream_table('post_comments')",
                "INSERT INTO comments VALUES (9001, 7, 1, true, 1.0), (9002, 8, 1, true, 2.0)", "DELETE FROM comments WHERE id = 12");
        assertEquals(0, db.refreshScanning("post_comments", "comments"), "the counts per post come from the derived table");
        assertTrue(db.lastRefresh("post_comments").inserted() >= 2, "posts 7 and 8 have new counts");
        db.assertEqualsItsQuery("post_comments", "after the refresh");
    }

    @Test
    void otherSubqueriesOfTheSelectListStayRecomputedWithTheReason() throws Exception {
        db.exec("SELECT pgtrickle.create_stream_table('not_by_key', $q$SELECT p.id, (SELECT count(*) FROM comments c WHERE c.score > p.id) AS n"
                + " FROM posts p$q$, 'calculated')");
        db.plan("not_by_key");
        // a lookup by columns without a unique key: the subquery may fail with more than one row, a join would repeat the row
        db.exec("SELECT pgtrickle.create_stream_table('not_unique', $q$SELECT p.id, (SELECT u.id FROM users u WHERE u.name = p.title) AS uid"
                + " FROM posts p$q$, 'calculated')");
        db.plan("not_unique");
        for (String st : List.of("not_by_key", "not_unique")) {
            assertEquals("FULL|the query has subqueries (EXISTS, IN or scalar) outside the AND-ed conditions of WHERE",
                    db.queryString("SELECT effective_mode || '|' || downgrade_reason FROM pgtrickle.explain_refresh_mode(?)", st), st);
        }
    }
}
