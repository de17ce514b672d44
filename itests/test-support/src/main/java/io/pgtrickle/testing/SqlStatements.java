package io.pgtrickle.testing;

import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;

/**
 * Terse SQL for database tests: a test class implements this and names its connection, then reads
 * results as strings, the way psql shows them, so expectations stay one line each.
 */
public interface SqlStatements {

    Connection connection();

    default void exec(String sql) throws SQLException {
        try (Statement s = connection().createStatement()) {
            s.execute(sql);
        }
    }

    /** The first column of the first row, null when there is no row. */
    default String string(String sql) throws SQLException {
        List<String> rows = strings(sql);
        return rows.isEmpty() ? null : rows.get(0);
    }

    /** The first column of every row. */
    default List<String> strings(String sql) throws SQLException {
        List<String> out = new ArrayList<>();
        try (Statement s = connection().createStatement(); ResultSet rs = s.executeQuery(sql)) {
            while (rs.next()) {
                out.add(rs.getString(1));
            }
        }
        return out;
    }
}
