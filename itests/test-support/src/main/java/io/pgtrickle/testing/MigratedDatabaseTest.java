package io.pgtrickle.testing;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.Connection;
import java.sql.SQLException;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;

/**
 * A fresh database per test, migrated by the catalog's own migrator with every unit on the class
 * path (a module's tests see its own unit and those it depends on), and one connection to it.
 */
public abstract class MigratedDatabaseTest implements SqlStatements {

    private final String prefix;
    protected TestDatabase.Database db;
    protected Connection c;

    protected MigratedDatabaseTest(String prefix) {
        this.prefix = prefix;
    }

    @Override
    public Connection connection() {
        return c;
    }

    @BeforeEach
    void migrate() throws SQLException {
        db = TestDatabase.get().createDatabase(prefix);
        c = db.connect();
        migrateAll(c);
    }

    /**
     * The catalog bundle's {@code new CatalogMigrator().migrate(c)}, by reflection: this module cannot
     * depend on the catalog bundle, whose own tests use it.
     */
    public static void migrateAll(Connection c) throws SQLException {
        try {
            Object migrator = Class.forName("io.pgtrickle.catalog.CatalogMigrator").getConstructor().newInstance();
            migrator.getClass().getMethod("migrate", Connection.class).invoke(migrator, c);
        } catch (java.lang.reflect.InvocationTargetException e) {
            if (e.getCause() instanceof SQLException sql) {
                throw sql;
            }
            throw new IllegalStateException(e.getCause());
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("the catalog bundle is not on this test class path", e);
        }
    }

    /** {@code sql} fails with {@code sqlState} and a message containing {@code message}. */
    protected void assertFails(String sql, String message, String sqlState) {
        SQLException e = assertThrows(SQLException.class, () -> exec(sql), sql);
        assertTrue(e.getMessage().contains(message), sql + " -> " + e.getMessage());
        assertEquals(sqlState, e.getSQLState(), sql + " -> " + e.getMessage());
    }

    @AfterEach
    void drop() throws SQLException {
        c.close();
        db.drop();
    }
}
