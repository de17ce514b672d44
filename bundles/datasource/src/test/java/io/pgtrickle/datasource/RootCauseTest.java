package io.pgtrickle.datasource;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.sql.SQLException;
import java.sql.SQLTransientConnectionException;
import org.junit.jupiter.api.Test;

class RootCauseTest {

    @Test
    void theDriversReasonIsNotHiddenBehindThePoolTimeout() {
        SQLException driver = new SQLException("FATAL: password authentication failed for user \"app\"", "28P01");
        SQLException pool = new SQLTransientConnectionException("pgtrickle - Connection is not available, request timed out after 1000ms.", "08001", driver);
        assertEquals("FATAL: password authentication failed for user \"app\" (pgtrickle - Connection is not available, request timed out after 1000ms.)",
                PooledDataSource.rootCause(pool));
        assertEquals("plain", PooledDataSource.rootCause(new SQLException("plain")));
    }
}
