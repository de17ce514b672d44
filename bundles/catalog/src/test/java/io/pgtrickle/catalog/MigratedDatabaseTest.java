package io.pgtrickle.catalog;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pgtrickle.testing.SqlStatements;
import io.pgtrickle.testing.TestDatabase;
import java.sql.Connection;
import java.sql.SQLException;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;

/** A fresh database per test, migrated by the catalog's own migrator, and one connection to it. */
abstract class MigratedDatabaseTest implements SqlStatements {

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
        new CatalogMigrator().migrate(c);
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
