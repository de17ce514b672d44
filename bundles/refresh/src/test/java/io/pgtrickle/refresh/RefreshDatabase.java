package io.pgtrickle.refresh;

import io.pgtrickle.catalog.CatalogMigrator;
import io.pgtrickle.refresh.plan.RefreshPlanner;
import io.pgtrickle.testing.MigratedDatabase;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;

/** A fresh database with the pgtrickle catalog migrated by the catalog bundle's own migrator. */
final class RefreshDatabase extends MigratedDatabase {

    RefreshDatabase(String prefix) throws SQLException {
        super(prefix, c -> {
            new CatalogMigrator().migrate(c);
            // AUTO's switches to FULL depend on the planner's row estimates, which autovacuum updates
            // at its own pace, and on what refreshes took: off here, so tests can expect DIFFERENTIAL;
            // ChangeVolumeFallbackTest, ChangeStatisticsTest and MeasuredChoiceTest turn them on
            try (Statement s = c.createStatement()) {
                s.execute("DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET pg_trickle.differential_max_change_ratio = 0',"
                        + " current_database()); EXECUTE format('ALTER DATABASE %I SET pg_trickle.differential_cost_check_ratio = 0',"
                        + " current_database()); EXECUTE format('ALTER DATABASE %I SET pg_trickle.differential_measured_ratio = 0',"
                        + " current_database()); END $$");
            }
        });
    }

    /** Plans a stream table as the engine's scheduler does on its next tick. */
    void plan(String streamTable) throws SQLException {
        long id = pgtId(streamTable);
        try (Connection c = connect()) {
            c.setAutoCommit(false);
            RefreshPlanner.planIfNeeded(c, id);
            c.commit();
        }
    }

    /**
     * Creates a stream table that refreshes only when asked ('calculated': a test's refreshes are
     * its own), plans it as the engine's scheduler does on its next tick, and asserts that it is
     * maintained differentially.
     */
    void createDifferential(String name, String query) throws SQLException {
        exec("SELECT pgtrickle.create_stream_table('" + name + "', $q$" + query + "$q$, 'calculated')");
        plan(name);
        org.junit.jupiter.api.Assertions.assertEquals("DIFFERENTIAL|", queryString("SELECT effective_mode || '|' || coalesce(downgrade_reason, '')"
                + " FROM pgtrickle.explain_refresh_mode(?)", name), name + ": maintained differentially");
    }

    /**
     * The first row of {@code query} as longs (zeros when it has none), read on {@code s}: a value
     * inside a transaction the test holds, where {@link #queryLong} would read in one of its own.
     */
    static long[] row(Statement s, String query) throws SQLException {
        try (ResultSet rs = s.executeQuery(query)) {
            long[] values = new long[rs.getMetaData().getColumnCount()];
            if (rs.next()) {
                for (int i = 0; i < values.length; i++) {
                    values[i] = rs.getLong(i + 1);
                }
            }
            return values;
        }
    }

    long pgtId(String streamTable) throws SQLException {
        return queryLong("SELECT (pgtrickle.find_stream_table(?)).pgt_id", streamTable);
    }

    /** One row of pgtrickle.pgt_refresh_history. */
    record History(long refreshId, String action, String status, long inserted, long deleted, String initiatedBy) {
    }

