package io.pgtrickle.launcher;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.api.Test;

class OsgiLogForwarderTest {

    @Test
    void levelsAreOsgiLogLevelsInAnyCase() throws Exception {
        assertEquals(0, OsgiLogForwarder.threshold("audit"));
        assertEquals(2, OsgiLogForwarder.threshold("warn"));
        assertEquals(2, OsgiLogForwarder.threshold(" WARN "));
        assertEquals(5, OsgiLogForwarder.threshold("trace"));
    }

    @Test
    void levelNamesAreWhatTheLogServiceAccepts() throws Exception {
        assertEquals("WARN", OsgiLogForwarder.levelName(OsgiLogForwarder.threshold("warn")));
        assertEquals("INFO", OsgiLogForwarder.levelName(OsgiLogForwarder.threshold("Info")));
    }

    @Test
    void unknownLevelIsRefusedWithTheChoices() {
        LauncherException e = assertThrows(LauncherException.class, () -> OsgiLogForwarder.threshold("warning"));
        assertEquals("pgtrickle.osgi.log.level must be one of audit, error, warn, info, debug, trace, not 'warning'", e.getMessage());
    }
}
