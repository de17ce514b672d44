package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.SQLException;
import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * A stream table with a unique index over NOT NULL columns has its stored rows found by that index
 * when a differential refresh deletes them, and no row index of the engine's own (one index fewer
 * to write per row). Without such an index, or once it is dropped, the engine's row index does it.
 */
class RowKeyTest {

    private RefreshDatabase db;

    @BeforeEach
    void setUp() throws SQLException {
        db = new RefreshDatabase("refresh_row_key");
        db.exec("CREATE TABLE c (id int PRIMARY KEY, region text NOT NULL)",
                "CREATE TABLE o (id bigint PRIMARY KEY, ck int NOT NULL, amount numeric NOT NULL, note text)",
                "INSERT INTO c SELECT i, 'r' || i % 5 FROM generate_series(1, 200) i",
                "INSERT INTO o SELECT i, 1 + i % 200, (i % 1000) / 10.0, CASE WHEN i % 7 = 0 THEN NULL ELSE 'n' || i END"
                        + " FROM generate_series(1, 5000) i",
                "ANALYZE c", "ANALYZE o");
    }

    @AfterEach
    void tearDown() {
        db.close();
    }

    @Test
    void aUniqueIndexOfTheStreamTableFindsItsRows() throws SQLException {
        // amount is numeric without a scale: 1.5 and 1.50 are equal but print differently, so the
        // refresh must tell them apart beyond the key
        db.exec("SELECT pgtrickle.create_stream_table('keyed', $q$SELECT o.id, c.region, o.amount, o.note FROM o JOIN c ON c.id = o.ck$q$,"
                + " 'calculated')", "CREATE UNIQUE INDEX keyed_id ON keyed (id)");
        db.plan("keyed");
        assertNull(rowIndex("keyed"), "no row index of the engine's: the unique index finds the rows");
        assertTrue(deltaSql("keyed").contains("/*pgtrickle row_key 1*/"), "the plan names the key it relies on");
        Random rnd = new Random(20261207L);
        for (int round = 0; round < 6; round++) {
            db.exec("UPDATE o SET amount = amount + 1 WHERE id % 97 = " + rnd.nextInt(97),
                    "UPDATE o SET amount = amount::numeric(12,2) WHERE id % 89 = " + rnd.nextInt(89),
                    "UPDATE o SET ck = 1 + (ck + " + rnd.nextInt(50) + ") % 200, note = NULL WHERE id % 83 = " + rnd.nextInt(83),
                    "UPDATE c SET region = 'r' || " + rnd.nextInt(9) + " WHERE id % 31 = " + rnd.nextInt(31),
                    "DELETE FROM o WHERE id % 101 = " + rnd.nextInt(101),
                    "INSERT INTO o SELECT max(id) + 1, 1 + " + rnd.nextInt(200) + ", 2.50, 'new' FROM o");
            long changed = db.textDifference("keyed");
            db.exec("SELECT pgtrickle.refresh_stream_table('keyed')");
            RefreshDatabase.History h = db.lastRefresh("keyed");
            assertEquals("DIFFERENTIAL", h.action(), "round " + round);
            assertEquals(changed, h.inserted() + h.deleted(), "round " + round + ": the counts are the rows that differ");
            db.assertEqualsItsQuery("keyed", "round " + round);
        }
    }