    /** The refresh history of a stream table after refresh id {@code refreshId}, oldest first. */
    List<History> historySince(long pgtId, long refreshId) throws SQLException {
        List<History> out = new ArrayList<>();
        try (Connection c = connect(); PreparedStatement ps = c.prepareStatement(
                "SELECT refresh_id, action, status, rows_inserted, rows_deleted, initiated_by"
                        + " FROM pgtrickle.pgt_refresh_history WHERE pgt_id = ? AND refresh_id > ? ORDER BY refresh_id")) {
            ps.setLong(1, pgtId);
            ps.setLong(2, refreshId);
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    out.add(new History(rs.getLong(1), rs.getString(2), rs.getString(3), rs.getLong(4), rs.getLong(5), rs.getString(6)));
                }
            }
        }
        return out;
    }

    /** The last refresh of a stream table, as the history recorded it, or null. */
    History lastRefresh(String streamTable) throws SQLException {
        List<History> all = historySince(pgtId(streamTable), 0);
        return all.isEmpty() ? null : all.get(all.size() - 1);
    }

    /**
     * Fails unless the stream table equals its defining query by value and by the text form of its
     * rows, showing both sides when it does not.
     */
    void assertEqualsItsQuery(String streamTable, String ctx) throws SQLException {
        long byValue = difference(streamTable);
        long byText = textDifference(streamTable);
        if (byValue != 0 || byText != 0) {
            String query = queryString("SELECT defining_query FROM pgtrickle.pgt_stream_tables WHERE pgt_id = ?", pgtId(streamTable));
            org.junit.jupiter.api.Assertions.fail(ctx + ": " + streamTable + " differs from its query (by value: " + byValue
                    + " rows, by text: " + byText + "): stored "
                    + queryString("SELECT string_agg(ROW(t.*)::text, ' ' ORDER BY ROW(t.*)::text) FROM " + streamTable + " t")
                    + " vs query " + queryString("SELECT string_agg(ROW(q.*)::text, ' ' ORDER BY ROW(q.*)::text) FROM (" + query + ") q"));
        }
    }

    /**
     * Rows by which the stream table and its defining query differ, compared as multisets in one
     * snapshot: 0 means the stream table is up to date.
     */
    long difference(String streamTable) throws SQLException {
        String query = queryString("SELECT defining_query FROM pgtrickle.pgt_stream_tables WHERE pgt_id = ?", pgtId(streamTable));
        return queryLong("SELECT count(*) FROM ((TABLE " + streamTable + " EXCEPT ALL (" + query + "))"
                + " UNION ALL ((" + query + ") EXCEPT ALL TABLE " + streamTable + ")) d");
    }

    /**
     * Rows by which the stream table and its defining query differ when each row is compared by its
     * text form, as a user reading both sees them: 1.0 and 1.000 are equal values but different rows.
     */
    long textDifference(String streamTable) throws SQLException {
        String query = queryString("SELECT defining_query FROM pgtrickle.pgt_stream_tables WHERE pgt_id = ?", pgtId(streamTable));
        String stored = "SELECT ROW(t.*)::text FROM " + streamTable + " t";
        String fresh = "SELECT ROW(q.*)::text FROM (" + query + ") q";
        return queryLong("SELECT count(*) FROM ((" + stored + " EXCEPT ALL " + fresh + ") UNION ALL (" + fresh + " EXCEPT ALL " + stored + ")) d");
    }

    /** The stream table's derived tables as the catalog holds them (null: none). */
    String derived(String streamTable) throws SQLException {
        return queryString("SELECT derived::text FROM pgtrickle.pgt_stream_tables WHERE pgt_id = ?", pgtId(streamTable));
    }

    /** Refreshes the stream table and returns how often the refresh scanned {@code table} (its transaction's counters). */
    long refreshScanning(String streamTable, String table) throws SQLException {
        String counters = "SELECT seq_scan + coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables WHERE relname = '" + table + "'";
        try (Connection conn = connect(); Statement s = conn.createStatement()) {
            conn.setAutoCommit(false);
            long before = row(s, counters)[0];
            s.execute("SELECT pgtrickle.refresh_stream_table('" + streamTable + "')");
            long after = row(s, counters)[0];
            conn.commit();
            return after - before;
        }
    }

    /**
     * One FULL refresh (which refills running totals and derived tables), then DIFFERENTIAL again,
     * planned as the engine's scheduler would.
     */
    void refreshFullThenDifferential(String streamTable) throws SQLException {
        exec("SELECT pgtrickle.alter_stream_table('" + streamTable + "', refresh_mode => 'FULL')",
                "SELECT pgtrickle.refresh_stream_table('" + streamTable + "')",
                "SELECT pgtrickle.alter_stream_table('" + streamTable + "', refresh_mode => 'DIFFERENTIAL')");
        plan(streamTable);
    }
}
