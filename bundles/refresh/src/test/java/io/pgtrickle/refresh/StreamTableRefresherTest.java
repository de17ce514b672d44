package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.SQLException;
import org.junit.jupiter.api.Test;

class StreamTableRefresherTest {

    @Test
    void errorsKeepMessageDetailAndHintButNotTheGeneratedStatement() {
        assertEquals("ERROR: division by zero",
                StreamTableRefresher.concise("ERROR: division by zero\n  Where: SQL statement \"WITH next_rows AS (...)\"\nPL/pgSQL function x"));
        assertEquals("ERROR: boom\n  Detail: d\n  Hint: h",
                StreamTableRefresher.concise("ERROR: boom\n  Detail: d\n  Hint: h\n  Where: PL/pgSQL function y"));
        assertEquals("listener failed", StreamTableRefresher.concise("listener failed"));
    }

    @Test
    void connectionAndShutdownErrorsAreNotTheStreamTablesFault() {
        assertTrue(StreamTableRefresher.isConnectionFailure(new SQLException("I/O error", "08006")));
        assertTrue(StreamTableRefresher.isConnectionFailure(new SQLException("terminating connection due to administrator command", "57P01")));
        assertTrue(StreamTableRefresher.isConnectionFailure(new RuntimeException(new SQLException("gone", "08003"))));
        assertFalse(StreamTableRefresher.isConnectionFailure(new SQLException("division by zero", "22012")));
        assertFalse(StreamTableRefresher.isConnectionFailure(new SQLException("canceling statement due to statement timeout", "57014")));
        assertFalse(StreamTableRefresher.isConnectionFailure(new IllegalStateException("no state")));
    }
}