    @Test
    void droppingTheIndexMakesThePlanAgain() throws SQLException {
        db.exec("SELECT pgtrickle.create_stream_table('keyed', $q$SELECT o.id, o.amount FROM o WHERE o.amount > 50$q$, 'calculated')",
                "ALTER TABLE keyed ADD PRIMARY KEY (id)");
        db.plan("keyed");
        assertNull(rowIndex("keyed"));
        db.exec("ALTER TABLE keyed DROP CONSTRAINT keyed_pkey", "UPDATE o SET amount = 99 WHERE id % 50 = 0");
        db.exec("SELECT pgtrickle.refresh_stream_table('keyed')");
        assertEquals("FULL", db.lastRefresh("keyed").action(), "recomputed: the plan relied on the key");
        db.assertEqualsItsQuery("keyed", "after the key was dropped");
        db.plan("keyed");
        assertNotNull(rowIndex("keyed"), "planned again, with the engine's row index");
        assertFalse(deltaSql("keyed").contains("/*pgtrickle row_key"));
        db.exec("UPDATE o SET amount = 10 WHERE id % 40 = 0");
        db.exec("SELECT pgtrickle.refresh_stream_table('keyed')");
        assertEquals("DIFFERENTIAL", db.lastRefresh("keyed").action());
        db.assertEqualsItsQuery("keyed", "differential again");
    }

    @Test
    void aKeyThatMayBeNullFindsItsNullRowsToo() throws SQLException {
        // several rows may have a NULL note under a unique index; one of two columns may not
        db.exec("SELECT pgtrickle.create_stream_table('notes', $q$SELECT o.id, o.note FROM o$q$, 'calculated')",
                "CREATE UNIQUE INDEX notes_note ON notes (note)",
                "SELECT pgtrickle.create_stream_table('pairs', $q$SELECT o.id, o.note FROM o$q$, 'calculated')",
                "CREATE UNIQUE INDEX pairs_key ON pairs (note, id)");
        db.plan("notes");
        db.plan("pairs");
        assertNull(rowIndex("notes"), "one nullable column: the unique index, by IS NULL for NULLs");
        assertNotNull(rowIndex("pairs"), "a nullable column of two: the engine's row index");
        db.exec("UPDATE o SET note = NULL WHERE id IN (3, 5)", "DELETE FROM o WHERE id IN (14, 21)", "UPDATE o SET note = 'back' WHERE id = 28",
                "UPDATE o SET amount = amount + 1 WHERE id % 7 = 0");
        for (String st : new String[] {"notes", "pairs"}) {
            long changed = db.textDifference(st);
            db.exec("SELECT pgtrickle.refresh_stream_table('" + st + "')");
            RefreshDatabase.History h = db.lastRefresh(st);
            assertEquals("DIFFERENTIAL", h.action(), st);
            assertEquals(changed, h.inserted() + h.deleted(), st + ": the counts are the rows that differ");
            db.assertEqualsItsQuery(st, "after NULLs came and went");
        }
    }

    @Test
    void aGroupedStreamTableKeepsItsRowIndexOverTheGroupKey() throws SQLException {
        // its groups are replaced through the engine's index over the group key, which a unique
        // index on the same columns does not stand in for
        db.exec("SELECT pgtrickle.create_stream_table('per_ck', $q$SELECT o.ck, count(*) AS n, max(o.amount) AS top FROM o GROUP BY o.ck$q$,"
                + " 'calculated')", "CREATE UNIQUE INDEX per_ck_ck ON per_ck (ck)");
        db.plan("per_ck");
        assertNotNull(rowIndex("per_ck"), "the engine's row index over the group key");
        assertFalse(deltaSql("per_ck").contains("/*pgtrickle row_key"));
        db.exec("UPDATE o SET amount = amount + 500 WHERE id % 61 = 0", "DELETE FROM o WHERE ck = 17");
        db.exec("SELECT pgtrickle.refresh_stream_table('per_ck')");
        assertEquals("DIFFERENTIAL", db.lastRefresh("per_ck").action());
        db.assertEqualsItsQuery("per_ck", "after the refresh");
    }

    private String rowIndex(String streamTable) throws SQLException {
        return db.queryString("SELECT to_regclass('public.pgt_' || ? || '_row_hash')::text", db.pgtId(streamTable));
    }

    private String deltaSql(String streamTable) throws SQLException {
        return db.queryString("SELECT delta_sql FROM pgtrickle.pgt_stream_tables WHERE pgt_id = ?", db.pgtId(streamTable));
    }
}
