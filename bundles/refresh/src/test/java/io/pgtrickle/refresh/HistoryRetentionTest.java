package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.pgtrickle.testing.MigratedDatabaseTest;
import java.sql.SQLException;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** pg_trickle.history_retention_days and prune_refresh_history: old rows go, a batch at a time; each stream table's newest stays. */
class HistoryRetentionTest extends MigratedDatabaseTest {

    HistoryRetentionTest() {
        super("history");
    }

    /** Two stream tables, each with 30 rows of history aged 1.5 to 30.5 days (newest first), plus its initial refresh of today. */
    @BeforeEach
    void agedHistory() throws SQLException {
        exec("CREATE TABLE items (id int PRIMARY KEY)");
        exec("SELECT pgtrickle.create_stream_table('a', 'SELECT id FROM items', '1h')");
        exec("SELECT pgtrickle.create_stream_table('b', 'SELECT id FROM items WHERE id > 0', '1h')");
        exec("INSERT INTO pgtrickle.pgt_refresh_history (pgt_id, start_time, end_time, action, status)"
                + " SELECT s.pgt_id, now() - d * interval '1 day' - interval '12 hours', now() - d * interval '1 day', 'NO_DATA', 'COMPLETED'"
                + " FROM pgtrickle.pgt_stream_tables s, generate_series(1, 30) d ORDER BY d DESC, s.pgt_id"); // ids in time order
    }

    @Test
    void rowsOlderThanTheRetentionGoOldestFirstInBatches() throws SQLException {
        exec("SET pg_trickle.history_retention_days = 10");
        // older than 10 days: 10.5 to 30.5 days, 21 rows of each
        assertEquals("15", string("SELECT pgtrickle.prune_refresh_history(15)"));
        assertEquals("23", string("SELECT max(floor(extract(epoch FROM now() - start_time) / 86400)) FROM pgtrickle.pgt_refresh_history"),
                "the oldest went first: 30.5 to 24.5 days of both and 23.5 of one");
        assertEquals("27", string("SELECT pgtrickle.prune_refresh_history()"));
        assertEquals("0", string("SELECT pgtrickle.prune_refresh_history()"));
        assertEquals(List.of("a|10", "b|10"), strings("SELECT s.pgt_name || '|' || count(*) FROM pgtrickle.pgt_refresh_history h"
                + " JOIN pgtrickle.pgt_stream_tables s USING (pgt_id) GROUP BY s.pgt_name ORDER BY 1"), "1.5 to 9.5 days, and today");
    }

    @Test
    void theDefaultKeeps90DaysAndZeroKeepsEverything() throws SQLException {
        assertEquals("90", string("SELECT pgtrickle.history_retention_days()"));
        assertEquals("0", string("SELECT pgtrickle.prune_refresh_history()"), "nothing is 90 days old");
        exec("SET pg_trickle.history_retention_days = 0");
        exec("UPDATE pgtrickle.pgt_refresh_history SET start_time = start_time - interval '1000 days'");
        assertEquals("0", string("SELECT pgtrickle.prune_refresh_history()"));
        exec("SET pg_trickle.history_retention_days = 'forever'");
        assertEquals("90", string("SELECT pgtrickle.history_retention_days()"), "an invalid value: the default, with a warning");
    }

    @Test
    void aStreamTablesNewestRowStaysHoweverOld() throws SQLException {
        exec("UPDATE pgtrickle.pgt_refresh_history SET start_time = start_time - interval '1000 days'");
        exec("SET pg_trickle.history_retention_days = 1");
        assertEquals("60", string("SELECT pgtrickle.prune_refresh_history()"));
        assertEquals(List.of("a|INITIAL", "b|INITIAL"), strings("SELECT s.pgt_name || '|' || h.initiated_by FROM pgtrickle.pgt_refresh_history h"
                + " JOIN pgtrickle.pgt_stream_tables s USING (pgt_id) ORDER BY 1"));
        assertFails("SELECT pgtrickle.prune_refresh_history(0)", "max_rows must be at least 1, not 0", "22023");
    }
}
