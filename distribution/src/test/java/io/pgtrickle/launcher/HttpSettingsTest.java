package io.pgtrickle.launcher;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.pgtrickle.config.Settings;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** pgtrickle.http.* as Felix HTTP Jetty's framework properties. */
class HttpSettingsTest {

    private static Map<String, String> framework(Map<String, String> environment) throws LauncherException {
        return HttpSettings.from(Settings.load(null, environment, Map.of())).frameworkProperties();
    }

    @Test
    void loopback8181ByDefault() throws LauncherException {
        assertEquals(Map.of("org.apache.felix.http.enable", "true", "org.apache.felix.http.host", "127.0.0.1",
                "org.osgi.service.http.port", "8181"), framework(Map.of()));
        assertEquals("HTTP at http://127.0.0.1:8181/", HttpSettings.from(Settings.load(null, Map.of(), Map.of())).describe());
    }

    @Test
    void hostAndPortAreTaken() throws LauncherException {
        assertEquals(Map.of("org.apache.felix.http.enable", "true", "org.apache.felix.http.host", "0.0.0.0",
                "org.osgi.service.http.port", "9000"), framework(Map.of("PGTRICKLE_HTTP_HOST", "0.0.0.0", "PGTRICKLE_HTTP_PORT", "9000")));
    }

    @Test
    void portZeroOrEnabledFalseTurnsItOff() throws LauncherException {
        assertEquals("false", framework(Map.of("PGTRICKLE_HTTP_PORT", "0")).get("org.apache.felix.http.enable"));
        Map<String, String> off = framework(Map.of("PGTRICKLE_HTTP_ENABLED", "false"));
        assertEquals("false", off.get("org.apache.felix.http.enable"));
        // the port is still named, so Jetty never falls back to its own default of 8080
        assertEquals("8181", off.get("org.osgi.service.http.port"));
        assertEquals("HTTP off (pgtrickle.http.port=0 or pgtrickle.http.enabled=false)",
                HttpSettings.from(Settings.load(null, Map.of("PGTRICKLE_HTTP_PORT", "0"), Map.of())).describe());
    }

    @Test
    void nonsenseIsRefusedWithTheSettingNamed() {
        LauncherException port = assertThrows(LauncherException.class,
                () -> framework(Map.of("PGTRICKLE_HTTP_PORT", "80000")));
        assertEquals("pgtrickle.http.port=80000 (from environment PGTRICKLE_HTTP_PORT): not a port number (0 to 65535; 0 turns HTTP off)",
                port.getMessage());
        assertThrows(LauncherException.class, () -> framework(Map.of("PGTRICKLE_HTTP_ENABLED", "yes")));
    }
}
