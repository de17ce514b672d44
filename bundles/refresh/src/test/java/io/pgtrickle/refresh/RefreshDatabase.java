package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.fail;

import io.pgtrickle.catalog.CatalogMigrator;
import io.pgtrickle.testing.TestDatabase;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import javax.sql.DataSource;

/** A fresh database with the pgtrickle catalog migrated by the catalog bundle's own migrator. */
final class RefreshDatabase implements AutoCloseable {

    /** Upper bound for every wait on the scheduler; waits end as soon as the condition holds. */
    static final Duration PATIENCE = Duration.ofSeconds(60);

    private final TestDatabase.Database database;

    RefreshDatabase(String prefix) throws SQLException {
        database = TestDatabase.get().createDatabase(prefix);
        try (Connection c = database.connect()) {
            new CatalogMigrator().migrate(c);
            // AUTO's switch to FULL for large changes depends on the planner's row estimates, which
            // autovacuum updates at its own pace: off here, so tests can expect DIFFERENTIAL;
            // ChangeVolumeFallbackTest turns it on
            try (Statement s = c.createStatement()) {
                s.execute("ALTER DATABASE \"" + database.name().replace("\"", "\"\"") + "\" SET pg_trickle.differential_max_change_ratio = 0");
            }
        }
    }

    String name() {
        return database.name();
    }

    /** Unpooled: every getConnection() is a new session, so ALTER DATABASE ... SET reaches it. */
    DataSource dataSource() {
        return database.dataSource();
    }

    Connection connect() throws SQLException {
        return database.connect();
    }

    void exec(String... statements) throws SQLException {
        try (Connection c = connect(); Statement s = c.createStatement()) {
            for (String sql : statements) {
                s.execute(sql);
            }
        }
    }

    /** The first column of the first row, as a long (0 for SQL NULL). */
    long queryLong(String sql, Object... params) throws SQLException {
        try (Connection c = connect(); PreparedStatement ps = prepare(c, sql, params); ResultSet rs = ps.executeQuery()) {
            if (!rs.next()) {
                throw new AssertionError("no row from " + sql);
            }
            return rs.getLong(1);
        }
    }

    String queryString(String sql, Object... params) throws SQLException {
        try (Connection c = connect(); PreparedStatement ps = prepare(c, sql, params); ResultSet rs = ps.executeQuery()) {
            if (!rs.next()) {
                throw new AssertionError("no row from " + sql);
            }
            return rs.getString(1);
        }
    }

    private static PreparedStatement prepare(Connection c, String sql, Object... params) throws SQLException {
        PreparedStatement ps = c.prepareStatement(sql);
        for (int i = 0; i < params.length; i++) {
            ps.setObject(i + 1, params[i]);
        }
        return ps;
    }

    /** Plans a stream table as the engine's scheduler does on its next tick. */
    void plan(String streamTable) throws SQLException {
        long id = pgtId(streamTable);
        try (Connection c = connect()) {
            c.setAutoCommit(false);
            io.pgtrickle.refresh.plan.RefreshPlanner.planIfNeeded(c, id);
            c.commit();
        }
    }

    long pgtId(String streamTable) throws SQLException {
        return queryLong("SELECT (pgtrickle.find_stream_table(?)).pgt_id", streamTable);
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

    @FunctionalInterface
    interface Condition {
        boolean holds() throws Exception;
    }

    /** Polls until the condition holds; fails after {@link #PATIENCE}. Never asserts on durations. */
    static void await(String what, Condition condition) throws Exception {
        long deadline = System.nanoTime() + PATIENCE.toNanos();
        while (!condition.holds()) {
            if (System.nanoTime() - deadline > 0) {
                fail("gave up after " + PATIENCE.toSeconds() + " s waiting for: " + what);
            }
            Thread.sleep(20);
        }
    }

    @Override
    public void close() {
        database.drop();
    }
}
