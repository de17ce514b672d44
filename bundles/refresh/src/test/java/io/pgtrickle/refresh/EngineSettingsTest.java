package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.api.Test;

class EngineSettingsTest {

    @Test
    void defaultsArePgTricklesDefaults() {
        assertEquals(new EngineSettings(1000, 4, 3, 250, 10), EngineSettings.DEFAULTS);
    }

    @Test
    void nonsenseIsRefusedWithTheSettingsName() {
        assertEquals("schedulerIntervalMs must be at least 10, not 0",
                assertThrows(IllegalArgumentException.class, () -> new EngineSettings(0, 4, 3)).getMessage());
        assertEquals("workers must be at least 1, not 0",
                assertThrows(IllegalArgumentException.class, () -> new EngineSettings(1000, 0, 3)).getMessage());
        assertEquals("maxConsecutiveErrors must be at least 1, not 0",
                assertThrows(IllegalArgumentException.class, () -> new EngineSettings(1000, 4, 0)).getMessage());
        assertEquals("wakeIntervalMs must be at least 0, not -1",
                assertThrows(IllegalArgumentException.class, () -> new EngineSettings(1000, 4, 3, 250, -1)).getMessage());
    }
}
