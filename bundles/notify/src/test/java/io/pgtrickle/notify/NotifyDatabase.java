package io.pgtrickle.notify;

import static org.junit.jupiter.api.Assertions.fail;

import io.pgtrickle.catalog.CatalogMigrator;
import io.pgtrickle.testing.TestDatabase;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import javax.sql.DataSource;

/** A fresh database with the pgtrickle catalog migrated by the catalog bundle's own migrator. */
final class NotifyDatabase implements AutoCloseable {

    /** Upper bound for every wait on the dispatcher; waits end as soon as the condition holds. */
    static final Duration PATIENCE = Duration.ofSeconds(60);

    private final TestDatabase.Database database;

    NotifyDatabase(String prefix) throws SQLException {
        database = TestDatabase.get().createDatabase(prefix);
        try (Connection c = database.connect()) {
            new CatalogMigrator().migrate(c);
        }
    }

    /** Unpooled: every getConnection() is a new session. */
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

    List<Long> queryLongs(String sql, Object... params) throws SQLException {
        List<Long> out = new ArrayList<>();
        try (Connection c = connect(); PreparedStatement ps = prepare(c, sql, params); ResultSet rs = ps.executeQuery()) {
            while (rs.next()) {
                out.add(rs.getLong(1));
            }
        }
        return out;
    }

    private static PreparedStatement prepare(Connection c, String sql, Object... params) throws SQLException {
        PreparedStatement ps = c.prepareStatement(sql);
        for (int i = 0; i < params.length; i++) {
            ps.setObject(i + 1, params[i]);
        }
        return ps;
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
