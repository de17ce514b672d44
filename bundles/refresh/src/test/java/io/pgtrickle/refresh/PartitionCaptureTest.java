package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.SQLException;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Capture is complete (catalog 0.33.0.1-capture.sql): writes through a partitioned parent and
 * straight into any partition, partitions created or attached later, ATTACH / DETACH / DROP of a
 * partition holding rows, inheritance children, sessions in replica mode, and buffer columns that
 * compare with the source column's collation. Each case refreshes a DIFFERENTIAL stream table
 * planned by the engine's planner and compares it with its query, by value and by text form.
 */
class PartitionCaptureTest {

    private RefreshDatabase db;

    @BeforeEach
    void setUp() throws SQLException {
        db = new RefreshDatabase("partition_capture");
        db.exec("CREATE TABLE measures (id int, region text, v int) PARTITION BY RANGE (id)",
                // a sub-partitioned partition
                "CREATE TABLE measures_low PARTITION OF measures FOR VALUES FROM (0) TO (100) PARTITION BY LIST (region)",
                "CREATE TABLE measures_low_north PARTITION OF measures_low FOR VALUES IN ('north')",
                "CREATE TABLE measures_low_rest PARTITION OF measures_low DEFAULT",
                // built apart, columns in another order
                "CREATE TABLE measures_high (v int, region text, id int)",
                "ALTER TABLE measures ATTACH PARTITION measures_high FOR VALUES FROM (100) TO (200)",
                "INSERT INTO measures VALUES (1, 'north', 10), (2, 'south', 20), (150, 'north', 30)",
                "SELECT pgtrickle.create_stream_table('big_measures', 'SELECT id, region, v FROM measures WHERE v > 5', 'calculated', 'DIFFERENTIAL')");
        db.plan("big_measures");
    }

    @AfterEach
    void tearDown() {
        db.close();
    }

    @Test
    void writesThroughTheParentAndStraightIntoPartitionsAreCaptured() throws SQLException {
        db.exec("INSERT INTO measures VALUES (3, 'north', 11), (160, 'east', 12)",
                "INSERT INTO measures_high (id, region, v) VALUES (170, 'west', 13)",
                "INSERT INTO measures_low_rest VALUES (4, 'south', 14)",
                "INSERT INTO measures_low VALUES (5, 'north', 15)",
                "UPDATE measures_low_north SET v = v + 100 WHERE id = 1",
                "UPDATE measures_high SET v = 1 WHERE id = 150",
                // moves between partitions: a delete from one and an insert into another
                "UPDATE measures SET id = id + 100 WHERE id = 2",
                "DELETE FROM measures_low_rest WHERE id = 4");
        assertRefreshed("big_measures", "DIFFERENTIAL");
    }

    @Test
    void aPartitionCreatedLaterIsCaptured() throws SQLException {
        db.exec("CREATE TABLE measures_mid PARTITION OF measures FOR VALUES FROM (200) TO (300)",
                "INSERT INTO measures_mid VALUES (201, 'north', 40)",
                "INSERT INTO measures VALUES (202, 'south', 41)");
        assertRefreshed("big_measures", "DIFFERENTIAL");
        db.exec("UPDATE measures_mid SET v = v + 1", "DELETE FROM measures_mid WHERE id = 202");
        assertRefreshed("big_measures", "DIFFERENTIAL");
    }

    @Test
    void attachDetachAndDropOfAPartitionHoldingRowsRecompute() throws SQLException {
        db.exec("CREATE TABLE measures_top (id int, region text, v int)",
                "INSERT INTO measures_top VALUES (300, 'north', 50), (301, 'south', 51)",
                "ALTER TABLE measures ATTACH PARTITION measures_top FOR VALUES FROM (300) TO (400)");
        assertRefreshed("big_measures", "FULL");
        // attached, it is captured like the others
        db.exec("INSERT INTO measures_top VALUES (302, 'east', 52)");
        assertRefreshed("big_measures", "DIFFERENTIAL");

        db.exec("ALTER TABLE measures DETACH PARTITION measures_high");
        assertRefreshed("big_measures", "FULL");
        // detached, its writes are no longer the parent's
        db.exec("INSERT INTO measures_high VALUES (99, 'west', 180)");
        assertRefreshed("big_measures", "NO_DATA");

        db.exec("DROP TABLE measures_low_north");
        assertRefreshed("big_measures", "FULL");

        // an empty partition comes and goes without a recomputation
        db.exec("CREATE TABLE measures_empty (id int, region text, v int)",
                "ALTER TABLE measures ATTACH PARTITION measures_empty FOR VALUES FROM (500) TO (600)");
        assertRefreshed("big_measures", "NO_DATA");
    }

    @Test
    void aPartitionAsASourceSeesTheWritesRoutedThroughItsParent() throws SQLException {
        db.exec("SELECT pgtrickle.create_stream_table('high_measures', 'SELECT id, region, v FROM measures_high', 'calculated', 'DIFFERENTIAL')");
        db.plan("high_measures");
        db.exec("INSERT INTO measures VALUES (151, 'south', 60), (6, 'south', 61)",
                "UPDATE measures SET v = v + 1 WHERE id = 150",
                "UPDATE measures SET id = 7 WHERE id = 151",
                "INSERT INTO measures_high (id, region, v) VALUES (152, 'east', 62)");
        assertRefreshed("high_measures", "DIFFERENTIAL");
        assertRefreshed("big_measures", "DIFFERENTIAL");
        db.exec("TRUNCATE measures");
        assertRefreshed("high_measures", "FULL");
        assertRefreshed("big_measures", "FULL");
    }

