package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;

import java.sql.SQLException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The planner's row index ({@code pgt_<id>_row_hash}): built once per key set, not again at every
 * plan. Building it locks the stream table against its readers, which after an evolution's swap (a
 * new plan for a million rows) was a stall of seconds; the swap hands over the shadow's index.
 */
class RowIndexTest {

    private static RefreshDatabase db;

    @BeforeAll
    static void schema() throws SQLException {
        db = new RefreshDatabase("rowindex");
        db.exec("CREATE TABLE items (id int PRIMARY KEY, grp text, v int)",
                "INSERT INTO items SELECT g, 'g' || (g % 3), g FROM generate_series(1, 100) g",
                "SELECT pgtrickle.create_stream_table('item_rows', 'SELECT id, grp, v FROM items', schedule => '1h')",
                "SELECT pgtrickle.create_stream_table('group_sums', 'SELECT grp, sum(v) AS s FROM items GROUP BY grp', schedule => '1h')");
    }

    @AfterAll
    static void drop() {
        db.close();
    }

    @Test
    void aNewPlanOnTheSameKeysKeepsTheIndex() throws SQLException {
        db.plan("item_rows");
        long first = index("item_rows");
        replan("item_rows");
        assertEquals(first, index("item_rows"), "the same index, not a rebuilt one");
    }

    @Test
    void anIndexOnOtherKeysOrWithoutTheirRecordIsBuiltAgain() throws SQLException {
        db.plan("group_sums");
        long planned = index("group_sums");
        String name = "pgt_" + db.pgtId("group_sums") + "_row_hash";
        // an index of that name, but not the planner's record of its keys (a user's, an older engine's)
        db.exec("DROP INDEX " + name, "CREATE INDEX " + name + " ON group_sums (s)");
        long foreign = index("group_sums");
        assertNotEquals(planned, foreign);
        replan("group_sums");
        long rebuilt = index("group_sums");
        assertNotEquals(foreign, rebuilt);
        assertEquals("grp", db.queryString("SELECT obj_description(?::regclass, 'pg_class')", name));
        assertEquals(0, db.difference("group_sums"));
        db.exec("INSERT INTO items VALUES (1000, 'g1', 5)", "SELECT pgtrickle.refresh_stream_table('group_sums')");
        assertEquals(0, db.difference("group_sums"));
    }

    private static void replan(String streamTable) throws SQLException {
        db.exec("UPDATE pgtrickle.pgt_stream_tables SET delta_sql = NULL WHERE pgt_id = " + db.pgtId(streamTable));
        db.plan(streamTable);
        assertEquals("DIFFERENTIAL", db.queryString("SELECT refresh_mode FROM pgtrickle.pgt_stream_tables WHERE pgt_id = ?",
                db.pgtId(streamTable)));
    }

    private static long index(String streamTable) throws SQLException {
        return db.queryLong("SELECT i.indexrelid FROM pg_index i WHERE i.indrelid = ?::regclass AND i.indexrelid = to_regclass(?)",
                streamTable, "pgt_" + db.pgtId(streamTable) + "_row_hash");
    }
}
