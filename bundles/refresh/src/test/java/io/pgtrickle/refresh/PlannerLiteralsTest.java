package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The differential planner edits the query's parse tree, never its text: string literals that look
 * like the planner's internal names ({@code __pgt_src_0}, {@code __pgt_weight_mark}), a parameter
 * ({@code $1}) or a deparsed interval qualifier are values like any other. The engine once rewrote
 * such literals by regular expression (planning {@code note <> 'x__pgt_src_0'} as
 * {@code note <> 'x(SELECT * FROM __pgt_d0)'}), and one of them threw out of the scheduler's tick,
 * stopping every stream table.
 */
class PlannerLiteralsTest {

    private RefreshDatabase db;

    @BeforeEach
    void setUp() throws Exception {
        db = new RefreshDatabase("planner_literals");
        db.exec("CREATE TABLE notes (id int PRIMARY KEY, note text, grp int)");
    }

    @AfterEach
    void tearDown() {
        db.close();
    }

    /** Every value the test writes: the literals themselves, and what a rewrite would have made of them. */
    private static final List<String> NOTES = List.of("x__pgt_src_0", "x__pgt_src_9", "__pgt_weight_mark", "a$1", "q'::interval day",
            "x(SELECT * FROM __pgt_d0)", "other", "1:1:");

    @ParameterizedTest
    @ValueSource(strings = {"x__pgt_src_0", "x__pgt_src_9", "__pgt_weight_mark", "a$1", "q'::interval day", "1:1:"})
    void aLiteralThatLooksInternalIsAValue(String literal) throws Exception {
        String quoted = "'" + literal.replace("'", "''") + "'";
        create("by_filter", "SELECT id, note FROM notes WHERE note <> " + quoted);
        create("by_projection", "SELECT id, " + quoted + " AS tag, note = " + quoted + " AS same FROM notes");
        create("by_group", "SELECT grp, count(*) FILTER (WHERE note = " + quoted + ") AS n, count(*) AS total FROM notes GROUP BY grp");
        create("by_join", "SELECT a.id, b.id AS other FROM notes a JOIN notes b ON a.grp = b.grp AND b.note <> " + quoted);
        for (String st : List.of("by_filter", "by_projection", "by_group", "by_join")) {
            db.plan(st);
            assertEquals("DIFFERENTIAL|", db.queryString(
                    "SELECT effective_mode || '|' || coalesce(downgrade_reason, '') FROM pgtrickle.explain_refresh_mode(?)", st), st);
        }
        int id = 0;
        for (String note : NOTES) {
            id++;
            db.exec("INSERT INTO notes VALUES (" + id + ", '" + note.replace("'", "''") + "', " + (id % 3) + ")");
        }
        refreshAndCompare();
        db.exec("UPDATE notes SET note = " + quoted + " WHERE id % 2 = 0", "DELETE FROM notes WHERE id = 3");
        refreshAndCompare();
    }

    @Test
    void aPlanThatOnceStoppedTheSchedulerLeavesTheOthersRefreshing() throws Exception {
        db.exec("INSERT INTO notes VALUES (1, 'x__pgt_src_9', 1), (2, 'y', 2)");
        create("odd_literal", "SELECT id, note FROM notes WHERE note <> 'x__pgt_src_9'");
        create("plain", "SELECT id, note FROM notes");
        db.exec("INSERT INTO notes VALUES (3, 'z', 3)");
        try (RefreshEngine engine = new RefreshEngine(db.dataSource(), new EngineSettings(1000, 2, 3), new Listeners(),
                System::nanoTime, 1000)) {
            // plans both, then refreshes what is due; a planner failure must not escape the tick
            for (CompletableFuture<RefreshEngine.Outcome> outcome : engine.tick()) {
                outcome.get(60, TimeUnit.SECONDS);
            }
        }
        assertEquals(3, db.queryLong("SELECT count(*) FROM plain"));
        assertEquals(2, db.queryLong("SELECT count(*) FROM odd_literal"));
        assertEquals("DIFFERENTIAL", db.queryString("SELECT effective_mode FROM pgtrickle.explain_refresh_mode('odd_literal')"));
    }

    private void create(String name, String query) throws Exception {
        db.exec("SELECT pgtrickle.create_stream_table('" + name + "', $q$" + query + "$q$, 'calculated')");
    }

    private void refreshAndCompare() throws Exception {
        for (String st : List.of("by_filter", "by_projection", "by_group", "by_join")) {
            db.exec("SELECT pgtrickle.refresh_stream_table('" + st + "')");
            assertEquals("DIFFERENTIAL", db.queryString("SELECT action FROM pgtrickle.get_refresh_history(?, 1)", st), st);
            assertEquals(0, db.difference(st), st + " by value");
            assertEquals(0, db.textDifference(st), st + " by text");
        }
    }
}
