package io.pgtrickle.config;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SettingsTest {

    @TempDir
    Path dir;

    private Path properties(String text) throws IOException {
        Path f = dir.resolve("pgtrickle.properties");
        Files.writeString(f, text);
        return f;
    }

    @Test
    void systemPropertyBeatsEnvironmentBeatsFile() throws IOException {
        Path f = properties("pgtrickle.jdbc.url=jdbc:postgresql://file/db\npgtrickle.jdbc.user=fileuser\npgtrickle.jdbc.pool_size=3\n");
        Settings s = Settings.load(f,
                Map.of("PGTRICKLE_JDBC_URL", "jdbc:postgresql://env/db", "PGTRICKLE_JDBC_USER", "envuser"),
                Map.of("pgtrickle.jdbc.url", "jdbc:postgresql://sys/db"));
        assertEquals("jdbc:postgresql://sys/db", s.get(Setting.JDBC_URL).orElseThrow());
        assertEquals(Settings.Source.SYSTEM_PROPERTY, s.lookup(Setting.JDBC_URL).orElseThrow().source());
        assertEquals("envuser", s.get(Setting.JDBC_USER).orElseThrow());
        assertEquals(Settings.Source.ENVIRONMENT, s.lookup(Setting.JDBC_USER).orElseThrow().source());
        assertEquals("3", s.get(Setting.JDBC_POOL_SIZE).orElseThrow());
        assertEquals(Settings.Source.PROPERTIES_FILE, s.lookup(Setting.JDBC_POOL_SIZE).orElseThrow().source());
    }

    @Test
    void anySpellingOfAKeyWorksInEverySource() throws IOException {
        Path f = properties("PGTRICKLE_JDBC_URL=jdbc:postgresql://file/db\n");
        Settings s = Settings.load(f, Map.of(), Map.of("PGTRICKLE.JDBC.POOL.SIZE", "5"));
        assertEquals("jdbc:postgresql://file/db", s.get(Setting.JDBC_URL).orElseThrow());
        assertEquals("5", s.get(Setting.JDBC_POOL_SIZE).orElseThrow());
    }

    @Test
    void blankValuesCountAsUnsetSoALowerSourceApplies() throws IOException {
        Path f = properties("pgtrickle.jdbc.user=fromfile\n");
        Settings s = Settings.load(f, Map.of("PGTRICKLE_JDBC_USER", "  "), Map.of());
        assertEquals("fromfile", s.get(Setting.JDBC_USER).orElseThrow());
    }

    @Test
    void fileValuesAreInterpolated() throws IOException {
        Path f = properties("pgtrickle.jdbc.url=jdbc:postgresql://localhost/${sys:pgtrickle.test.dbname}\n");
        System.setProperty("pgtrickle.test.dbname", "interpolated");
        try {
            Settings s = Settings.load(f, Map.of(), Map.of());
            assertEquals("jdbc:postgresql://localhost/interpolated", s.get(Setting.JDBC_URL).orElseThrow());
        } finally {
            System.clearProperty("pgtrickle.test.dbname");
        }
    }

    @Test
    void missingFileIsNotAnError() {
        Settings s = Settings.load(dir.resolve("absent.properties"), Map.of(), Map.of());
        assertFalse(s.get(Setting.JDBC_URL).isPresent());
    }

    @Test
    void unparsableFileNamesTheFile() throws IOException {
        Path f = properties("include = does-not-exist.properties\n");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Settings.load(f, Map.of(), Map.of()));
        assertTrue(e.getMessage().contains(f.toString()), e.getMessage());
    }

    @Test
    void secretsAreMaskedInDescriptions() {
        Settings s = Settings.load(null, Map.of("PGTRICKLE_JDBC_PASSWORD", "hunter2"), Map.of());
        assertFalse(s.describe(Setting.JDBC_PASSWORD).contains("hunter2"));
        assertTrue(s.describe(Setting.JDBC_PASSWORD).contains("PGTRICKLE_JDBC_PASSWORD"));
    }

    @Test
    void onlySetPropertiesAreGroupedByPid() {
        Settings s = Settings.load(null, Map.of("PGTRICKLE_JDBC_URL", "jdbc:postgresql://h/d", "PGTRICKLE_JDBC_PASSWORD", "pw"), Map.of());
        Map<String, Map<String, Object>> byPid = ConfigurationBridge.byPid(s);
        assertEquals(Map.of("io.pgtrickle.datasource", Map.of("url", "jdbc:postgresql://h/d", "password", "pw")), byPid);
        assertTrue(ConfigurationBridge.byPid(Settings.load(null, Map.of(), Map.of())).isEmpty());
    }

    @Test
    void engineSettingsUsePgTrickleNamesAndReachTheRefreshPid() {
        Settings s = Settings.load(null, Map.of("PG_TRICKLE_SCHEDULER_INTERVAL_MS", "250"), Map.of("pg_trickle.max_consecutive_errors", "5"));
        assertEquals(Map.of("io.pgtrickle.refresh", Map.of("schedulerIntervalMs", "250", "maxConsecutiveErrors", "5")), ConfigurationBridge.byPid(s));
        assertEquals("PG_TRICKLE_MAX_CONCURRENT_REFRESHES", Setting.MAX_CONCURRENT_REFRESHES.environmentVariable());
    }

    @Test
    void environmentVariableNamesAreDerivedFromKeys() {
        assertEquals("PGTRICKLE_JDBC_URL", Setting.JDBC_URL.environmentVariable());
        assertEquals("PGTRICKLE_JDBC_POOL_SIZE", Setting.JDBC_POOL_SIZE.environmentVariable());
    }
}