    @Test
    void writesToInheritanceChildrenAreCapturedAndOnlyReadsRecompute() throws SQLException {
        db.exec("CREATE TABLE events (id int, kind text)",
                "CREATE TABLE events_archived (archived_at int, kind text, id int)",
                "ALTER TABLE events_archived INHERIT events",
                "INSERT INTO events VALUES (1, 'a')",
                "INSERT INTO events_archived VALUES (0, 'b', 2)",
                "SELECT pgtrickle.create_stream_table('all_events', 'SELECT id, kind FROM events', 'calculated', 'DIFFERENTIAL')",
                "SELECT pgtrickle.create_stream_table('own_events', 'SELECT id, kind FROM ONLY events', 'calculated')");
        db.plan("all_events");
        db.plan("own_events");
        assertTrue(db.queryString("SELECT downgrade_reason FROM pgtrickle.explain_refresh_mode('own_events')").contains("(only table events)"),
                "an ONLY read is recomputed, and says why");

        db.exec("INSERT INTO events_archived VALUES (0, 'c', 3)",
                "UPDATE events SET kind = 'z' WHERE id = 2",
                "INSERT INTO events VALUES (4, 'd')");
        assertRefreshed("all_events", "DIFFERENTIAL");
        assertRefreshed("own_events", "FULL");

        db.exec("CREATE TABLE events_late () INHERITS (events)", "INSERT INTO events_late VALUES (5, 'e')");
        assertRefreshed("all_events", "DIFFERENTIAL");
        db.exec("CREATE TABLE events_other (id int, kind text)", "INSERT INTO events_other VALUES (6, 'f')",
                "ALTER TABLE events_other INHERIT events");
        assertRefreshed("all_events", "FULL");
        db.exec("ALTER TABLE events_archived NO INHERIT events");
        assertRefreshed("all_events", "FULL");
        db.exec("INSERT INTO events_archived VALUES (0, 'g', 7)");
        assertRefreshed("all_events", "NO_DATA");
        assertRefreshed("own_events", "FULL");
    }

    @Test
    void writesInReplicaModeAreCaptured() throws SQLException {
        db.exec("CREATE TABLE replicated (id int PRIMARY KEY, v int)",
                "INSERT INTO replicated VALUES (1, 1)",
                "SELECT pgtrickle.create_stream_table('replicated_rows', 'SELECT id, v FROM replicated', 'calculated', 'DIFFERENTIAL')");
        db.plan("replicated_rows");
        // what a logical replication apply worker or a restore runs under; the apply worker fires
        // row triggers only
        db.exec("SET session_replication_role = replica",
                "INSERT INTO replicated VALUES (2, 2), (3, 3)",
                "UPDATE replicated SET v = 10 WHERE id = 1",
                "DELETE FROM replicated WHERE id = 3",
                "INSERT INTO measures VALUES (8, 'north', 70), (180, 'south', 71)",
                "UPDATE measures_high SET v = 72 WHERE id = 150");
        assertRefreshed("replicated_rows", "DIFFERENTIAL");
        assertRefreshed("big_measures", "DIFFERENTIAL");
        db.exec("SET session_replication_role = replica", "TRUNCATE replicated");
        assertRefreshed("replicated_rows", "FULL");
        // and exactly once in the other modes
        db.exec("SET session_replication_role = local", "INSERT INTO replicated VALUES (4, 4)");
        db.exec("INSERT INTO replicated VALUES (5, 5)");
        assertRefreshed("replicated_rows", "DIFFERENTIAL");
    }

    @Test
    void bufferedValuesCompareWithTheSourceColumnsCollation() throws SQLException {
        // a collation under which 'B' > 'a' differs from the database's default
        boolean defaultSortsCaseFirst = db.queryString("SELECT ('B' > 'a')::text").equals("false");
        String collation = defaultSortsCaseFirst ? "\"en-US-x-icu\"" : "\"C\"";
        db.exec("CREATE TABLE names (id int, name text COLLATE " + collation + ")",
                "SELECT pgtrickle.create_stream_table('late_names', 'SELECT id, name FROM names WHERE name > ''a''', 'calculated', 'DIFFERENTIAL')");
        db.plan("late_names");
        db.exec("INSERT INTO names VALUES (1, 'B'), (2, 'b'), (3, 'A')");
        assertRefreshed("late_names", "DIFFERENTIAL");
        assertNotEquals(db.queryLong("SELECT count(*) FROM names WHERE name COLLATE \"default\" > 'a'"),
                db.queryLong("SELECT count(*) FROM late_names"), "the collations really differ");
    }

    private void assertRefreshed(String streamTable, String action) throws SQLException {
        db.exec("SELECT pgtrickle.refresh_stream_table('" + streamTable + "')");
        assertEquals(action, db.queryString("SELECT action FROM pgtrickle.get_refresh_history(?, 1)", streamTable), streamTable);
        assertEquals(0, db.difference(streamTable), streamTable + " differs from its query");
        String query = db.queryString("SELECT defining_query FROM pgtrickle.pgt_stream_tables WHERE pgt_id = ?", db.pgtId(streamTable));
        assertEquals(0, db.queryLong("SELECT count(*) FROM ((SELECT ROW(t.*)::text FROM " + streamTable + " t EXCEPT ALL SELECT ROW(q.*)::text FROM (" + query + ") q)"
                + " UNION ALL (SELECT ROW(q.*)::text FROM (" + query + ") q EXCEPT ALL SELECT ROW(t.*)::text FROM " + streamTable + " t)) d"),
                streamTable + " differs from its query in text form");
    }
}
