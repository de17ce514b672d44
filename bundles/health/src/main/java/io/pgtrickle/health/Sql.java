package io.pgtrickle.health;

import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import javax.sql.DataSource;

/** Database work of the checks: short, with a statement timeout, so a check answers rather than hangs. */
final class Sql {

    static final int STATEMENT_TIMEOUT_SECONDS = 4;

    interface Work<T> {
        T run(Statement s) throws SQLException;
    }

    private Sql() {
    }

    static <T> T run(DataSource dataSource, Work<T> work) throws SQLException {
        try (Connection c = dataSource.getConnection(); Statement s = c.createStatement()) {
            c.setAutoCommit(true);
            s.setQueryTimeout(STATEMENT_TIMEOUT_SECONDS);
            return work.run(s);
        }
    }
}
