package io.pgtrickle.testing;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import javax.sql.DataSource;

/**
 * A fresh database, migrated by the given migration (the catalog bundle's {@code CatalogMigrator}:
 * test-support cannot depend on it, the catalog's own tests use this module), with unpooled query
 * helpers: every call is a new session, so {@code ALTER DATABASE ... SET} reaches it.
 */
public class MigratedDatabase implements AutoCloseable {

    /** Upper bound for every wait in a test; waits end as soon as their condition holds. */
    public static final Duration PATIENCE = Duration.ofSeconds(60);

    /** Installs the schema a test needs on a new database's first connection. */
    @FunctionalInterface
    public interface Migration {
        void migrate(Connection connection) throws SQLException;
    }

    @FunctionalInterface
    public interface Condition {
        boolean holds() throws Exception;
    }

    private final TestDatabase.Database database;

    public MigratedDatabase(String prefix, Migration migration) throws SQLException {
        database = TestDatabase.get().createDatabase(prefix);
        try (Connection c = database.connect()) {
            migration.migrate(c);
        }
    }

    public String name() {
        return database.name();
    }

    /** Unpooled: every getConnection() is a new session. */
    public DataSource dataSource() {
        return database.dataSource();
    }

    public Connection connect() throws SQLException {
        return database.connect();
    }

    public void exec(String... statements) throws SQLException {
        try (Connection c = connect(); Statement s = c.createStatement()) {
            for (String sql : statements) {
                s.execute(sql);
            }
        }
    }

    /** The first column of the first row, as a long (0 for SQL NULL). */
    public long queryLong(String sql, Object... params) throws SQLException {
        try (Connection c = connect(); PreparedStatement ps = prepare(c, sql, params); ResultSet rs = ps.executeQuery()) {
            if (!rs.next()) {
                throw new AssertionError("no row from " + sql);
            }
            return rs.getLong(1);
        }
    }

    public String queryString(String sql, Object... params) throws SQLException {
        try (Connection c = connect(); PreparedStatement ps = prepare(c, sql, params); ResultSet rs = ps.executeQuery()) {
            if (!rs.next()) {
                throw new AssertionError("no row from " + sql);
            }
            return rs.getString(1);
        }
    }

    /** The first column of every row, as longs. */
    public List<Long> queryLongs(String sql, Object... params) throws SQLException {
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

    /** Polls until the condition holds; fails after {@link #PATIENCE}. Never asserts on durations. */
    public static void await(String what, Condition condition) throws Exception {
        long deadline = System.nanoTime() + PATIENCE.toNanos();
        while (!condition.holds()) {
            if (System.nanoTime() - deadline > 0) {
                throw new AssertionError("gave up after " + PATIENCE.toSeconds() + " s waiting for: " + what);
            }
            Thread.sleep(20);
        }
    }

    @Override
    public void close() {
        database.drop();
    }
}
